"""The runner when processes start, stop and die: no reply is streamed twice, none stays
frozen. The tests with two real daphne processes are in tests/test_runner_processes.py."""

import asyncio
import contextlib
import datetime as dt
import signal
import threading
import time
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connection
from django.utils import timezone

from assistant import runner, runs, streaming
from assistant.models import AssistantRun
from rooms import services as room_services
from rooms.models import Message
from tests.conftest import membership
from tests.sockets import connected
from tests.test_assistant_live import collect_until

pytestmark = pytest.mark.django_db(transaction=True)


async def wait_until(check, timeout: float = 5.0, what: str = "the condition") -> None:
    """Poll a database check (bounded) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await sync_to_async(check)():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_run_claimed_while_the_runner_starts_is_streamed_once(fake_openai, alice, group):
    """A process starts (alone: every running run is taken to be left by a restart) and a
    mention arrives while it is still recovering. The run is claimed once and streamed
    once: recovery never hands back a run this runner has just started."""
    recovering, resume, recovered = threading.Event(), asyncio.Event(), asyncio.Event()
    worker = runner.Runner()
    on_its_thread = worker.beat_db

    def database(func):
        call = on_its_thread(func)
        if func is not runs.recover_orphans:
            return call

        async def paused(*args, **kwargs):
            recovering.set()
            await resume.wait()
            try:
                return await call(*args, **kwargs)
            finally:
                recovered.set()

        return paused

    gate = threading.Event()
    fake_openai.queue(tokens=["Only ", "once"], gate=gate)
    worker.beat_db = database
    runner.install(worker)
    serving = asyncio.ensure_future(worker.serve(recover_everything=True))
    try:
        assert await asyncio.to_thread(recovering.wait, 5)
        # A person posts through the ordinary path while the runner is still starting.
        await sync_to_async(lambda: room_services.do_post_message(membership(group, alice), "@assistant"))()
        resume.set()
        await asyncio.wait_for(recovered.wait(), 5)
        running = AssistantRun.objects.filter(room=group, status="running")
        await wait_until(running.exists, what="the run to start")
        run = await sync_to_async(AssistantRun.objects.get)(room=group)
        assert run.attempts == 1, "recovery handed back a run this runner had just claimed"
        gate.set()
        await wait_until(
            lambda: AssistantRun.objects.filter(room=group, status="done").exists() and not worker.tasks,
            what="the reply to finish",
        )
        assert len(fake_openai.chat_requests()) == 1
        reply = await sync_to_async(Message.objects.get)(room=group, kind=Message.Kind.ASSISTANT)
        assert reply.body == "Only once" and reply.state == Message.State.DONE
    finally:
        gate.set()
        resume.set()
        runner.install(None)
        serving.cancel()


# A process that stops or dies in the middle of a reply


@pytest.fixture
async def first_runner():
    """The runner of the process that starts the reply (and then stops or dies)."""
    worker = runner.Runner(worker="first:1:aaaaaa")
    runner.install(worker)
    worker.serve_task = asyncio.ensure_future(worker.serve())
    yield worker
    runner.install(None)
    worker.serve_task.cancel()


@pytest.fixture
async def second_runner():
    """Another process's runner, started by the test when it wants it (`.serve()`)."""
    worker = runner.Runner(worker="second:2:bbbbbb")
    yield worker
    if worker.serve_task is not None:
        worker.serve_task.cancel()


def start(worker: runner.Runner) -> None:
    worker.serve_task = asyncio.ensure_future(worker.serve())


async def post(room, user, body):
    return await sync_to_async(lambda: room_services.do_post_message(membership(room, user), body))()


async def test_a_stopping_process_hands_its_reply_back_at_once(
    fake_openai, first_runner, second_runner, alice, group
):
    """On a graceful stop the runner gives its running reply back to the queue (without
    counting it as a failed attempt): the room sees "Reconnecting the assistant…" instead
    of the text so far, and another process answers in the same message."""
    gate = threading.Event()
    fake_openai.queue(tokens=["Half ", "an ", "answer"], gate=gate)
    fake_openai.reply("A whole answer.")
    socket = await connected(alice, group)
    await post(group, alice, "@assistant tell me")
    await collect_until(socket, r">Half<")

    await first_runner.shut_down()
    # The stop waits half a second for its streams; a loaded machine may take longer to
    # unwind one, which then ends as cancelled without writing anything.
    for _ in range(250):
        if not first_runner.tasks:
            break
        await asyncio.sleep(0.02)
    assert not first_runner.tasks
    run = await sync_to_async(AssistantRun.objects.select_related("reply").get)(room=group)
    assert run.status == AssistantRun.Status.QUEUED and run.worker == "" and run.attempts == 0
    assert run.reply.state == Message.State.STREAMING and run.reply.body == ""
    assert run.reply.note == "Reconnecting the assistant…"
    received = await collect_until(socket, r"Reconnecting the assistant…")
    assert "message--streaming" in received[-1] and "Half" not in received[-1]

    start(second_runner)
    received = await collect_until(socket, r"message--done")
    gate.set()
    assert "A whole answer." in received[-1] and "Reconnecting" not in received[-1]
    run = await sync_to_async(AssistantRun.objects.select_related("reply").get)(room=group)
    assert run.status == AssistantRun.Status.DONE and run.attempts == 1
    assert run.reply.body == "A whole answer." and run.reply.note == ""
    assert await sync_to_async(Message.objects.filter(room=group, kind="assistant").count)() == 1
    await socket.disconnect()


async def test_a_request_cut_by_the_stop_is_handed_back_not_failed(
    fake_openai, first_runner, alice, group, monkeypatch
):
    """The model client may report the cancelled request as a lost connection; on a stop
    that is no failure of the run: it goes back to the queue like any running reply."""
    import httpx2
    import openai

    started = asyncio.Event()

    async def cut_when_cancelled(self, claimed, progress):
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise openai.APIConnectionError(request=httpx2.Request("POST", fake_openai.base_url)) from None

    monkeypatch.setattr(streaming.RunStreaming, "_stream_reply", cut_when_cancelled)
    await post(group, alice, "@assistant tell me")
    await asyncio.wait_for(started.wait(), 10)
    await first_runner.shut_down()
    run = await sync_to_async(AssistantRun.objects.get)(room=group)
    assert run.status == AssistantRun.Status.QUEUED and run.attempts == 0 and run.error_code == ""


@pytest.fixture
def sigterm(monkeypatch):
    """SIGTERM to this process as a web process with an 8 s drain takes it (on a clock
    that never moves: the drain goes on); SIGTERM's handler is restored after."""
    from calpico import shutdown
    from jobs import runner as jobs_runner
    from tests.test_probes import FakeReactor

    monkeypatch.setattr(shutdown, "_draining", threading.Event())
    monkeypatch.setattr(shutdown, "_on_readiness_asked", None)
    monkeypatch.setattr(jobs_runner, "_stopped", False, raising=False)
    monkeypatch.setattr(runner, "_stopped", False, raising=False)
    previous = signal.getsignal(signal.SIGTERM)
    shutdown._install_drain(FakeReactor(), 8.0)
    try:
        yield lambda: signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGTERM, previous)


async def test_a_draining_process_claims_nothing_and_hands_its_reply_back(
    fake_openai, first_runner, second_runner, alice, bob, group, sigterm, monkeypatch
):
    """A web process drains before it stops (it still serves pages): from the SIGTERM on
    its runner hands back the reply it was writing and claims no run, not even one posted
    through this process (which wakes the other processes' runners instead); another
    process's runner takes both."""
    woken = []
    wake_runners = runner.wake_runners

    async def counted() -> None:
        woken.append(time.monotonic())
        await wake_runners()

    monkeypatch.setattr(runner, "wake_runners", counted)
    gate = threading.Event()
    fake_openai.queue(tokens=["Half ", "an ", "answer"], gate=gate)
    fake_openai.reply("A whole answer.")
    socket = await connected(alice, group)
    await post(group, alice, "@assistant tell me")
    await collect_until(socket, r">Half<")

    sigterm()
    run = AssistantRun.objects.filter(room=group)
    await wait_until(lambda: run.get().status == AssistantRun.Status.QUEUED, what="the reply handed back")
    # The hand-back waits half a second for the cancelled stream; a loaded machine may take
    # longer to unwind it (it then ends without writing anything).
    await wait_until(lambda: not first_runner.tasks, what="the cancelled stream to end")
    assert (await sync_to_async(run.get)()).attempts == 0
    other = await sync_to_async(room_services.do_create_group)(alice, "Elsewhere", [bob])
    woken_before = len(woken)  # the hand-back's
    await post(other, alice, "@assistant and here?")
    await asyncio.sleep(0.3)  # the draining runner would have claimed it by now
    later = await sync_to_async(AssistantRun.objects.get)(room=other)
    assert later.status == AssistantRun.Status.QUEUED and later.worker == ""
    assert not first_runner.tasks
    assert len(woken) > woken_before, "the run queued through the draining process woke no runner"

    start(second_runner)
    await wait_until(
        lambda: AssistantRun.objects.filter(status=AssistantRun.Status.DONE).count() == 2,
        what="both replies written by the other process",
    )
    gate.set()
    await socket.disconnect()


async def test_a_process_draining_before_its_first_request_starts_no_runner(sigterm, settings, monkeypatch):
    """SIGTERM came before any request started the process's runners: the requests served
    during the drain (the proxy's /readyz among them) start none, which would claim runs
    and jobs until the stop handed them back."""
    from jobs import runner as jobs_runner

    monkeypatch.setattr(runner, "_runner", None)
    monkeypatch.setattr(jobs_runner, "_runner", None)
    settings.ASSISTANT_RUNNER_IN_SERVER = settings.JOBS_RUNNER_IN_SERVER = True
    sigterm()
    await asyncio.sleep(0.05)  # the hand-back (nothing to hand back)
    try:
        runner.ensure_started()  # a request during the drain
        jobs_runner.ensure_started(runner.WORKER_NAME)
        assert runner._runner is None, "a draining process started its assistant runner"
        assert jobs_runner.installed() is None, "a draining process started its job runner"
    finally:
        if runner._runner is not None:
            assert runner._runner.serve_task is not None
            runner._runner.serve_task.cancel()
            runner.install(None)
        await asyncio.to_thread(jobs_runner.shut_down)


def test_a_job_runner_started_as_the_drain_stops_the_runners_is_stopped_too(monkeypatch, settings):
    """A request's `ensure_started` found no runner and not yet stopped, and the drain's
    hand-back (on its thread) ran before it started one: the runner it starts would claim
    jobs for the rest of the drain."""
    from jobs import runner as jobs_runner

    monkeypatch.setattr(jobs_runner, "_runner", None)
    monkeypatch.setattr(jobs_runner, "_stopped", False)
    settings.JOBS_RUNNER_IN_SERVER = True

    class DrainStartsMeanwhile:
        def __getattr__(self, name):
            if name == "JOBS_RUNNER_IN_SERVER":
                jobs_runner.shut_down()  # the drain's hand-back, between the check and the start
            return getattr(settings, name)

    monkeypatch.setattr(jobs_runner, "settings", DrainStartsMeanwhile())
    try:
        jobs_runner.ensure_started("web:1:cccccc")
        assert jobs_runner.installed() is None, "a job runner started after the drain stopped them"
    finally:
        monkeypatch.undo()
        jobs_runner.shut_down()
        jobs_runner._stopped = False


async def test_a_claim_on_its_way_as_the_drain_begins_is_handed_back_too(fake_openai, alice, group):
    """The runner was claiming a run (in its database thread) as the drain began: the
    hand-back ran before the claim committed, and the claim commits all the same (a thread
    is not cancelled). The run goes back to the queue, not left running with no heartbeat
    until another process thinks this one died."""
    await post(group, alice, "@assistant tell me")  # queued: no runner here yet
    claiming, handed_back = asyncio.Event(), asyncio.Event()
    worker = runner.Runner(worker="first:1:aaaaaa")
    db, beat_db = worker.db, worker.beat_db
    late_claims: list[asyncio.Future] = []

    def database(func):
        call = db(func)
        if func is not runs.claim_next:
            return call

        async def in_its_thread(*args):
            async def claim():
                claiming.set()
                await handed_back.wait()
                return await call(*args)

            # Like the thread it runs on, the claim goes on when its caller is cancelled.
            late_claims.append(asyncio.ensure_future(claim()))
            return await asyncio.shield(late_claims[-1])

        return in_its_thread

    def beat_database(func):
        call = beat_db(func)
        if func is not runs.hand_back:
            return call

        async def then_the_claim(*args):
            try:
                return await call(*args)
            finally:
                handed_back.set()

        return then_the_claim

    worker.db, worker.beat_db = database, beat_database
    worker.serve_task = asyncio.ensure_future(worker.serve())
    try:
        await asyncio.wait_for(claiming.wait(), 5)
        # Handed back, but not counted: it was never in progress here.
        assert await asyncio.wait_for(worker.shut_down(), 5) == 0
        await asyncio.wait_for(asyncio.gather(*late_claims, return_exceptions=True), 5)
        run = await sync_to_async(AssistantRun.objects.get)(room=group)
        assert run.status == AssistantRun.Status.QUEUED and run.worker == "", (run.status, run.worker)
        assert run.attempts == 0
    finally:
        handed_back.set()
        worker.serve_task.cancel()


async def test_a_reply_whose_process_died_is_taken_over_within_seconds(
    fake_openai, second_runner, alice, group
):
    """A process dies mid-reply (its heartbeat just stopped): another process notices the
    silence within a few seconds, says so in the room and answers in the same message."""
    fake_openai.reply("Picked up again.")
    socket = await connected(alice, group)

    def died_mid_reply():
        reply = room_services.do_post_assistant_message(group.pk, persona="Assistant", body="Half an ans")
        now = timezone.now()
        return AssistantRun.objects.create(
            room=group,
            requested_by=alice,
            status="running",
            reply=reply,
            attempts=1,
            started_at=now,
            heartbeat_at=now,
            worker="gone:1:cccccc",
        )

    start(second_runner)
    await sync_to_async(died_mid_reply)()
    died_at = asyncio.get_running_loop().time()
    received = await collect_until(socket, r"message--done", timeout=10)
    taken_over = asyncio.get_running_loop().time() - died_at
    assert any("Reconnecting the assistant…" in frame for frame in received)
    assert "Picked up again." in received[-1] and "Half an ans" not in received[-1]
    # Stale after ASSISTANT_STALE_SECONDS, noticed within a heartbeat: well inside 10 s.
    assert taken_over < 8, taken_over
    await socket.disconnect()


async def test_a_runner_that_lost_its_run_stops_writing_it(fake_openai, first_runner, alice, group):
    """Taken for an orphan (its process stalled past the threshold) and given to another
    process, a run is dropped by the runner that had it: it writes neither text nor an end."""
    gate = threading.Event()
    fake_openai.queue(tokens=["Mine ", "no ", "longer"], gate=gate)
    socket = await connected(alice, group)
    await post(group, alice, "@assistant hello")
    await collect_until(socket, r">Mine<")
    # Another process took it over meanwhile.
    await sync_to_async(lambda: AssistantRun.objects.filter(room=group).update(worker="other:3:dddddd"))()
    await wait_until(lambda: not first_runner.tasks, what="the runner to drop the run")
    gate.set()
    run = await sync_to_async(AssistantRun.objects.select_related("reply").get)(room=group)
    assert run.status == AssistantRun.Status.RUNNING and run.worker == "other:3:dddddd"
    assert run.reply.state == Message.State.STREAMING and "longer" not in run.reply.body
    await socket.disconnect()


# A busy process is not a dead one: its runs keep their heartbeat


# The runner's own database threads need a database server: the tests' SQLite database in
# memory is shared by one connection at a time, so there the runner keeps to asgiref's thread.
on_a_database_server = pytest.mark.services


@pytest.fixture
def quick_heartbeat(settings, fake_openai):
    """A heartbeat and a stale threshold short enough for a test to outlast them (and a
    model timeout long enough for it to hold a reply open meanwhile)."""
    settings.ASSISTANT_HEARTBEAT_SECONDS, settings.ASSISTANT_STALE_SECONDS = 0.2, 1.0
    settings.ASSISTANT_TIMEOUT_SECONDS = 10.0
    return settings


@contextlib.asynccontextmanager
async def shared_thread_busy(seconds: float):
    """Keep asgiref's one thread-sensitive thread (the consumers' database calls) busy for
    `seconds`, as a storm of reconnecting pages would."""
    started = threading.Event()

    def busy():
        started.set()
        time.sleep(seconds)  # the consumers' work this thread is stuck behind

    blocker = asyncio.ensure_future(database_sync_to_async(busy)())
    assert await asyncio.to_thread(started.wait, 5)
    try:
        yield
    finally:
        await blocker


def _in_another_process(func):
    """Database work done outside this process's runners (its own thread and connection)."""

    def call():
        try:
            return func()
        finally:
            connection.close()

    return asyncio.to_thread(call)


async def _the_run(room) -> AssistantRun:
    return await _in_another_process(lambda: AssistantRun.objects.select_related("reply").get(room=room))


async def _recovered_elsewhere() -> int:
    """Another process's runner looking for orphans."""
    return await _in_another_process(runs.recover_orphans)


async def _finishes_once(fake_openai, worker, group, gate, text) -> None:
    gate.set()
    await wait_until(
        lambda: AssistantRun.objects.filter(room=group, status="done").exists() and not worker.tasks,
        what="the reply to finish",
    )
    run = await _the_run(group)
    assert run.attempts == 1 and run.reply.body == text and run.reply.state == Message.State.DONE
    assert len(fake_openai.chat_requests()) == 1
    assert await sync_to_async(Message.objects.filter(room=group, kind="assistant").count)() == 1


@on_a_database_server
async def test_a_reply_keeps_its_heartbeat_while_the_consumers_thread_is_busy(
    quick_heartbeat, fake_openai, first_runner, second_runner, alice, group
):
    """The consumers' database thread is stuck for longer than the stale threshold while a
    reply streams: the reply's heartbeat goes on regardless, and neither another runner nor
    another process takes it for an orphan."""
    gate = threading.Event()
    fake_openai.queue(tokens=["Still ", "here"], gate=gate)
    await post(group, alice, "@assistant hello")
    await wait_until(
        lambda: AssistantRun.objects.filter(room=group, reply__body="Still ").exists(), what="the first words"
    )
    start(second_runner)
    before = (await _the_run(group)).heartbeat_at
    beats = set()
    async with shared_thread_busy(3 * quick_heartbeat.ASSISTANT_STALE_SECONDS):
        for _ in range(12):
            await asyncio.sleep(quick_heartbeat.ASSISTANT_HEARTBEAT_SECONDS)
            assert await _recovered_elsewhere() == 0, "a live reply was taken for an orphan"
            beats.add((await _the_run(group)).heartbeat_at)
    assert len(beats - {before}) >= 5, f"the heartbeat stalled: {sorted(beats)}"
    run = await _the_run(group)
    assert run.status == AssistantRun.Status.RUNNING and run.worker == first_runner.worker
    await _finishes_once(fake_openai, first_runner, group, gate, "Still here")


async def test_a_runner_never_takes_its_own_live_reply_for_an_orphan(
    quick_heartbeat, monkeypatch, fake_openai, first_runner, alice, group
):
    """Even when its heartbeat is late (the database slow to take writes), a reply this
    runner is streaming is not requeued by this runner's own recovery, so it is never
    streamed twice."""
    gate = threading.Event()
    fake_openai.queue(tokens=["Just ", "once"], gate=gate)
    fake_openai.reply("A second answer")
    await post(group, alice, "@assistant hello")
    await wait_until(
        lambda: AssistantRun.objects.filter(room=group, reply__body="Just ").exists(), what="the first words"
    )
    # From now on no heartbeat reaches the database, and the last one is long past.
    monkeypatch.setattr(streaming, "save_progress", lambda *args: "")
    monkeypatch.setattr(runner, "beat", lambda *args: {}, raising=False)
    late = timezone.now() - dt.timedelta(seconds=60)
    await _in_another_process(lambda: AssistantRun.objects.filter(room=group).update(heartbeat_at=late))
    for _ in range(10):  # the runner looks for orphans every heartbeat
        await asyncio.sleep(quick_heartbeat.ASSISTANT_HEARTBEAT_SECONDS)
        run = await _the_run(group)
        assert run.status == "running" and run.worker == first_runner.worker and run.attempts == 1
    monkeypatch.undo()
    await _finishes_once(fake_openai, first_runner, group, gate, "Just once")


async def test_heartbeats_go_by_the_database_clock(
    quick_heartbeat, monkeypatch, fake_openai, first_runner, alice, group
):
    """The host streaming a reply has a clock a minute behind the others': its heartbeats
    still count as fresh to a process with the right time."""
    real_now = timezone.now
    monkeypatch.setattr(runs, "timezone", SimpleNamespace(now=lambda: real_now() - dt.timedelta(seconds=60)))
    gate = threading.Event()
    fake_openai.queue(tokens=["On ", "time"], gate=gate)
    await post(group, alice, "@assistant hello")
    await wait_until(
        lambda: AssistantRun.objects.filter(room=group, reply__body="On ").exists(), what="the first words"
    )
    first = (await _the_run(group)).heartbeat_at
    await wait_until(
        lambda: AssistantRun.objects.filter(room=group).exclude(heartbeat_at=first).exists(),
        what="a heartbeat",
    )
    monkeypatch.undo()  # the other process's clock is right
    assert await _recovered_elsewhere() == 0, "a live reply was taken for an orphan"
    await _finishes_once(fake_openai, first_runner, group, gate, "On time")


@on_a_database_server
async def test_a_reply_keeps_its_heartbeat_before_its_message_is_shown(
    quick_heartbeat, monkeypatch, fake_openai, first_runner, alice, group
):
    """Showing the reply's message takes longer than the stale threshold (a slow database
    or channel layer): the run beats from the moment it is claimed, so no other process
    takes it over meanwhile."""
    gate = threading.Event()
    fake_openai.queue(tokens=["Slow ", "start"], gate=gate)
    showing, shown = threading.Event(), threading.Event()
    real_show = runner.show

    def slow_show(claimed):
        showing.set()
        shown.wait(5)
        real_show(claimed)

    monkeypatch.setattr(runner, "show", slow_show)
    posting = asyncio.ensure_future(post(group, alice, "@assistant hello"))
    assert await asyncio.to_thread(showing.wait, 5)
    for _ in range(
        2 * round(quick_heartbeat.ASSISTANT_STALE_SECONDS / quick_heartbeat.ASSISTANT_HEARTBEAT_SECONDS)
    ):
        await asyncio.sleep(quick_heartbeat.ASSISTANT_HEARTBEAT_SECONDS)
        assert await _recovered_elsewhere() == 0, "a reply being shown was taken for an orphan"
    shown.set()
    await posting
    await _finishes_once(fake_openai, first_runner, group, gate, "Slow start")


@on_a_database_server
async def test_a_stopping_process_hands_back_while_the_consumers_thread_is_busy(
    quick_heartbeat, fake_openai, first_runner, alice, group
):
    """A graceful stop under load: handing the reply back does not wait for the consumers'
    database thread."""
    gate = threading.Event()
    fake_openai.queue(tokens=["Half "], gate=gate)
    await post(group, alice, "@assistant hello")
    await wait_until(
        lambda: AssistantRun.objects.filter(room=group, reply__body="Half ").exists(), what="the first words"
    )
    async with shared_thread_busy(3.0):
        started = time.monotonic()
        assert await first_runner.shut_down() == 1
        took = time.monotonic() - started
        run = await _the_run(group)
    gate.set()
    assert run.status == AssistantRun.Status.QUEUED and run.worker == ""
    assert took < 1.0, f"handing back took {took:.2f} s"
