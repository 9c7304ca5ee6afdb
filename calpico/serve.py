"""daphne, as Calpico runs it: `python -m calpico.serve -b 127.0.0.1 -p 8000 calpico.asgi:application`.

It takes daphne's options and arguments and changes two things:

- WebSocket messages and frames are limited to `WS_MAX_MESSAGE_BYTES` (daphne's own default
  is 1 MiB); an option given on the command line still wins.
- A connection the WebSocket layer refuses (a message over that limit, a broken frame) is
  closed with a close frame, 1009 "message too big" for the size, that the page can act on.
  autobahn, under daphne, drops the TCP connection instead (`failByDrop`), which a browser
  reports as 1006 and nobody can tell from a network failure.
"""

import os
import sys

from daphne.cli import CommandLineInterface
from daphne.server import Server


class CalpicoServer(Server):
    """daphne's server; its WebSocket factory closes connections it fails, never drops them."""

    @property
    def ws_factory(self):
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory) -> None:
        # Server.run() makes the factory and sets its options (sizes, timeouts) at once, before
        # the first connection: this option joins them. Protocols copy options on connect.
        factory.setProtocolOptions(failByDrop=False)
        self._ws_factory = factory


class CalpicoCommandLine(CommandLineInterface):
    server_class = CalpicoServer


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "calpico.settings")
    from django.conf import settings

    limit = str(settings.WS_MAX_MESSAGE_BYTES)
    defaults = ["--websocket-max-message-size", limit, "--websocket-max-frame-size", limit]
    CalpicoCommandLine().run([*defaults, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
