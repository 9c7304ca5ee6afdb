"""The durable jobs that notify people when Calpico is closed (jobs/queue.py claims them).

Nothing is sent on the post path: the post's transaction records one small job
(`notifications.message`, through rooms.hooks), which after commit works out who is
notified (notifications/rules.py) and records one `notifications.push` job per device, in
one transaction that also finishes it, so a rerun never records them twice. Each push job
sends once, with a timeout; a busy push service (429, 5xx, no answer) is retried with the
queue's back-off; a subscription the service no longer knows (404, 410) is deleted.

Bursts are collapsed: a push for a room whose previous push to the same device is still
queued (not yet claimed) replaces it, and devices replace older notifications of a room
with the newest (its `tag`). A crash between a push service's answer and the job's
finishing sends that push once more: the device shows it in place of the first (same tag).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs import queue
from jobs.models import Job
from notifications import email, push, rules
from notifications.models import PushSubscription
from rooms import hooks
from rooms.models import Message, Notice, Room

log = logging.getLogger(__name__)

MESSAGE = "notifications.message"
ADDED = "notifications.added"
NOTICE = "notifications.notice"
PUSH = "notifications.push"
MISSED_EMAIL = email.MISSED_EMAIL

# Reasons worth an email when left unread.
EMAILED = frozenset({"direct", "mention"})


def register() -> None:
    queue.register(MESSAGE, run_message)
    queue.register(ADDED, run_added)
    queue.register(NOTICE, run_notice)
    queue.register(PUSH, run_push)
    queue.register(MISSED_EMAIL, run_missed_email)
    hooks.on_message_appended(message_appended)
    hooks.on_members_added(members_added)
    hooks.on_notice_created(notice_created)


# Hooks: inside the transaction that stores what happened, only record a job.


def message_appended(message: Message, actor_id: int | None) -> None:
    if message.is_assistant:
        return  # not pushed (notifications/rules.py)
    queue.enqueue(MESSAGE, {"message_id": message.pk, "actor_id": actor_id})


def members_added(room: Room, actor_id: int | None, user_ids: list[int]) -> None:
    if user_ids:
        queue.enqueue(ADDED, {"room_id": room.pk, "actor_id": actor_id, "user_ids": user_ids})


def notice_created(notice: Notice) -> None:
    queue.enqueue(NOTICE, {"notice_id": notice.pk})


# Working out who is notified


# Finished notification jobs are kept a day (to look into), then deleted: every message
# leaves one, and one per device notified. Every PURGE_EVERY-th message job does it.
PURGE_EVERY = 500
KEEP_FINISHED = dt.timedelta(days=1)
PURGE_BATCH = 10_000


# A purge stops after this many batches (a backlog is cleared over the next purges).
PURGE_BATCHES_AT_MOST = 100


def purge_finished() -> int:
    """Delete notification jobs that ended (done or failed) over a day ago, a batch (one
    short transaction) at a time until none is left: each message leaves a job per device
    notified, so between two purges a busy room leaves many batches' worth."""
    old = Job.objects.filter(
        kind__startswith="notifications.",
        status__in=[Job.Status.DONE, Job.Status.FAILED],
        finished_at__lt=timezone.now() - KEEP_FINISHED,
    )
    total = 0
    for _batch in range(PURGE_BATCHES_AT_MOST):
        ids = list(old.values_list("pk", flat=True)[:PURGE_BATCH])
        if not ids:
            break
        deleted, _kinds = Job.objects.filter(pk__in=ids).delete()
        total += deleted
        if len(ids) < PURGE_BATCH:
            break
    return total


def run_message(job: Job, context: queue.JobContext) -> None:
    if job.pk % PURGE_EVERY == 0:
        purge_finished()
    message = (
        Message.objects.select_related("room", "author").filter(pk=job.payload.get("message_id")).first()
    )
    actor_id = job.payload.get("actor_id")
    notes = rules.for_message(message, actor_id, reachable_only=True) if message is not None else []
    deliver(job, notes)


def run_added(job: Job, context: queue.JobContext) -> None:
    room = Room.objects.filter(pk=job.payload.get("room_id")).first()
    notes = (
        rules.for_added(room, job.payload.get("actor_id"), job.payload.get("user_ids", [])) if room else []
    )
    deliver(job, notes)


def run_notice(job: Job, context: queue.JobContext) -> None:
    notice = Notice.objects.select_related("user").filter(pk=job.payload.get("notice_id")).first()
    deliver(job, rules.for_notice(notice) if notice is not None else [])


def deliver(job: Job, notes: list[rules.Notification]) -> None:
    """Record a push job per device of each person notified (or update one still queued for
    the same room), and the missed-messages email, then finish `job`: one transaction."""
    subscriptions: dict[int, list[int]] = defaultdict(list)
    for sub_id, user_id in PushSubscription.objects.filter(
        user_id__in={n.user_id for n in notes}
    ).values_list("pk", "user_id"):
        subscriptions[user_id].append(sub_id)
    emailed = {n.user_id for n in notes if n.reason in EMAILED}
    with transaction.atomic():
        if not queue.holds(job):
            return  # taken over by another process, which does it
        for tag, group in _by_tag(notes).items():
            payloads = {
                sub_id: {
                    "subscription_id": sub_id,
                    "tag": tag,
                    # A message's push is written as it is sent (rules.again): the job
                    # never holds a copy of a text its author may delete or edit.
                    "notification": note.payload() if note.message_id is None else {},
                    "check": note.recheck(),
                }
                for note in group
                for sub_id in subscriptions.get(note.user_id, [])
            }
            _replace_or_enqueue(tag, payloads)
        if emailed:
            email.schedule(emailed)
        queue.finish(job, job.worker)


def _by_tag(notes: list[rules.Notification]) -> dict[str, list[rules.Notification]]:
    groups: dict[str, list[rules.Notification]] = defaultdict(list)
    for note in notes:
        groups[note.tag].append(note)
    return groups


def _replace_or_enqueue(tag: str, payloads: dict[int, dict]) -> None:
    if not payloads:
        return
    waiting = dict(
        Job.objects.filter(
            kind=PUSH, status=Job.Status.QUEUED, payload__tag=tag, payload__subscription_id__in=list(payloads)
        ).values_list("payload__subscription_id", "pk")
    )
    new = []
    for sub_id, payload in payloads.items():
        pk = waiting.get(sub_id)
        # Still queued as the update runs (a runner may be claiming it right now).
        if pk is not None and Job.objects.filter(pk=pk, status=Job.Status.QUEUED).update(payload=payload):
            continue
        new.append(payload)
    queue.enqueue_many(PUSH, new, max_attempts=settings.PUSH_MAX_ATTEMPTS)


# Sending


def run_push(job: Job, context: queue.JobContext) -> None:
    subscription = PushSubscription.objects.filter(pk=job.payload.get("subscription_id")).first()
    if subscription is None:
        return  # removed meanwhile
    notification = job.payload["notification"]
    check = job.payload.get("check")
    if check is not None:
        if check.get("user_id") != subscription.user_id:
            return  # the browser was taken over by another account meanwhile
        # A retry can come long after the post: what it says is decided again now.
        notification = rules.again(check, notification)
        if notification is None:
            return
    status = push.send(subscription, notification, topic=_topic(job.payload.get("tag", "")))
    if status in (404, 410):
        log.info("Push subscription %s is gone (%s): deleted", subscription.pk, status)
        subscription.delete()
    elif status >= 300:
        # The request itself is wrong (too big, a key the service refuses) or sent elsewhere
        # (a redirect, never followed): sending it again would not help.
        log.warning("The push service refused a push to subscription %s (%s)", subscription.pk, status)


def _topic(tag: str) -> str:
    # RFC 8030 topics are at most 32 URL-safe characters.
    return tag.removeprefix("calpico-")[:32]


def run_missed_email(job: Job, context: queue.JobContext) -> None:
    email.send_missed(job.payload.get("user_id"))
