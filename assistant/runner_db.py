"""How the runner's database work leaves its event loop: on threads of its own.

Not asgiref's thread-sensitive thread, where every consumer's database work queues: a
heartbeat queued behind a reconnect storm could come too late, and another process would
take over a reply that is doing fine.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync
from django.db import connections

DatabaseCall = Callable[[Callable[..., Any]], Any]


class RunnerDatabase(SyncToAsync):  # type: ignore[type-arg]
    """Like Channels' database_sync_to_async, but on a thread of the runner's own
    (`executor`, one thread), keeping a healthy connection.

    Not asgiref's thread-sensitive thread: every consumer's database work queues there,
    and a heartbeat queued behind it could come too late. Each thread has its own
    connection. A reply calls the database a few times (progress about once a second,
    the end); with CONN_MAX_AGE=0 Channels' wrapper would close the connection after every
    call, and SQLite open a new one (about a millisecond) on the next: on the way to
    showing the finished reply. Here SQLite's connection is kept for the runner's life
    (`Runner.close` closes it) and replaced only when an error left it unusable; a
    database server's goes back to its pool after each call (or is kept for
    CONN_MAX_AGE), as after a request.
    """

    def __init__(self, func: Callable[..., Any], *, executor: ThreadPoolExecutor | None) -> None:
        if executor is None:  # an in-memory SQLite database: see Runner._on_thread
            super().__init__(func)
        else:
            super().__init__(func, thread_sensitive=False, executor=executor)

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        for conn in connections.all(initialized_only=True):
            if conn.errors_occurred:
                if conn.is_usable():
                    conn.errors_occurred = False
                else:
                    conn.close()
        try:
            return super().thread_handler(loop, *args, **kwargs)  # type: ignore[no-untyped-call]
        finally:
            for conn in connections.all(initialized_only=True):
                if conn.vendor != "sqlite" and not conn.in_atomic_block:
                    conn.close_if_unusable_or_obsolete()


class RunnerThreads:
    """The runner's database threads, one per name, each with its own connection."""

    def __init__(self) -> None:
        self._executors: dict[str, ThreadPoolExecutor] = {}

    def on(self, name: str) -> DatabaseCall:
        """Run database calls on thread `name` (made on first use)."""

        def wrap(func: Callable[..., Any]) -> Any:
            database = connections["default"]
            if database.vendor == "sqlite" and database.is_in_memory_db():  # type: ignore[attr-defined]
                # The tests' SQLite database lives in memory, shared between connections
                # with table locks that make a second writer fail rather than wait: there
                # the runner shares the thread-sensitive thread (and its connection).
                return RunnerDatabase(func, executor=None)
            executor = self._executors.get(name)
            if executor is None:
                executor = self._executors[name] = ThreadPoolExecutor(1, thread_name_prefix=name)
            return RunnerDatabase(func, executor=executor)

        return wrap

    def close(self) -> None:
        """Close the connections, each in its own thread, and let the threads end."""
        executors, self._executors = self._executors, {}
        for executor in executors.values():
            executor.submit(connections.close_all)
            executor.shutdown(wait=False)
