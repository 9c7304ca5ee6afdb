"""Email for what was missed: direct messages and mentions left unread for
EMAIL_MISSED_AFTER_MINUTES, to people who asked for it (User.email_missed) and verified
their address (allauth's flow), at most one an hour, none listing a message twice.

A direct message or mention queues one `notifications.missed_email` job for its reader,
due after the delay, unless one is queued already (notifications/jobs.py). The job lists
what is still unread then, since the last email. Every email carries a signed link that
turns these emails off without signing in, and `List-Unsubscribe` headers (RFC 2369, RFC
8058 one-click) for mail programs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import ngettext

from accounts.models import Block, User
from jobs import queue
from jobs.models import Job
from rooms.models import Membership, Message

MISSED_EMAIL = "notifications.missed_email"
AT_MOST_EVERY = dt.timedelta(hours=1)
LISTED = 50
UNSUBSCRIBE_SALT = "notifications.missed-email.unsubscribe"


def verified_address(user: User) -> str | None:
    """The person's verified address (their primary one first), or None."""
    address = (
        EmailAddress.objects.filter(user=user, verified=True)
        .order_by("-primary", "pk")
        .values_list("email", flat=True)
        .first()
    )
    return address or None


def schedule(user_ids: set[int]) -> None:
    """In the transaction of a job that found new direct messages or mentions for these
    people: queue their email, due after the delay, unless one is queued already."""
    wanting = set(
        User.objects.filter(pk__in=user_ids, email_missed=True, is_active=True).values_list("pk", flat=True)
    )
    if not wanting:
        return
    queued = set(
        Job.objects.filter(
            kind=MISSED_EMAIL, status=Job.Status.QUEUED, payload__user_id__in=list(wanting)
        ).values_list("payload__user_id", flat=True)
    )
    due = timezone.now() + dt.timedelta(minutes=settings.EMAIL_MISSED_AFTER_MINUTES)
    for user_id in sorted(wanting - queued):
        queue.enqueue(MISSED_EMAIL, {"user_id": user_id}, run_after=due)


@dataclass(frozen=True)
class Missed:
    message: Message
    mention: bool

    @property
    def url(self) -> str:
        return settings.SITE_URL + reverse("rooms:message", args=[self.message.room_id, self.message.seq])

    @property
    def text(self) -> str:
        """The message's text, unless it is encrypted (the server cannot read it)."""
        return "" if self.message.is_encrypted else self.message.preview

    @property
    def place(self) -> str:
        room = self.message.room
        return room.title if room.is_group else ""


def missed_messages(user: User, since: dt.datetime | None, before: dt.datetime) -> list[Missed]:
    """Direct messages (in rooms not muted) and mentions (anywhere) that `user` has not
    read, written after `since` and up to `before`, oldest first."""
    memberships = {
        m.room_id: m
        for m in Membership.objects.filter(
            user=user, request=Membership.Request.NONE, room__archived_at__isnull=True
        ).select_related("room")
    }
    blocked = set(Block.objects.filter(blocker=user).values_list("blocked_id", flat=True))
    query = (
        Message.objects.filter(
            room_id__in=list(memberships),
            kind__in=[Message.Kind.TEXT, Message.Kind.ENCRYPTED],
            deleted_at__isnull=True,
            created_at__lte=before,
        )
        .exclude(Q(author=user) | Q(author_id__in=blocked))
        .select_related("room", "author")
        .order_by("-created_at")
    )
    if since is not None:
        query = query.filter(created_at__gt=since)
    missed = []
    for message in query[: LISTED * 10]:
        membership = memberships[message.room_id]
        if message.seq <= membership.last_read_seq:
            continue
        mentioned = user.pk in message.mentioned_user_ids
        direct = membership.room.is_direct
        if mentioned or (direct and not membership.muted):
            missed.append(Missed(message, mention=mentioned and not direct))
        if len(missed) >= LISTED:
            break
    return missed[::-1]


def unsubscribe_token(user: User) -> str:
    return signing.dumps(user.pk, salt=UNSUBSCRIBE_SALT, compress=True)


def user_for_token(token: str) -> User | None:
    try:
        user_id = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    return User.objects.filter(pk=user_id).first() if isinstance(user_id, int) else None


def send_missed(user_id: int | None) -> bool:
    """Send the email if it is due and there is something in it; True if it went."""
    user = User.objects.filter(pk=user_id, is_active=True, email_missed=True).first()
    if user is None:
        return False
    address = verified_address(user)
    if address is None:
        return False
    now = timezone.now()
    previous = user.missed_email_at
    if previous is not None and previous > now - AT_MOST_EVERY:
        # One an hour: what is still unread goes in the next one.
        if not Job.objects.filter(
            kind=MISSED_EMAIL, status=Job.Status.QUEUED, payload__user_id=user.pk
        ).exists():
            queue.enqueue(MISSED_EMAIL, {"user_id": user.pk}, run_after=user.missed_email_at + AT_MOST_EVERY)
        return False
    missed = missed_messages(user, previous, now)
    if not missed:
        return False
    # This hour's email is claimed before it is sent: two jobs for one person (queued by
    # two processes at once) running together send one email, not two.
    if not User.objects.filter(pk=user.pk, missed_email_at=previous).update(missed_email_at=now):
        return False
    unsubscribe = settings.SITE_URL + reverse("notifications:unsubscribe", args=[unsubscribe_token(user)])
    with translation.override(user.language or settings.LANGUAGE_CODE):
        context = {
            "user": user,
            "missed": missed,
            "show_text": user.push_show_text,
            "unsubscribe_url": unsubscribe,
            "settings_url": settings.SITE_URL + reverse("rooms:notifications"),
        }
        subject = ngettext(
            "You missed %(count)d message on Calpico", "You missed %(count)d messages on Calpico", len(missed)
        ) % {"count": len(missed)}
        text = render_to_string("notifications/missed_email.txt", context)
        html = render_to_string("notifications/missed_email.html", context)
    mail = EmailMultiAlternatives(
        subject,
        text,
        to=[address],
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    mail.attach_alternative(html, "text/html")
    try:
        mail.send()
    except Exception:
        # A mail server that fails raises: the job is tried again later, the same messages
        # in it, so the claim is given back.
        User.objects.filter(pk=user.pk, missed_email_at=now).update(missed_email_at=previous)
        raise
    return True
