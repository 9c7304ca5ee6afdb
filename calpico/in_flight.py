"""The HTTP requests this process is serving, from their request line to their end.

A draining process (calpico/shutdown.py) waits for them before it stops, so a request that
was on its way when the proxy took the process out of rotation (an upload still sending its
body, say) is answered instead of cut. Counted by `calpico.serve`'s server, from daphne's
own bookkeeping (`protocol_connected` / `protocol_disconnected`); under another server
nothing is counted. Touched only on the reactor's thread.
"""

from typing import Any

_requests: set[Any] = set()


def began(request: Any) -> None:
    _requests.add(request)


def ended(request: Any) -> None:
    _requests.discard(request)


def count() -> int:
    """How many HTTP requests are being received or answered now."""
    return len(_requests)
