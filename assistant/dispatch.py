"""This process's runner, as the rest of the assistant reaches it.

`assistant.services` queues runs and asks for stops; the runner (`assistant/runner.py`)
does them, using the services. So that neither imports the other, the runner registers
itself here when it starts (`install`), and the services call the functions below after
their transaction commits. With no runner in this process (tests, a web process with
ASSISTANT_RUNNER_IN_SERVER off), they do nothing: another process's runner finds the
queued run in the database.
"""

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class LocalRunner(Protocol):
    def start_queued(self, run_id: int) -> bool: ...

    def notify_threadsafe(self) -> None: ...

    def stop_run_threadsafe(self, run_id: int) -> None: ...


_runner: LocalRunner | None = None


def install(runner: LocalRunner | None) -> None:
    """Make `runner` the one this process's services reach (None: no runner here)."""
    global _runner
    _runner = runner


def installed() -> LocalRunner | None:
    return _runner


def run_queued(run_id: int, *, start_now: bool = True) -> None:
    """A run was queued and committed (called in the thread that committed it).

    With `start_now`, this process's runner claims and starts it right here when it has a
    free slot, so the request to the model goes out without a trip through the event loop;
    otherwise (or when it cannot) the runner is woken to look for queued runs.
    """
    runner = _runner
    if runner is None:
        return
    if start_now:
        try:
            if runner.start_queued(run_id):
                return
        except Exception:
            log.exception("Could not start assistant run %s at once", run_id)
    runner.notify_threadsafe()


def stop(run_id: int) -> None:
    """Someone pressed Stop: stop the run now if this process streams it (other processes
    notice within a heartbeat, through the database)."""
    if _runner is not None:
        _runner.stop_run_threadsafe(run_id)
