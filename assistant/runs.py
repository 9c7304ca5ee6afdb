"""A run's life in the database: claim, prepare, show, progress, finish, recover.

Everything here is synchronous database work; the runner (`assistant/runner.py`) calls it
from its event loop through a thread, or from the thread that just committed a run.

- The unique constraint of one running run per room keeps a room's runs in order, and
  `claim_next` takes rows with FOR UPDATE SKIP LOCKED on PostgreSQL (SQLite serializes
  writers anyway), so any number of processes share the work and none does a run twice.
- A run starts running in one of two ways, with the same fields (`AssistantRun.running`):
  created so by the post that asks for it, when this process's runner has a free slot and
  the room nothing before it (`take_started` after commit), or claimed from the queue by a
  runner's loop (`claim_next`, through `_mark_running`).
- The prompt is then built from the room as it is, outside any transaction. The runner
  sends it to the model at once, and only then stores and announces the reply's message
  (`show`), already holding the words that arrived meanwhile.
- Progress and the end are written only while the run is still this worker's: a run
  taken over (its process looked dead) or handed back is another runner's.
- Heartbeats are written with the database's clock (`Now()`) and judged against it, so
  hosts whose clocks disagree never take each other's live runs for orphans.
- `recover_orphans` finds runs whose process went silent; `hand_back` is a stopping
  process giving its runs back.

Kept as one module (over 400 lines) on purpose: every write to a run is here, so who may
write what, and when (`_ours`), is read in one place.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from assistant import asking, budget
from assistant import search as web_search
from assistant.models import PRIVATE_KINDS, AssistantRun, PrivateAnswer
from assistant.prompt import build_chat_prompt, decision_prompt, estimate_tokens, redacted
from assistant.services import settings_for
from assistant.summary import queue_summary_if_due, summary_prompt
from calpico import metrics
from rooms.markdown import render_message
from rooms.models import Message
from rooms.services import do_post_assistant_message, do_update_assistant_message

log = logging.getLogger(__name__)


class RunGone(Exception):
    """The run is no longer this worker's, or its reply was removed meanwhile."""


MAX_ATTEMPTS = 2
# Shown in a reply's place while it waits for another process to take it over.
RECONNECTING = "Reconnecting the assistant…"
# What save_progress found.
STOP = "stop"  # someone pressed Stop (in another process)
LOST = "lost"  # the run is no longer this runner's: taken for an orphan, queued again


@dataclass
class Progress:
    """What the model has sent so far, kept by the runner while the run streams."""

    text: str = ""
    dirty: bool = False
    pieces: int = 0
    first_token_at: dt.datetime | None = None
    usage: Any = None
    saved_text: str = ""
    cut_at_length: bool = False
    finished: bool = False
    # Zero: the first text goes out the moment it arrives; later pushes are coalesced.
    last_push: float = 0.0


@dataclass
class Claimed:
    """A run this worker holds, with everything needed to do it."""

    run_id: int
    room_id: int
    kind: str
    persona: str
    model: str
    prompt: Any  # chat messages (a list) for a reply, {"prompt": ...} for an image
    worker: str
    prompt_tokens_estimate: int = 0
    # The reply's message, once `show` has stored it.
    message_id: int | None = None
    # Web search offered to the model (assistant/search.py), and the sources it used.
    search: bool = False
    sources: list[Any] = field(default_factory=list)
    # A reply nobody asked for: the reason its decision gave (None: it was asked).
    why: str | None = None
    # Shown under a finished reply: what of the attached file did not fit.
    file_note: str = ""
    # Its prompt could not be built: the run is to fail (`fail_unprepared`) instead.
    unprepared: bool = False
    # As claimed: the message to answer in (a retry's, a recovered run's), else the one
    # the new message quotes (none in the private room).
    reply: Message | None = None
    reply_to: Message | None = None
    # A private run's answer (assistant/asking.py): its text goes there, never to the room.
    answer_id: int | None = None
    user_id: int | None = None
    # Set once `show` has ended: partial text or the end sent before it would reach
    # pages with nothing to put it in. `shown` says whether it succeeded.
    announced: asyncio.Event = field(default_factory=asyncio.Event)
    shown: bool = False
    progress: Progress = field(default_factory=Progress)


# Claiming


def claim_next(worker: str) -> Claimed | None:
    """Take the oldest queued run in a room with nothing running, or None."""
    # Most looks find nothing: answer that without a locking transaction (on SQLite,
    # BEGIN IMMEDIATE takes the database's write lock).
    due = Q(not_before__isnull=True) | Q(not_before__lte=Now())
    if not AssistantRun.objects.filter(due, status=AssistantRun.Status.QUEUED).exists():
        return None  # a decision waiting for its pause is not worth a lock either
    while True:
        with transaction.atomic():
            running = AssistantRun.objects.filter(status=AssistantRun.Status.RUNNING)
            summary = Q(kind=AssistantRun.Kind.SUMMARY)
            # Private runs write nothing in the room: they neither wait for nor hold it up. A
            # room's summary runs beside its replies, never in their way (and the reverse).
            busy_rooms = running.exclude(kind__in=PRIVATE_KINDS).exclude(summary).values("room_id")
            summarising = running.filter(summary).values("room_id")
            query = (
                AssistantRun.objects.filter(status=AssistantRun.Status.QUEUED)
                # A decision waits for its pause (set by a host's clock, read by the database's:
                # they differ by far less than a pause).
                .filter(due)
                .filter(Q(kind__in=PRIVATE_KINDS) | summary | ~Q(room_id__in=busy_rooms))
                .exclude(summary & Q(room_id__in=summarising))
                .order_by("id")
            )
            if connection.features.has_select_for_update_skip_locked:
                query = query.select_for_update(skip_locked=True, of=("self",))
            run = query.select_related("room", "requested_by", "trigger", "reply").first()
            if run is None:
                return None
            if not _mark_running(run, worker):
                continue  # another process started a run in this room a moment ago
        claimed = _prepare_or_fail(run, worker)
        if claimed is not None:
            return claimed


def take_started(worker: str, run_id: int) -> Claimed | None:
    """A run created running for this worker (`AssistantRun.running`: its post found this
    process's runner free), after that post committed: prepare it. None if it is no longer
    this worker's."""
    run = (
        AssistantRun.objects.filter(pk=run_id, status=AssistantRun.Status.RUNNING, worker=worker)
        .select_related("room", "requested_by", "trigger", "reply")
        .first()
    )
    if run is None:
        return None
    try:
        return _prepare(run, worker)
    except Exception:
        # Failed where its post can see it: after the post is shown (the runner's show step).
        log.exception("Could not prepare assistant run %s", run.pk)
        return Claimed(
            run_id=run.pk, room_id=run.room_id, kind=run.kind, persona="", model="", prompt=None,
            worker=worker, unprepared=True,
        )  # fmt: skip


def requeue(worker: str, run_id: int) -> None:
    """A run created running for this worker that it cannot start after all (its slots
    filled meanwhile): back to the queue, for any runner."""
    AssistantRun.objects.filter(pk=run_id, status=AssistantRun.Status.RUNNING, worker=worker).update(
        status=AssistantRun.Status.QUEUED, worker="", attempts=0
    )


def _mark_running(run: AssistantRun, worker: str) -> bool:
    """Inside the claim's transaction, make the queued run this worker's (the fields are
    `AssistantRun.running`'s, as for a run created running). False if the one-running-run-
    per-room constraint or another claim got there first."""
    fields = AssistantRun.running(worker, run.kind, attempts=run.attempts + 1)
    try:
        with transaction.atomic():
            updated = AssistantRun.objects.filter(pk=run.pk, status=AssistantRun.Status.QUEUED).update(
                **fields
            )
    except IntegrityError:
        return False
    # The instance is what gets prepared: the model asked is the one just stored, not the
    # empty one a queued run was created with.
    run.model, run.attempts = fields["model"], fields["attempts"]
    return bool(updated)


# Preparing and showing


def _prepare_or_fail(run: AssistantRun, worker: str) -> Claimed | None:
    # Outside any transaction: a run that cannot even be prepared (a missing image, say)
    # fails on its own instead of blocking the queue behind it.
    try:
        return _prepare(run, worker)
    except Exception:
        log.exception("Could not prepare assistant run %s", run.pk)
        fail_unprepared(run.pk)
        return None


def _prepare(run: AssistantRun, worker: str) -> Claimed:
    """What the model is asked: the prompt is built from the room as it is now."""
    assistant = settings_for(run.room)
    notes: list[str] = []  # what of an attached file it could not read
    prompt: Any
    answer_id = None
    if run.kind in PRIVATE_KINDS:
        # Never the memories table; the answer must still exist (not discarded).
        prompt = asking.prompt_for(run)
        answer_id = PrivateAnswer.objects.values_list("pk", flat=True).get(run=run)
        estimate = sum(estimate_tokens(str(entry["content"])) for entry in prompt)
    elif run.kind == AssistantRun.Kind.IMAGE:
        prompt = run.prompt
        estimate = estimate_tokens(prompt.get("prompt", "")) if isinstance(prompt, dict) else 0
    elif run.kind == AssistantRun.Kind.DECISION:
        prompt = decision_prompt(run, assistant)
        estimate = sum(estimate_tokens(str(entry["content"])) for entry in prompt)
    elif run.kind == AssistantRun.Kind.SUMMARY:
        prompt = summary_prompt(run, assistant)
        estimate = sum(estimate_tokens(str(entry["content"])) for entry in prompt)
    else:
        prompt = build_chat_prompt(run, assistant, notes=notes)
        estimate = sum(estimate_tokens(str(entry["content"])) for entry in prompt)
        queue_summary_if_due(run.room, assistant)
    return Claimed(
        run_id=run.pk,
        room_id=run.room_id,
        kind=run.kind,
        persona=assistant.name,
        model=run.model,
        prompt=prompt,
        worker=worker,
        prompt_tokens_estimate=estimate,
        file_note=" ".join(notes),
        why=run.reason if run.unprompted else None,
        search=run.kind == AssistantRun.Kind.REPLY and web_search.enabled() and assistant.web_search,
        reply=run.reply,
        # In a shared room the reply quotes who asked; alone with it, that is plain.
        reply_to=None if run.room.is_private else run.trigger,
        answer_id=answer_id,
        user_id=run.requested_by_id,
    )


def show(claimed: Claimed) -> None:
    """Store the reply's message (new, or the retried one reset) holding the text the model
    has sent so far, and announce it after commit. Called once the model's request is on
    its way (and, for a run a post started, once the room has been shown that post).
    A private run's answer is shown to its asker alone."""
    if claimed.answer_id is not None:
        _show_private(claimed)
        return
    with transaction.atomic():
        text = claimed.progress.text  # written by the event loop; a str is read whole
        if claimed.reply is None:
            reply = do_post_assistant_message(
                claimed.room_id, persona=claimed.persona, body=text, reply_to=claimed.reply_to
            )
            if not _ours(claimed).update(reply=reply):
                raise RunGone()  # and the message goes with the rollback
        else:
            # Locked: recovery or a hand-back cannot change it under us; never onto a
            # reply removed since the claim.
            retried = Message.objects.filter(pk=claimed.reply.pk, deleted_at__isnull=True).first()
            if not _ours(claimed).select_for_update().exists() or retried is None:
                raise RunGone()
            reply = do_update_assistant_message(
                retried, body=text, state=Message.State.STREAMING, persona=claimed.persona
            )
        claimed.message_id = reply.pk


def _show_private(claimed: Claimed) -> None:
    answer_id = claimed.answer_id
    with transaction.atomic():
        if not _ours(claimed).exists():
            raise RunGone()
        shown = PrivateAnswer.objects.filter(pk=answer_id).update(  # type: ignore[misc]  # set for private runs
            state=PrivateAnswer.State.STREAMING, body=claimed.progress.text, note=""
        )
        if not shown:
            raise RunGone()  # discarded meanwhile
        transaction.on_commit(lambda: asking.announce_answer(answer_id))  # type: ignore[arg-type]


def show_note(claimed: Claimed, note: str) -> None:
    """While the reply is not written yet: show `note` in its place ("Searching the web
    for …"), if the run is still this runner's and its message was not removed."""
    with transaction.atomic():
        if claimed.message_id is None or not _ours(claimed).exists():
            return
        message = Message.objects.filter(pk=claimed.message_id, deleted_at__isnull=True).first()
        if message is not None:
            do_update_assistant_message(message, body="", state=Message.State.STREAMING, note=note)


def fail_unprepared(run_id: int) -> None:
    """A claimed run that could not be prepared or shown fails at once, saying so in the
    room with Retry, like any failure (a private run: to its asker only)."""
    text = "Something went wrong before the assistant could start."
    with transaction.atomic():
        run = AssistantRun.objects.select_related("room", "trigger").filter(pk=run_id).first()
        if run is None:
            return
        AssistantRun.objects.filter(pk=run.pk).update(
            status=AssistantRun.Status.FAILED,
            error_code="error",
            error=text,
            finished_at=timezone.now(),
            worker="",
        )
        _count_finished(run.kind, AssistantRun.Status.FAILED)
        if run.kind in PRIVATE_KINDS:
            answer_id = PrivateAnswer.objects.filter(run=run).values_list("pk", flat=True).first()
            if answer_id is not None:
                PrivateAnswer.objects.filter(pk=answer_id).update(state=PrivateAnswer.State.FAILED, note=text)
                transaction.on_commit(lambda: asking.announce_answer(answer_id))
            return
        if run.reply_id is None:
            reply = do_post_assistant_message(
                run.room_id,
                persona=settings_for(run.room).name,
                state=Message.State.FAILED,
                note=text,
                reply_to=None if run.room.is_private else run.trigger,
            )
            AssistantRun.objects.filter(pk=run.pk).update(reply=reply)
            return
        failed = Message.objects.filter(pk=run.reply_id, deleted_at__isnull=True).first()
        if failed is not None:
            do_update_assistant_message(failed, body=failed.body, state=Message.State.FAILED, note=text)


# While it streams, and how it ends


def _ours(claimed: Claimed) -> QuerySet[AssistantRun]:
    """The run, while it is still running for the runner that claimed it."""
    return AssistantRun.objects.filter(
        pk=claimed.run_id, status=AssistantRun.Status.RUNNING, worker=claimed.worker
    )


def save_progress(claimed: Claimed, text: str, first_token_at: dt.datetime | None) -> str:
    """Keep the partial text and the heartbeat; STOP if someone asked to stop, LOST if
    the run is no longer ours (another process took it over: write nothing more)."""
    updates: dict[str, Any] = {"heartbeat_at": Now()}
    if first_token_at is not None:
        updates["first_token_at"] = first_token_at
    if not _ours(claimed).update(**updates):
        return LOST
    if text and claimed.answer_id is not None:
        PrivateAnswer.objects.filter(pk=claimed.answer_id).update(body=text)
    if text and claimed.message_id is not None:
        # html too: a page loaded now shows the text so far. Never onto a removed message.
        Message.objects.filter(pk=claimed.message_id, deleted_at__isnull=True).update(
            body=text, html=render_message(text, {}, rich=True).html
        )
    return STOP if AssistantRun.objects.filter(pk=claimed.run_id, cancel_requested=True).exists() else ""


def beat(worker: str, run_ids: Collection[int]) -> dict[int, str]:
    """The runner's heartbeat for the runs it is doing, from the moment each is claimed:
    one write for all of them. Returns the ones it must act on: STOP (someone pressed
    Stop in another process) or LOST (no longer this worker's)."""
    if not run_ids:
        return {}
    ours = AssistantRun.objects.filter(pk__in=run_ids, status=AssistantRun.Status.RUNNING, worker=worker)
    ours.update(heartbeat_at=Now())
    cancel_requested = dict(ours.values_list("pk", "cancel_requested"))
    found = {run_id: LOST for run_id in run_ids if run_id not in cancel_requested}
    found.update({run_id: STOP for run_id, stop in cancel_requested.items() if stop})
    return found


def finish(
    claimed: Claimed,
    *,
    status: str,
    text: str,
    progress: Progress,
    error_code: str = "",
    error: str = "",
    image: Any = None,
) -> None:
    """Store how the run ended and show the final message to the room."""
    states: dict[str, str] = {
        AssistantRun.Status.DONE: Message.State.DONE,
        AssistantRun.Status.CANCELLED: Message.State.STOPPED,
    }
    state = states.get(status, Message.State.FAILED)
    usage = progress.usage
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    completion_tokens = getattr(usage, "completion_tokens", None)
    # Estimated when the server reported no usage (counted so in the room's budget).
    estimated = usage is None and claimed.kind != AssistantRun.Kind.IMAGE
    if prompt_tokens is None and claimed.kind != AssistantRun.Kind.IMAGE:
        prompt_tokens = claimed.prompt_tokens_estimate
    if completion_tokens is None and claimed.kind != AssistantRun.Kind.IMAGE:
        completion_tokens = progress.pieces
    # What the model was asked, kept on the run (a report of the reply shows it); an
    # image run's prompt is stored with the run already.
    asked: dict[str, Any] = {}
    if claimed.kind == AssistantRun.Kind.REPLY:
        asked["prompt"] = redacted(claimed.prompt)
    with transaction.atomic():
        ended = _ours(claimed).update(
            **asked,
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
        _count_finished(claimed.kind, status, prompt_tokens, completion_tokens)
        # The room's budget: counted here, once per run, atomically (assistant/budget.py).
        budget.record(
            AssistantRun(room_id=claimed.room_id, kind=claimed.kind, requested_by_id=claimed.user_id),
            prompt_tokens=prompt_tokens or 0,
            completion_tokens=completion_tokens or 0,
            estimated=estimated,
        )
        if claimed.answer_id is not None:
            _finish_private(claimed, status, text, error, progress)
            return
        assert claimed.message_id is not None  # finish() follows show()
        message = Message.objects.select_related("room", "reply_to__author").get(pk=claimed.message_id)
        if message.is_deleted:
            return  # removed by an admin or moderator while it was written: it stays removed
        note = error if status == AssistantRun.Status.FAILED else ""
        if status == AssistantRun.Status.CANCELLED:
            note = "Stopped."
        if status == AssistantRun.Status.DONE and progress.cut_at_length:
            note = "Cut off at the reply length limit."
        if status == AssistantRun.Status.DONE and not note and claimed.file_note:
            note = claimed.file_note
        if status == AssistantRun.Status.DONE and not text and image is None:
            state, note = Message.State.FAILED, "The AI service sent an empty reply."
        if claimed.why is not None and state == Message.State.DONE:
            # "Why?" under a reply nobody asked for (assistant/decider.py), kept on the
            # message so that showing it needs no query (pages render it from the row).
            message.event_params = {**message.event_params, "unprompted": True, "why": claimed.why}
            message.save(update_fields=["event_params"])
        do_update_assistant_message(message, body=text, state=state, note=note, image=image)


def _finish_private(claimed: Claimed, status: str, text: str, error: str, progress: Progress) -> None:
    answer_id = claimed.answer_id
    state, note = PrivateAnswer.State.DONE, ""
    if status == AssistantRun.Status.FAILED:
        state, note = PrivateAnswer.State.FAILED, error
    elif status == AssistantRun.Status.CANCELLED:
        note = "Stopped."
    elif progress.cut_at_length:
        note = "Cut off at the reply length limit."
    if status == AssistantRun.Status.DONE and not text:
        state, note = PrivateAnswer.State.FAILED, "The AI service sent an empty reply."
    answered = PrivateAnswer.objects.filter(pk=answer_id)  # type: ignore[misc]  # set for private runs
    if answered.update(state=state, body=text, note=note[:300]):
        transaction.on_commit(lambda: asking.announce_answer(answer_id))  # type: ignore[arg-type]


def _count_finished(
    kind: str, status: str, prompt_tokens: int | None = None, completion_tokens: int | None = None
) -> None:
    """Metrics, counted once the run's end is committed."""

    def count() -> None:
        metrics.ASSISTANT_RUNS_FINISHED.labels(kind=kind, status=status).inc()
        if prompt_tokens:
            metrics.MODEL_TOKENS.labels(type="prompt").inc(prompt_tokens)
        if completion_tokens:
            metrics.MODEL_TOKENS.labels(type="completion").inc(completion_tokens)

    transaction.on_commit(count)


# Runs whose process stopped


def recover_orphans(*, everything: bool = False, worker: str = "", live: Collection[int] = ()) -> int:
    """Runs left running by a process that died: run once more, or fail with a note.

    `everything`: this is the only process (the embedded defaults), so any running run
    is an orphan; otherwise only those whose heartbeat is stale (by the database's clock).
    `worker` and `live`: the recovering runner and the runs it is doing, which are never
    orphans however late their heartbeat (a run of its own that it no longer does is).
    """
    query = AssistantRun.objects.filter(status=AssistantRun.Status.RUNNING)
    if not everything:
        cutoff = Now() - dt.timedelta(seconds=settings.ASSISTANT_STALE_SECONDS)
        query = query.filter(heartbeat_at__lt=cutoff)
    if worker and live:
        query = query.exclude(worker=worker, pk__in=list(live))
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
            _count_finished(run.kind, run.status)
        elif run.cancel_requested:
            run.status, run.finished_at, run.worker = AssistantRun.Status.CANCELLED, timezone.now(), ""
            run.save(update_fields=["status", "finished_at", "worker"])
            _count_finished(run.kind, run.status)
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
            _release_private(run, state=PrivateAnswer.State.THINKING, note=RECONNECTING, keep_text=False)
        else:
            text = "The assistant was interrupted by a server restart."
            run.status = AssistantRun.Status.FAILED
            run.error_code, run.error = "interrupted", text
            run.finished_at = timezone.now()
            run.worker = ""
            run.save(update_fields=["status", "error_code", "error", "finished_at", "worker"])
            _count_finished(run.kind, run.status)
            if run.reply is not None:
                do_update_assistant_message(
                    run.reply, body=run.reply.body, state=Message.State.FAILED, note=text
                )
            _release_private(run, state=PrivateAnswer.State.FAILED, note=text, keep_text=True)
    return True


def _release_private(run: AssistantRun, *, state: str, note: str, keep_text: bool) -> None:
    """A private run queued again or given up: its answer says so to its asker (else the
    card would show the half answer as still being written, for ever)."""
    if run.kind not in PRIVATE_KINDS:
        return
    answer_id = PrivateAnswer.objects.filter(run=run).values_list("pk", flat=True).first()
    if answer_id is None:
        return  # discarded meanwhile
    updates: dict[str, Any] = {"state": state, "note": note}
    if not keep_text:
        updates["body"] = ""
    PrivateAnswer.objects.filter(pk=answer_id).update(**updates)
    transaction.on_commit(lambda: asking.announce_answer(answer_id))
