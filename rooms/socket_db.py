"""How the sockets' database work leaves the event loop: on one thread of their own that
keeps its connection.

Channels' `database_sync_to_async` runs on asgiref's thread-sensitive thread, shared with
every HTTP request, and with CONN_MAX_AGE=0 closes the connection before and after each
call. A socket opening used to make four such calls: four thread crossings and three new
SQLite connections. With WAL, the close of the last connection also checkpoints and removes
the WAL file, which the next open makes again; a third of the CPU of opening a socket went
there. Here SQLite's connection is kept for the process's life and replaced only when an
error left it unusable; a database server's goes back to its pool after each call (or is
kept for CONN_MAX_AGE), as after a request. The assistant's runner does the same for its own
threads (assistant/runner_db.py).

One thread for every socket of the process: the work is short, and Python runs one thread
at a time anyway. A write (read positions) that waits for SQLite's lock holds up the
other sockets' database work, as it did on the shared thread.
"""

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import SyncToAsync
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None


class _KeptConnection(SyncToAsync):
    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        for conn in connections.all(initialized_only=True):
            if conn.errors_occurred:
                if conn.is_usable():
                    conn.errors_occurred = False
                else:
                    conn.close()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            for conn in connections.all(initialized_only=True):
                if conn.vendor != "sqlite" and not conn.in_atomic_block:
                    conn.close_if_unusable_or_obsolete()


def on_socket_thread(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`func` as a coroutine function that runs on the sockets' database thread."""
    wrapped = _wrapped.get(func)
    if wrapped is None:
        wrapped = _wrapped[func] = _wrap(func)
    return wrapped


_wrapped: dict[Callable[..., Any], Callable[..., Any]] = {}


def _wrap(func: Callable[..., Any]) -> Callable[..., Any]:
    global _executor
    database = connections["default"]
    if database.vendor == "sqlite" and database.is_in_memory_db():  # type: ignore[attr-defined]
        # The tests' SQLite database lives in memory, shared between connections with table
        # locks that make a second writer fail rather than wait: there the sockets share
        # the thread-sensitive thread (and its connection) with everything else.
        return _KeptConnection(func)
    if _executor is None:
        _executor = ThreadPoolExecutor(1, thread_name_prefix="sockets-db")
    return _KeptConnection(func, thread_sensitive=False, executor=_executor)
