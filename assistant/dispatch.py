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
    worker: str

    def has_free_slot(self) -> bool: ...

    def start_created(self, run_id: int) -> bool: ...

    def show_started(self, run_id: int) -> None: ...

    def notify_threadsafe(self) -> None: ...

    def stop_run_threadsafe(self, run_id: int) -> None: ...


_runner: LocalRunner | None = None


def install(runner: LocalRunner | None) -> None:
    """Make `runner` the one this process's services reach (None: no runner here)."""
    global _runner
    _runner = runner


def installed() -> LocalRunner | None:
    return _runner


def run_queued(run_id: int, *, started: bool = False) -> None:
    """A run was stored and committed (called in the thread that committed it).

    `started`: it was created running for this process's runner (its post found a slot
    free), which now builds its prompt and sends the request to the model right here,
    without a trip through the event loop; `show_reply` then shows its message. Otherwise
    (or when the runner cannot start it after all) the runner is woken to look for queued
    runs, here and in every process polling the database.
    """
    runner = _runner
    if runner is None:
        return
    if started:
        try:
            if runner.start_created(run_id):
                return
        except Exception:
            log.exception("Could not start assistant run %s at once", run_id)
    runner.notify_threadsafe()


def show_reply(run_id: int) -> None:
    """After `run_queued`, once the room has been shown what asked for the run: store and
    show the reply's message, holding whatever words the model has sent by now. Nothing to
    do if this process's runner did not start the run."""
    if _runner is not None:
        _runner.show_started(run_id)


def stop(run_id: int) -> None:
    """Someone pressed Stop: stop the run now if this process streams it (other processes
    notice within a heartbeat, through the database)."""
    if _runner is not None:
        _runner.stop_run_threadsafe(run_id)
