"""Doing the runs: claim one, stream the reply into the room, store how it ended.

A `Runner` lives in each web process (started with the first request, see calpico/asgi.py)
and in each `manage.py assistant_worker` process. It claims queued runs from the database,
so any number of processes share the work and none does a run twice: a claim takes the row
with FOR UPDATE SKIP LOCKED on PostgreSQL (SQLite serializes writers anyway), and a unique
constraint allows one running run per room, so one room's runs go in order. At most
ASSISTANT_MAX_CONCURRENT_RUNS stream at once per process; each is an asyncio task, so a slow
model in one room never holds up another.

While a reply streams, partial text goes to the room every ASSISTANT_STREAM_INTERVAL and
to the database every ASSISTANT_HEARTBEAT_SECONDS (with a heartbeat, and a look at whether
someone pressed Stop in another process). Runs whose process died are found by their
stale heartbeat within a few seconds and run once more, or failed with a note saying so.
A process that is stopped (SIGTERM) hands its running runs back to the queue at once and
wakes the other processes' runners (`Runner.shut_down`).
"""

import asyncio
import base64
import contextlib
import contextvars
import datetime as dt
import logging
import os
import socket
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field

import openai
from asgiref.sync import SyncToAsync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from assistant.models import AssistantRun
from assistant.prompt import build_chat_prompt, estimate_tokens, redacted
from assistant.services import settings_for
from rooms.attachments import attachment_from_bytes
from rooms.live import announce_message, push_partial_text
from rooms.markdown import render_message
from rooms.models import Message
from rooms.services import do_post_assistant_message, do_update_assistant_message

log = logging.getLogger(__name__)

# Longest a run started before its post committed waits for the placeholder's
# announcement; then it checks whether the post committed at all.
ANNOUNCE_WAIT = 5.0
MAX_ATTEMPTS = 2
# Shown in a reply's place while it waits for another process to take it over.
RECONNECTING = "Reconnecting the assistant…"
# The channel-layer group every runner listens on, to hear of runs handed back elsewhere.
RUNNERS_GROUP = "assistant.runners"
# How long a stopping runner waits for its streams to notice they were cancelled.
SHUTDOWN_WAIT = 0.5
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def make_client() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=settings.OPENAI_API_KEY,
        base_url=settings.OPENAI_BASE_URL or None,
        timeout=settings.ASSISTANT_TIMEOUT_SECONDS,
        max_retries=0,  # a failed run shows Retry; silent retries would only look like a hang
    )


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(code, sentence for the room) for what went wrong talking to the model."""
    if isinstance(exc, openai.APITimeoutError):
        seconds = int(settings.ASSISTANT_TIMEOUT_SECONDS)
        return "timeout", f"The AI service did not answer within {seconds} seconds."
    if isinstance(exc, openai.APIConnectionError):
        return "connection", "Could not reach the AI service."
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited", "The AI service is rate limiting requests right now. Try again in a minute."
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "auth", "The AI service refused the server’s API key; an administrator needs to check it."
    if isinstance(exc, openai.BadRequestError):
        return "refused", "The AI service refused this request."
    if isinstance(exc, openai.NotFoundError):
        return "not_found", "The AI service does not know the configured model."
    if isinstance(exc, openai.APIStatusError):
        return "server_error", f"The AI service had an error ({exc.status_code})."
    if isinstance(exc, StreamCut):
        return "cut_off", "The reply was cut off before it finished."
    return "error", "Something went wrong while the assistant was answering."


class StreamCut(Exception):
    """The stream ended without saying it had finished."""


class Abandoned(Exception):
    """The transaction that prepared the run rolled back: the run does not exist."""


@dataclass
class Progress:
    text: str = ""
    dirty: bool = False
    pieces: int = 0
    first_token_at: dt.datetime | None = None
    usage: object | None = None
    saved_text: str = ""
    cut_at_length: bool = False
    finished: bool = False
    # Zero: the first text goes out the moment it arrives; later pushes are coalesced.
    last_push: float = 0.0


@dataclass
class Claimed:
    run_id: int
    room_id: int
    kind: str
    message_id: int
    persona: str
    model: str
    prompt: list | dict
    prompt_tokens_estimate: int = 0
    # The runner holding the run: progress and the end are written only while it still does.
    worker: str = ""
    # Set once the placeholder message has gone out to the room: partial text or the
    # final message sent before it would reach pages that have nothing to put it in.
    # None when it went out before the run was handed over.
    announced: asyncio.Event | None = None
    # The placeholder, when the runner announces it itself (see `announce_placeholder`).
    placeholder: Message | None = None
    progress: Progress = field(default_factory=Progress)


# Database work (synchronous; called through Runner.db)


def claim_next(worker: str) -> Claimed | None:
    """Take the oldest queued run in a room with nothing running, or None."""
    # Most looks find nothing: answer that without a locking transaction (on SQLite,
    # BEGIN IMMEDIATE takes the database's write lock).
    if not AssistantRun.objects.filter(status=AssistantRun.Status.QUEUED).exists():
        return None
    while True:
        with transaction.atomic():
            busy_rooms = AssistantRun.objects.filter(status=AssistantRun.Status.RUNNING).values("room_id")
            query = (
                AssistantRun.objects.filter(status=AssistantRun.Status.QUEUED)
                .exclude(room_id__in=busy_rooms)
                .order_by("id")
            )
            if connection.features.has_select_for_update_skip_locked:
                query = query.select_for_update(skip_locked=True, of=("self",))
            run = query.select_related("room", "requested_by", "trigger", "reply").first()
            if run is None:
                return None
            if not _mark_running(run, worker):
                continue  # another process started a run in this room a moment ago
        claimed = _prepare_or_fail(run)
        if claimed is not None:
            claimed.worker = worker
            return claimed


def claim_run(worker: str, run_id: int) -> Claimed | None:
    """Take this queued run if its room has nothing running and nothing queued before it;
    None if it is not for this worker now (claim_next picks it up later)."""
    with transaction.atomic():
        query = AssistantRun.objects.filter(pk=run_id, status=AssistantRun.Status.QUEUED)
        if connection.features.has_select_for_update_skip_locked:
            query = query.select_for_update(skip_locked=True, of=("self",))
        run = query.select_related("room", "requested_by", "trigger", "reply").first()
        if run is None:
            return None
        if _room_has_work_before(run) or not _mark_running(run, worker):
            return None
    claimed = _prepare_or_fail(run)
    if claimed is not None:
        claimed.worker = worker
    return claimed


def start_when_committed(run: AssistantRun, *, room_busy: bool) -> None:
    """Called in the transaction that queues `run`, which holds its room's lock.

    When this process's runner has a free slot and nothing in the room comes first, the
    run is claimed and prepared right here: its prompt includes the message that asked,
    and its placeholder follows that message. The request to the model starts at once,
    before this transaction commits, so the model works while the post commits and the
    room is told of the question and the placeholder. Nothing of the run is shown or
    stored before that announcement; if the transaction rolls back instead, the run finds
    itself gone and drops what the model sent. Otherwise (no slot, or the room busy) it
    waits in the queue for a runner, here or in another process.

    `room_busy`: the room has other queued or running runs (they go first).
    """
    runner = _runner
    run_id = run.pk
    if runner is None or room_busy or not runner.reserve():
        transaction.on_commit(lambda: notify(run_id))
        return
    try:
        with transaction.atomic():
            claimed = _prepare(run, worker=runner.worker, room_locked=True, announce=False)
    except Exception as exc:
        runner.release()
        if not isinstance(exc, IntegrityError):  # that one: a recovered run in the room
            log.exception("Could not prepare assistant run %s", run_id)
        # Still queued: claim_next takes it, or fails it alone if it must.
        transaction.on_commit(lambda: notify(run_id))
        return

    claimed.announced = asyncio.Event()
    runner.hand_over(claimed)
    transaction.on_commit(lambda: runner.announce_placeholder(claimed))


def _still_ours(claimed: Claimed, worker: str) -> bool:
    """Whether the run is committed and still this worker's."""
    return AssistantRun.objects.filter(
        pk=claimed.run_id, status=AssistantRun.Status.RUNNING, worker=worker
    ).exists()


def _room_has_work_before(run: AssistantRun) -> bool:
    return (
        AssistantRun.objects.filter(room_id=run.room_id)
        .filter(Q(status=AssistantRun.Status.RUNNING) | Q(status=AssistantRun.Status.QUEUED, pk__lt=run.pk))
        .exists()
    )


def _mark_running(run: AssistantRun, worker: str) -> bool:
    """Inside the claim's transaction: make the queued run this worker's; False if the
    one-running-run-per-room constraint or another claim got there first."""
    now = timezone.now()
    try:
        with transaction.atomic():
            updated = AssistantRun.objects.filter(pk=run.pk, status=AssistantRun.Status.QUEUED).update(
                status=AssistantRun.Status.RUNNING,
                worker=worker,
                started_at=now,
                heartbeat_at=now,
                attempts=run.attempts + 1,
                first_token_at=None,
            )
    except IntegrityError:
        return False
    return bool(updated)


def _prepare_or_fail(run: AssistantRun) -> Claimed | None:
    # Outside the claim's transaction: a run that cannot even be prepared (a missing
    # image, say) fails on its own instead of blocking the queue behind it.
    try:
        return _prepare(run)
    except Exception:
        log.exception("Could not prepare assistant run %s", run.pk)
        _fail_unprepared(run)
        return None


def _fail_unprepared(run: AssistantRun) -> None:
    text = "Something went wrong before the assistant could start."
    with transaction.atomic():
        AssistantRun.objects.filter(pk=run.pk).update(
            status=AssistantRun.Status.FAILED,
            error_code="error",
            error=text,
            finished_at=timezone.now(),
            worker="",
        )
        if run.reply_id is None:
            # Nothing in the room answers yet: say so there, with Retry, like any failure.
            reply = do_post_assistant_message(
                run.room_id,
                persona=settings_for(run.room).name,
                state=Message.State.FAILED,
                note=text,
                reply_to=None if run.room.is_private else run.trigger,
            )
            AssistantRun.objects.filter(pk=run.pk).update(reply=reply)
            return
        reply = Message.objects.filter(pk=run.reply_id, deleted_at__isnull=True).first()
        if reply is not None:
            do_update_assistant_message(reply, body=reply.body, state=Message.State.FAILED, note=text)


def _prepare(
    run: AssistantRun, *, worker: str = "", room_locked: bool = False, announce: bool = True
) -> Claimed:
    """Build the prompt and post (or reset) the reply's message; with `worker`, claim the
    queued run for it in the same update. `room_locked`: the caller's transaction holds
    the room's lock, and `run.room` is that locked row. `announce=False`: a new
    placeholder is left for the caller to announce (`Claimed.placeholder`)."""
    assistant = settings_for(run.room)
    if run.kind == AssistantRun.Kind.IMAGE:
        model = settings.ASSISTANT_IMAGE_MODEL
        prompt = run.prompt
        estimate = estimate_tokens(prompt.get("prompt", "")) if isinstance(prompt, dict) else 0
        stored_prompt = prompt
    else:
        model = settings.ASSISTANT_MODEL
        prompt = build_chat_prompt(run, assistant)
        estimate = sum(estimate_tokens(str(entry["content"])) for entry in prompt)
        stored_prompt = redacted(prompt)
    if run.reply is None:
        # In a shared room the reply quotes who asked; alone with it, that is plain.
        reply_to = None if run.room.is_private else run.trigger
        reply = do_post_assistant_message(
            run.room_id,
            persona=assistant.name,
            reply_to=reply_to,
            locked_room=run.room if room_locked else None,
            announce=announce,
        )
    else:
        reply = do_update_assistant_message(
            run.reply, body="", state=Message.State.STREAMING, persona=assistant.name
        )
    updates = {"reply": reply, "model": model, "prompt": stored_prompt}
    if worker:
        now = timezone.now()
        updates.update(
            status=AssistantRun.Status.RUNNING,
            worker=worker,
            started_at=now,
            heartbeat_at=now,
            attempts=run.attempts + 1,
            first_token_at=None,
        )
    AssistantRun.objects.filter(pk=run.pk).update(**updates)
    return Claimed(
        worker=worker,
        placeholder=None if announce or run.reply is not None else reply,
        run_id=run.pk,
        room_id=run.room_id,
        kind=run.kind,
        message_id=reply.pk,
        persona=assistant.name,
        model=model,
        prompt=prompt,
        prompt_tokens_estimate=estimate,
    )


# What save_progress found.
STOP = "stop"  # someone pressed Stop (in another process)
LOST = "lost"  # the run is no longer this runner's: taken for an orphan, queued again


def _ours(claimed: Claimed):
    """The run, while it is still running for the runner that claimed it."""
    query = AssistantRun.objects.filter(pk=claimed.run_id, status=AssistantRun.Status.RUNNING)
    return query.filter(worker=claimed.worker) if claimed.worker else query


def save_progress(claimed: Claimed, text: str, first_token_at) -> str:
    """Keep the partial text and the heartbeat; STOP if someone asked to stop, LOST if
    the run is no longer ours (another process took it over: write nothing more)."""
    updates = {"heartbeat_at": timezone.now()}
    if first_token_at is not None:
        updates["first_token_at"] = first_token_at
    if not _ours(claimed).update(**updates):
        return LOST
    if text:
        # html too: a page loaded now shows the text so far. Never onto a removed message.
        Message.objects.filter(pk=claimed.message_id, deleted_at__isnull=True).update(
            body=text, html=render_message(text, {}, rich=True).html
        )
    return STOP if AssistantRun.objects.filter(pk=claimed.run_id, cancel_requested=True).exists() else ""


def finish(
    claimed: Claimed,
    *,
    status: str,
    text: str,
    progress: Progress,
    error_code: str = "",
    error: str = "",
    image=None,
) -> None:
    """Store how the run ended and show the final message to the room."""
    state = {
        AssistantRun.Status.DONE: Message.State.DONE,
        AssistantRun.Status.CANCELLED: Message.State.STOPPED,
    }.get(status, Message.State.FAILED)
    usage = progress.usage
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    completion_tokens = getattr(usage, "completion_tokens", None)
    if prompt_tokens is None and claimed.kind == AssistantRun.Kind.REPLY:
        prompt_tokens = claimed.prompt_tokens_estimate
    if completion_tokens is None and claimed.kind == AssistantRun.Kind.REPLY:
        completion_tokens = progress.pieces
    with transaction.atomic():
        ended = _ours(claimed).update(
            status=status,
            error_code=error_code,
            error=error[:300],
            finished_at=timezone.now(),
            first_token_at=progress.first_token_at,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            worker="",
        )
        if not ended:
            # Handed back or taken over meanwhile: the run and its message are another
            # runner's now.
            log.warning("Assistant run %s ended here after it was taken over", claimed.run_id)
            return
        message = Message.objects.select_related("room", "reply_to__author").get(pk=claimed.message_id)
        if message.is_deleted:
            return  # removed by an admin or moderator while it was written: it stays removed
        note = error if status == AssistantRun.Status.FAILED else ""
        if status == AssistantRun.Status.CANCELLED:
            note = "Stopped."
        if status == AssistantRun.Status.DONE and progress.cut_at_length:
            note = "Cut off at the reply length limit."
        if status == AssistantRun.Status.DONE and not text and image is None:
            state, note = Message.State.FAILED, "The AI service sent an empty reply."
        do_update_assistant_message(message, body=text, state=state, note=note, image=image)


def recover_orphans(*, everything: bool = False) -> int:
    """Runs left running by a process that died: run once more, or fail with a note.

    `everything`: this is the only process (the embedded defaults), so any running run
    is an orphan; otherwise only those whose heartbeat is stale.
    """
    query = AssistantRun.objects.filter(status=AssistantRun.Status.RUNNING)
    if not everything:
        cutoff = timezone.now() - dt.timedelta(seconds=settings.ASSISTANT_STALE_SECONDS)
        query = query.filter(heartbeat_at__lt=cutoff)
    recovered = 0
    for run_id in list(query.values_list("pk", flat=True)):
        if _release(run_id, handed_back=False):
            recovered += 1
    if recovered:
        log.warning("Recovered %d assistant run(s) left running by a stopped process", recovered)
    return recovered


def hand_back(worker: str) -> int:
    """A stopping runner gives its running runs back to the queue, for another process
    to answer in the same messages. Not counted as a failed attempt: the run did nothing
    wrong. Returns how many went back."""
    query = AssistantRun.objects.filter(status=AssistantRun.Status.RUNNING, worker=worker)
    handed = 0
    for run_id in list(query.values_list("pk", flat=True)):
        if _release(run_id, handed_back=True, worker=worker):
            handed += 1
    if handed:
        log.info("Handed %d assistant run(s) back to the queue", handed)
    return handed


def _release(run_id: int, *, handed_back: bool, worker: str = "") -> bool:
    """Queue a running run again (or end it: stopped, removed, or interrupted once too
    often). The text so far is dropped: the next attempt answers from the start, and
    until it starts the room sees RECONNECTING in the reply's place."""
    with transaction.atomic():
        query = AssistantRun.objects.select_for_update(of=("self",)).select_related("reply")
        query = query.filter(pk=run_id, status=AssistantRun.Status.RUNNING)
        if worker:
            query = query.filter(worker=worker)
        run = query.first()
        if run is None:
            return False
        if run.reply is not None and run.reply.is_deleted:
            run.status, run.finished_at, run.worker = AssistantRun.Status.CANCELLED, timezone.now(), ""
            run.save(update_fields=["status", "finished_at", "worker"])
        elif run.cancel_requested:
            run.status, run.finished_at, run.worker = AssistantRun.Status.CANCELLED, timezone.now(), ""
            run.save(update_fields=["status", "finished_at", "worker"])
            if run.reply is not None:
                do_update_assistant_message(
                    run.reply, body=run.reply.body, state=Message.State.STOPPED, note="Stopped."
                )
        elif handed_back or run.attempts < MAX_ATTEMPTS:
            run.status = AssistantRun.Status.QUEUED
            run.worker = ""
            if handed_back:
                run.attempts = max(run.attempts - 1, 0)
            run.save(update_fields=["status", "worker", "attempts"])
            if run.reply is not None:
                do_update_assistant_message(
                    run.reply, body="", state=Message.State.STREAMING, note=RECONNECTING
                )
        else:
            text = "The assistant was interrupted by a server restart."
            run.status = AssistantRun.Status.FAILED
            run.error_code, run.error = "interrupted", text
            run.finished_at = timezone.now()
            run.worker = ""
            run.save(update_fields=["status", "error_code", "error", "finished_at", "worker"])
            if run.reply is not None:
                do_update_assistant_message(
                    run.reply, body=run.reply.body, state=Message.State.FAILED, note=text
                )
    return True


async def wake_runners() -> None:
    """Tell every process's runner to look for queued runs now (not at its next poll)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(RUNNERS_GROUP, {"type": "runs.queued"})
    except Exception:
        log.exception("Could not wake the other assistant runners")


class RunnerDatabase(SyncToAsync):
    """Channels' database_sync_to_async for the runner, keeping a healthy connection.

    A reply calls the database a few times (progress about once a second, the end).
    With CONN_MAX_AGE=0 (SQLite; PostgreSQL through its pool) Channels' wrapper closes
    the connection after every call, and SQLite opens a new one (about a millisecond) on
    the next: on the way to showing the finished reply. Here a connection is replaced
    only when an error left it unusable.
    """

    def thread_handler(self, loop, *args, **kwargs):
        for conn in connections.all(initialized_only=True):
            if conn.errors_occurred:
                if conn.is_usable():
                    conn.errors_occurred = False
                else:
                    conn.close()
        return super().thread_handler(loop, *args, **kwargs)


class Runner:
    """Claims and streams runs in one process's event loop."""

    def __init__(self, *, worker: str = WORKER_NAME, concurrency: int | None = None, db=None) -> None:
        self.worker = worker
        # How database work leaves the event loop (see RunnerDatabase).
        self.db = db or RunnerDatabase
        self.concurrency = concurrency or settings.ASSISTANT_MAX_CONCURRENT_RUNS
        self.tasks: dict[int, asyncio.Task] = {}
        # Slots promised to runs being claimed, here or in a thread that just queued one
        # (`start_when_committed`, `start_queued`): with the tasks, never more than
        # `concurrency`.
        self.reserved = 0
        self._slots = threading.Lock()
        self.stopping: set[int] = set()
        self.wake = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._client: openai.AsyncOpenAI | None = None
        self.serve_task: asyncio.Task | None = None
        self._client_key: tuple | None = None
        # Set by shut_down(): no more claims, and runs handed over now are left alone.
        self.closing = False

    # Driving

    async def serve(self, *, recover_everything: bool = False) -> None:
        """Run until cancelled: recover orphans, then claim runs as they are queued."""
        # Recovery first, and only then open for claims: `reserve()` refuses while
        # `self.loop` is unset, so no thread can claim a run for this runner that
        # recovery (which may take every running run for an orphan) would hand back.
        await self.db(recover_orphans)(everything=recover_everything)
        self.loop = asyncio.get_running_loop()
        # Only with Redis are there other processes to hear from.
        listener = self.loop.create_task(self._listen()) if settings.REDIS_URL else None
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
                        await self.db(recover_orphans)()
                    except Exception:
                        log.exception("Could not recover assistant runs")
        finally:
            if listener is not None:
                listener.cancel()

    async def _listen(self) -> None:
        """Wake up when another process hands runs back (see `wake_runners`), instead of
        finding them at the next poll."""
        layer = get_channel_layer()
        if layer is None:
            return
        channel = None
        try:
            while True:
                try:
                    if channel is None:
                        channel = await layer.new_channel("assistant-runner.")
                    await layer.group_add(RUNNERS_GROUP, channel)
                    while True:
                        await layer.receive(channel)
                        self.wake.set()
                except Exception:
                    log.warning("Assistant runner lost the channel layer; polling until it is back")
                    await asyncio.sleep(settings.ASSISTANT_POLL_SECONDS)
        finally:
            if channel is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(layer.group_discard(RUNNERS_GROUP, channel))

    async def shut_down(self) -> int:
        """The process is stopping: claim nothing more, stop streaming, and give the
        running runs back to the queue at once (the other processes' runners are woken
        to take them). Returns how many went back."""
        self.closing = True
        if self.serve_task is not None:
            self.serve_task.cancel()
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT)
        handed = await self.db(hand_back)(self.worker)
        if handed:
            await wake_runners()
        await self.close()
        return handed

    async def fill(self) -> None:
        while self.reserve():
            try:
                claimed = await self.db(claim_next)(self.worker)
            except BaseException:
                self.release()
                raise
            if claimed is None:
                self.release()
                return
            self._start_reserved(claimed)

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

    def _start_reserved(self, claimed: Claimed) -> None:
        """In the loop: stream a claimed run in the slot reserved for it."""
        if self.closing:
            # Claimed as the process began to stop: another runner finds it by its heartbeat.
            self.release()
            return
        task = self.loop.create_task(self.execute(claimed))
        with self._slots:
            self.reserved -= 1
            self.tasks[claimed.run_id] = task
        task.add_done_callback(lambda _t, run_id=claimed.run_id: self._done(run_id))

    def _done(self, run_id: int) -> None:
        with self._slots:
            self.tasks.pop(run_id, None)
        self.stopping.discard(run_id)
        self.wake.set()  # the room may have its next run waiting

    def announce_placeholder(self, claimed: Claimed) -> None:
        """After commit, in the committing thread: show the reply's message to the room,
        already holding the words the model has sent by now (its request started before
        the commit), then let the run push the rest."""
        reply = claimed.placeholder
        if reply is not None:
            text = claimed.progress.text  # written by the loop; a str is read whole
            if text.strip():
                reply.body, reply.html = text, render_message(text, {}, rich=True).html
            announce_message(reply)
        self.mark_announced(claimed)

    def mark_announced(self, claimed: Claimed) -> None:
        """After commit, once the placeholder has been announced (from the committing thread)."""
        event = claimed.announced
        if event is not None and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(event.set)

    def start_queued(self, run_id: int) -> bool:
        """From the thread that just committed `run_id`: claim it there and start it now,
        without waking the loop to look for it. False if this runner has no free slot or
        the run must wait (its room is busy); claim_next takes it later then."""
        loop = self.loop
        if loop is None or loop.is_closed() or not self.reserve():
            return False
        try:
            claimed = claim_run(self.worker, run_id)
        except BaseException:
            self.release()
            raise
        if claimed is None:
            self.release()
            return False
        self.hand_over(claimed)
        return True

    def hand_over(self, claimed: Claimed) -> None:
        """From another thread: start a claimed run in the slot reserved for it."""
        try:
            # A context of its own: this thread's (asgiref's sync-thread markers among it)
            # would make the run's database calls refuse to run.
            self.loop.call_soon_threadsafe(self._start_reserved, claimed, context=contextvars.Context())
        except RuntimeError:
            # The loop closed in between: the run stays running without a heartbeat and
            # is recovered like any run of a stopped process.
            self.release()

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
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.wake.set)

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

    async def execute(self, claimed: Claimed) -> None:
        progress = claimed.progress

        watcher = asyncio.get_running_loop().create_task(self._watch(claimed, progress))
        status, error_code, error, image = AssistantRun.Status.DONE, "", "", None
        try:
            if claimed.kind == AssistantRun.Kind.IMAGE:
                image = await self._make_image(claimed, progress)
            else:
                await self._stream_reply(claimed, progress)
        except asyncio.CancelledError:
            if claimed.run_id not in self.stopping:
                raise  # the process is shutting down; recovery deals with the run
            status = AssistantRun.Status.CANCELLED
        except Abandoned:
            return
        except Exception as exc:
            status = AssistantRun.Status.FAILED
            error_code, error = describe_error(exc)
            if error_code == "error":
                log.exception("Assistant run %s failed", claimed.run_id)
            else:
                log.warning("Assistant run %s failed: %s", claimed.run_id, error_code)
        finally:
            progress.finished = True
            watcher.cancel()
        try:
            if not await self._announced(claimed):
                return
            await self.db(finish)(
                claimed,
                status=status,
                text=progress.text.strip(),
                progress=progress,
                error_code=error_code,
                error=error,
                image=image,
            )
        except Exception:
            log.exception("Could not store the end of assistant run %s", claimed.run_id)

    def client(self) -> openai.AsyncOpenAI:
        """One client for the runner's life: building one loads the CA bundle (tens of ms,
        on the event loop) and each keeps its connections to the model open for reuse."""
        key = (settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL, settings.ASSISTANT_TIMEOUT_SECONDS)
        if self._client is None or self._client_key != key:
            self._client, self._client_key = make_client(), key
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _stream_reply(self, claimed: Claimed, progress: Progress) -> None:
        body = {
            "model": claimed.model,
            "messages": claimed.prompt,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if settings.ASSISTANT_MAX_REPLY_TOKENS:
            body["max_tokens"] = settings.ASSISTANT_MAX_REPLY_TOKENS
        # The SDK's own request path (authentication, errors, server-sent events), but not
        # `chat.completions.create`: that first walks every message of the prompt against
        # the parameter types, about 0.15 ms a message on the event loop (30-40 ms for
        # a 200-message history). The prompt is plain JSON already (assistant/prompt.py).

        stream = await self.client().post(
            "/chat/completions",
            body=body,
            cast_to=ChatCompletion,
            options={"security": {"bearer_auth": True}},
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )

        finished = False
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    progress.usage = chunk.usage
                for choice in chunk.choices:
                    piece = choice.delta.content if choice.delta else None
                    if piece:
                        if progress.first_token_at is None:
                            progress.first_token_at = timezone.now()
                        progress.text += piece
                        progress.pieces += 1
                        progress.dirty = True
                    if choice.finish_reason is not None:
                        finished = True
                        progress.cut_at_length = choice.finish_reason == "length"
                if (
                    progress.dirty
                    and time.monotonic() - progress.last_push >= settings.ASSISTANT_STREAM_INTERVAL
                ):
                    await self._push(claimed, progress)
        finally:
            await stream.close()
        if not finished:
            raise StreamCut()

    async def _make_image(self, claimed: Claimed, progress: Progress):
        model = claimed.model
        extra = {} if model.startswith("gpt-image") else {"response_format": "b64_json"}
        result = await self.client().images.generate(
            model=model, prompt=claimed.prompt["prompt"], size=settings.ASSISTANT_IMAGE_SIZE, n=1, **extra
        )
        item = result.data[0]
        if item.b64_json:
            data = base64.b64decode(item.b64_json)
        elif item.url:
            data = await asyncio.to_thread(_download, item.url)
        else:
            raise StreamCut()
        progress.first_token_at = timezone.now()
        return await asyncio.to_thread(attachment_from_bytes, data)

    async def _announced(self, claimed: Claimed) -> bool:
        """Wait until the room has been told of the placeholder. False if that never
        comes because the transaction that prepared the run rolled back."""
        event = claimed.announced
        if event is None or event.is_set():
            return True
        try:
            await asyncio.wait_for(event.wait(), timeout=ANNOUNCE_WAIT)
        except TimeoutError:
            # Committed without the announcement (a failed on_commit hook): go on.
            return await self.db(_still_ours)(claimed, self.worker)
        return True

    async def _push(self, claimed: Claimed, progress: Progress) -> None:
        if not await self._announced(claimed):
            raise Abandoned()
        progress.dirty = False
        progress.last_push = time.monotonic()
        await push_partial_text(claimed.room_id, claimed.message_id, progress.text)

    async def _watch(self, claimed: Claimed, progress: Progress) -> None:
        """Push text that arrived since the last push, keep the heartbeat, notice Stop."""
        last_save = time.monotonic()
        while not progress.finished:
            await asyncio.sleep(settings.ASSISTANT_STREAM_INTERVAL)
            if claimed.announced is not None and not claimed.announced.is_set():
                continue  # nothing is shown or stored before the placeholder
            if progress.dirty and time.monotonic() - progress.last_push >= settings.ASSISTANT_STREAM_INTERVAL:
                await self._push(claimed, progress)
            if time.monotonic() - last_save >= settings.ASSISTANT_HEARTBEAT_SECONDS:
                last_save = time.monotonic()
                text = progress.text if progress.text != progress.saved_text else ""
                progress.saved_text = progress.text
                try:
                    found = await self.db(save_progress)(claimed, text, progress.first_token_at)
                except Exception:
                    log.exception("Could not save progress of assistant run %s", claimed.run_id)
                    continue
                if found == STOP:
                    self.stop_run(claimed.run_id)
                elif found == LOST:
                    log.warning("Assistant run %s was taken over by another process", claimed.run_id)
                    self.drop_run(claimed.run_id)


def _download(url: str) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise StreamCut()
    with urllib.request.urlopen(url, timeout=settings.ASSISTANT_TIMEOUT_SECONDS) as response:  # noqa: S310
        return response.read(settings.AVATAR_MAX_BYTES * 4)


# The process's runner: started by the web process on its first request, or by a worker.

_runner: Runner | None = None


def install(runner: Runner | None) -> None:
    """Make `runner` the one notify() and cancel() reach in this process (tests, workers)."""
    global _runner
    _runner = runner


def ensure_started() -> None:
    """Start this process's runner in the running event loop, once."""
    global _runner
    if _runner is not None or not settings.ASSISTANT_RUNNER_IN_SERVER:
        return
    _runner = Runner()
    # Without Redis there is one process: whatever is still running was left by a restart.
    everything = not settings.REDIS_URL
    # Kept on the runner: the event loop holds tasks only weakly.
    _runner.serve_task = asyncio.get_running_loop().create_task(_runner.serve(recover_everything=everything))


async def shut_down() -> None:
    """The process is stopping (calpico/shutdown.py): this process's runner, if it has
    one, hands its running runs back to the queue for another process."""
    if _runner is not None:
        await _runner.shut_down()


def notify(run_id: int | None = None) -> None:
    """A run was queued (called after commit, in the thread that queued it).

    With `run_id`, this process's runner claims it right here when it can, so the request
    to the model starts without a trip through the event loop; otherwise the runner is
    woken to look for queued runs.
    """
    runner = _runner
    if runner is None:
        return
    if run_id is not None:
        try:
            if runner.start_queued(run_id):
                return
        except Exception:
            log.exception("Could not start assistant run %s at once", run_id)
    runner.notify_threadsafe()


def cancel(run_id: int) -> None:
    """Someone pressed Stop; stop it now if this process streams it (others notice within
    about a second through the database)."""
    if _runner is not None:
        _runner.stop_run_threadsafe(run_id)


def run_pending() -> None:
    """Do every queued run now, from synchronous code (tests, the shell)."""
    from asgiref.sync import async_to_sync, sync_to_async

    # Plain sync_to_async: the caller's connection (and a test's transaction) is used as is.
    async_to_sync(Runner(db=sync_to_async).drain)()
