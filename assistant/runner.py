"""Doing the runs: one event loop per process streams them into the rooms.

A `Runner` lives in each web process (started with the first request, see calpico/asgi.py)
and in each `manage.py assistant_worker` process. It claims queued runs from the database
(`assistant/runs.py`), so any number of processes share the work and none does a run
twice. At most ASSISTANT_MAX_CONCURRENT_RUNS stream at once per process; each is an
asyncio task, so a slow model in one room never holds up another. The model is reached
through `assistant/model_api.py`.

A run whose post found this runner with a free slot is created running for it, and starts
in the thread that committed the post (`start_created`, reached through
`assistant.dispatch`): its prompt built, its request to the model sent, then its message
stored and shown (`show_started`), holding whatever words arrived meanwhile. Other runs
are claimed from the queue by the loop (`fill`), after a wake-up or at the next poll.

While a reply streams, partial text goes to the room every ASSISTANT_STREAM_INTERVAL and
to the database every ASSISTANT_HEARTBEAT_SECONDS. The runner beats for every run it does
(from the moment the run is claimed) every ASSISTANT_HEARTBEAT_SECONDS, and looks at whether
someone pressed Stop in another process. Runs whose process died are found by their
stale heartbeat within a few seconds and run once more, or failed with a note saying so.
A process that is stopped (SIGTERM) hands its running runs back to the queue at once and
wakes the other processes' runners (`Runner.shut_down`); a web process does so as its drain
begins (calpico/shutdown.py), and from then on claims nothing: runs queued meanwhile wake
the other processes' runners instead.

The runner's database work runs on threads of its own (`RunnerDatabase`), never on
asgiref's one thread-sensitive thread that the consumers share: a busy process (a storm of
reconnecting pages) is not mistaken for a dead one, and a stopping one hands its runs back
at once. The heartbeat, recovery and hand-back have a thread to themselves, so a slow
claim or a slow write of a reply's message never delays them either.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import openai
from django.conf import settings

from assistant import dispatch
from assistant.models import AssistantRun
from assistant.runner_db import DatabaseCall, RunnerThreads
from assistant.runs import (
    STOP,
    Claimed,
    RunGone,
    beat,
    claim_next,
    fail_unprepared,
    hand_back,
    recover_orphans,
    requeue,
    show,
    take_started,
)
from assistant.streaming import RunStreaming
from assistant.wakeup import listen, wake_runners

log = logging.getLogger(__name__)

# How long a stopping runner waits for its streams to notice they were cancelled.
SHUTDOWN_WAIT = 0.5
SILENT_KINDS = (AssistantRun.Kind.DECISION, AssistantRun.Kind.SUMMARY)
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Runner(RunStreaming):
    """Claims and streams runs in one process's event loop."""

    def __init__(self, *, worker: str = WORKER_NAME, concurrency: int | None = None, db: Any = None) -> None:
        self.worker = worker
        # How database work leaves the event loop (see RunnerDatabase): claims, messages,
        # progress and ends on one thread; the heartbeat, recovery and hand-back on another.
        # `db` (tests, the shell) does both, e.g. sync_to_async for the caller's connection.
        self.threads = RunnerThreads()
        self.db: DatabaseCall = db or self.threads.on("assistant-db")
        self.beat_db: DatabaseCall = db or self.threads.on("assistant-beat")
        self.beating: asyncio.Task[None] | None = None
        self.concurrency = concurrency or settings.ASSISTANT_MAX_CONCURRENT_RUNS
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.claims: dict[int, Claimed] = {}
        # Runs started by `start_queued` whose message `show_started` has yet to show.
        self.unshown: dict[int, Claimed] = {}
        # Slots promised to runs being claimed, here or in a thread that just committed
        # one (`start_queued`): with the tasks, never more than `concurrency`.
        self.reserved = 0
        self._slots = threading.Lock()
        self.stopping: set[int] = set()
        self.wake = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._client: openai.AsyncOpenAI | None = None
        self.serve_task: asyncio.Task[None] | None = None
        self._client_key: tuple[str, str, float] | None = None
        # Set by shut_down(): no more claims, and runs handed over now are left alone.
        self.closing = False
        self._shutting_down: asyncio.Future[int] | None = None
        # Wake-ups sent to the other processes' runners once this one claims no more.
        self._waking: set[asyncio.Task[None]] = set()
        # A claim whose run is not streaming yet: its thread commits it even if the runner
        # begins to stop meanwhile, when `shut_down` hands that run back too.
        self._claiming: asyncio.Future[Claimed | None] | None = None

    # Driving

    async def serve(self, *, recover_everything: bool = False) -> None:
        """Run until cancelled: recover orphans, then claim runs as they are queued."""
        # Recovery first, and only then open for claims: `reserve()` refuses while
        # `self.loop` is unset, so no thread can claim a run for this runner that
        # recovery (which may take every running run for an orphan) would hand back.
        await self.beat_db(recover_orphans)(everything=recover_everything)
        self.loop = asyncio.get_running_loop()
        # Only with Redis are there other processes to hear from.
        listener = self.loop.create_task(listen(self.wake)) if settings.REDIS_URL else None
        # A dead process's runs are looked for every heartbeat, so one is taken over
        # within ASSISTANT_STALE_SECONDS plus a heartbeat of the process going silent.
        last_recovery = time.monotonic()
        try:
            while True:
                try:
                    await self.fill()
                except Exception:
                    log.exception("Could not claim assistant runs")
                next_recovery = last_recovery + settings.ASSISTANT_HEARTBEAT_SECONDS - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.wake.wait(),
                        timeout=max(0.0, min(settings.ASSISTANT_POLL_SECONDS, next_recovery)),
                    )
                self.wake.clear()
                if time.monotonic() - last_recovery >= settings.ASSISTANT_HEARTBEAT_SECONDS:
                    last_recovery = time.monotonic()
                    try:
                        await self.beat_db(recover_orphans)(worker=self.worker, live=list(self.tasks))
                    except Exception:
                        log.exception("Could not recover assistant runs")
        finally:
            if listener is not None:
                listener.cancel()

    async def shut_down(self) -> int:
        """The process is stopping (or draining before it stops): claim nothing more, stop
        streaming, and give the running runs back to the queue at once (the other
        processes' runners are woken to take them). Returns how many went back. Called
        again (the drain, then the stop), it waits for the first call's hand-back."""
        if self._shutting_down is None:
            self.closing = True
            self._shutting_down = asyncio.ensure_future(self._shut_down())
        return await asyncio.shield(self._shutting_down)

    async def _shut_down(self) -> int:
        if self.serve_task is not None:
            self.serve_task.cancel()
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT)
        handed: int = await self.beat_db(hand_back)(self.worker)
        if handed:
            await wake_runners()
        claiming = self._claiming
        if claiming is not None:
            # A claim was on its way: it may have committed after the hand-back above looked
            # (taking a run just handed back, even). Once it has, its run goes back too; not
            # counted, as it was never in progress here.
            await asyncio.wait([claiming], timeout=SHUTDOWN_WAIT)
            ok = claiming.done() and not claiming.cancelled() and claiming.exception() is None
            if ok and claiming.result() and await self.beat_db(hand_back)(self.worker):
                await wake_runners()
        await self.close()
        return handed

    async def fill(self) -> None:
        while self.reserve():
            # Its thread goes on when `shut_down` cancels this loop: kept for it to see.
            claiming = self._claiming = asyncio.ensure_future(self.db(claim_next)(self.worker))
            try:
                claimed = await asyncio.shield(claiming)
            except BaseException:
                self.release()
                raise
            if claimed is None:
                self._claiming = None
                self.release()
                return
            started = self._start_reserved(claimed)
            if started:
                self._claiming = None  # streaming: `shut_down` hands it back as such
            # Decisions and summaries show no message of their own.
            if started and claimed.kind not in SILENT_KINDS:
                await self.db(self._show)(claimed)

    def reserve(self) -> bool:
        """Promise a slot to a run about to be claimed (from any thread); False if full
        or not serving."""
        if self.loop is None or self.loop.is_closed() or self.closing:
            return False
        with self._slots:
            if len(self.tasks) + self.reserved >= self.concurrency:
                return False
            self.reserved += 1
            return True

    def release(self) -> None:
        with self._slots:
            self.reserved -= 1

    def _start_reserved(self, claimed: Claimed) -> bool:
        """In the loop: stream a claimed run in the slot reserved for it. False if the
        process began to stop: another runner finds the run by its heartbeat."""
        if self.closing or self.loop is None:
            self.release()
            return False
        task = self.loop.create_task(self.execute(claimed))
        with self._slots:
            self.reserved -= 1
            self.tasks[claimed.run_id] = task
        self.claims[claimed.run_id] = claimed
        run_id = claimed.run_id
        task.add_done_callback(lambda _task: self._done(run_id))
        if self.beating is None or self.beating.done():
            self.beating = self.loop.create_task(self._beat())
        return True

    async def _beat(self) -> None:
        """While this runner does runs: say they are alive, and act on Stop pressed in
        another process or on a run taken over (its heartbeat once looked stale)."""
        while self.tasks:
            await asyncio.sleep(settings.ASSISTANT_HEARTBEAT_SECONDS)
            try:
                found: dict[int, str] = await self.beat_db(beat)(self.worker, list(self.tasks))
            except Exception:
                log.exception("Could not write the assistant runs' heartbeat")
                continue
            for run_id, what in found.items():
                claimed = self.claims.get(run_id)
                if claimed is None or claimed.progress.finished or run_id in self.stopping:
                    continue  # ending already: its end is stored only if it is still ours
                if what == STOP:
                    self.stop_run(run_id)
                else:
                    log.warning("Assistant run %s was taken over by another process", run_id)
                    self.drop_run(run_id)

    def _done(self, run_id: int) -> None:
        with self._slots:
            self.tasks.pop(run_id, None)
        self.claims.pop(run_id, None)
        self.stopping.discard(run_id)
        self.wake.set()  # the room may have its next run waiting

    def _show(self, claimed: Claimed) -> None:
        """In a thread, once the run's request to the model is on its way: store and
        announce the reply's message, then let the run push its text."""
        try:
            show(claimed)
            claimed.shown = True
        except RunGone:
            pass  # taken over, handed back or removed meanwhile: nothing more to show
        except Exception:
            log.exception("Could not show assistant run %s", claimed.run_id)
            try:
                fail_unprepared(claimed.run_id)
            except Exception:
                log.exception("Could not fail assistant run %s", claimed.run_id)
        finally:
            loop = self.loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(claimed.announced.set)

    def has_free_slot(self) -> bool:
        """Whether a run created now could start here at once (a hint: `start_created`
        reserves the slot after the run's post commits)."""
        if self.loop is None or self.loop.is_closed() or self.closing:
            return False
        with self._slots:
            return len(self.tasks) + self.reserved < self.concurrency

    def start_created(self, run_id: int) -> bool:
        """From the thread that just committed a run created running for this runner:
        build its prompt there and send the request to the model now, without a trip
        through the event loop. The reply's message is shown by `show_started`, once the
        room has seen what asked. False if the slots filled meanwhile: the run goes back to
        the queue."""
        if not self.reserve():
            requeue(self.worker, run_id)
            return False
        try:
            claimed = take_started(self.worker, run_id)
        except BaseException:
            self.release()
            raise
        if claimed is None:  # no longer ours
            self.release()
            return True
        if claimed.unprepared:
            self.release()  # nothing to stream: `show_started` fails it in the room
        elif not self.hand_over(claimed):
            return True  # the loop closed: the run is recovered like a stopped process's
        with self._slots:
            self.unshown[run_id] = claimed
        # Let the event loop take the interpreter now and send the request: this thread
        # goes on to render the room's announcements, and would otherwise hold the GIL for
        # up to its switch interval (5 ms) while the loop waits to ask the model.
        time.sleep(0)
        return True

    def show_started(self, run_id: int) -> None:
        """From the committing thread, after `start_created`: show the reply's message."""
        with self._slots:
            claimed = self.unshown.pop(run_id, None)
        if claimed is None:
            return
        if claimed.unprepared:
            fail_unprepared(run_id)
        else:
            self._show(claimed)

    def hand_over(self, claimed: Claimed) -> bool:
        """From another thread: start a claimed run in the slot reserved for it."""
        try:
            # A context of its own: this thread's (asgiref's sync-thread markers among it)
            # would make the run's database calls refuse to run.
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._start_reserved, claimed, context=contextvars.Context())
        except RuntimeError:
            # The loop closed in between: the run stays running without a heartbeat and
            # is recovered like any run of a stopped process.
            self.release()
            return False
        return True

    async def drain(self) -> None:
        """Do every queued run, including ones queued while doing them, then return."""
        self.loop = asyncio.get_running_loop()
        try:
            while True:
                await self.fill()
                if not self.tasks:
                    return
                await asyncio.wait(list(self.tasks.values()), return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self.close()

    def notify_threadsafe(self) -> None:
        """A run was queued (from any thread): look for it now. Once this runner claims
        no more (the process drains or stops), the other processes' runners are woken
        instead, so one of them takes it at once rather than at its next poll."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            loop.call_soon_threadsafe(self._wake_others if self.closing else self.wake.set)

    def _wake_others(self) -> None:
        task = asyncio.ensure_future(wake_runners())
        self._waking.add(task)
        task.add_done_callback(self._waking.discard)

    def stop_run(self, run_id: int) -> None:
        task = self.tasks.get(run_id)
        if task is not None and not task.done():
            self.stopping.add(run_id)
            task.cancel()

    def drop_run(self, run_id: int) -> None:
        """The run was taken over by another process: stop streaming it, write nothing."""
        task = self.tasks.get(run_id)
        if task is not None and not task.done():
            task.cancel()

    def stop_run_threadsafe(self, run_id: int) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.stop_run, run_id)

    # One run

    async def close(self) -> None:
        if self.beating is not None:
            self.beating.cancel()
        if self._client is not None:
            await self._client.close()
            self._client = None
        self.threads.close()


# The process's runner: started by the web process on its first request, or by a worker.

_runner: Runner | None = None
# Set by `shut_down` (a web process drains or stops): its next requests start no runner.
_stopped = False


def install(runner: Runner | None) -> None:
    """Make `runner` this process's runner: the one the services reach (tests, workers)."""
    global _runner
    _runner = runner
    dispatch.install(runner)


def ensure_started() -> None:
    """Start this process's runner in the running event loop, once."""
    if _runner is not None or _stopped or not settings.ASSISTANT_RUNNER_IN_SERVER:
        return
    runner = Runner()
    install(runner)
    # Without Redis there is one process: whatever is still running was left by a restart.
    everything = not settings.REDIS_URL
    # Kept on the runner: the event loop holds tasks only weakly.
    runner.serve_task = asyncio.get_running_loop().create_task(runner.serve(recover_everything=everything))


async def shut_down() -> None:
    """The process is stopping (calpico/shutdown.py): this process's runner, if it has
    one, hands its running runs back to the queue for another process. From then on no
    request starts one (a drain serves requests before the process stops)."""
    global _stopped
    _stopped = True
    if _runner is not None:
        await _runner.shut_down()


def run_pending() -> None:
    """Do every queued run now, from synchronous code (tests, the shell)."""
    from asgiref.sync import async_to_sync, sync_to_async

    # Plain sync_to_async: the caller's connection (and a test's transaction) is used as is.
    async_to_sync(Runner(db=sync_to_async).drain)()
