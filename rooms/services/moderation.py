"""Reports from members and what moderators do about them.

A report keeps a snapshot of what was reported, taken when it is made: the message as it
was, its author and room, the ten messages before it, and for an assistant reply the
prompt it was given (through the `rooms.hooks.report_snapshot` hook the assistant app fills in). The
moderator judges that, whatever happens to the message later.

Every moderator action goes through `_act`, which writes the audit log entry in the same
transaction: no action without its record.
"""

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from rooms import hooks
from rooms.live import close_user_sockets, send_event
from rooms.live_groups import user_group
from rooms.models import Membership, Message, ModerationAction, Notice, Report, Room
from rooms.services.groups import do_remove_member_as_moderator
from rooms.services.messages import do_remove_message_as_moderator

CONTEXT_MESSAGES = 10


def _describe(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "seq": message.seq,
        "kind": message.kind,
        "author_id": message.author_id,
        "author": message.author.username if message.author else None,
        "sender": message.sender_name,
        "body": message.body,
        "had_image": bool(message.image),
        "file_name": message.file_name,
        "created_at": message.created_at.isoformat(),
        "deleted": message.is_deleted,
    }


def take_snapshot(message: Message) -> dict[str, Any]:
    before = (
        Message.objects.filter(room_id=message.room_id, seq__lt=message.seq)
        .select_related("author")
        .order_by("-seq")[:CONTEXT_MESSAGES]
    )
    room = message.room
    snapshot = {
        "message": _describe(message),
        "room": {"id": room.pk, "kind": room.kind, "title": room.title},
        "context": [_describe(m) for m in reversed(list(before))],
    }
    hooks.report_snapshot(message, snapshot)
    return snapshot


def do_report_message(
    reporter: User, membership: Membership, message: Message, *, reason: str, text: str
) -> Report:
    """A member reports a message in their room, once."""
    if message.room_id != membership.room_id:
        raise PermissionDenied(_("That message is not in your room."))
    if message.is_system:
        raise ValidationError(_("System messages can't be reported."), code="system")
    if message.is_deleted:
        raise ValidationError(_("That message was deleted; there is nothing left to report."), code="deleted")
    if message.author_id == reporter.pk:
        raise ValidationError(_("You can't report your own message."), code="own")
    if reason not in Report.Reason.values:
        raise ValidationError(_("Choose a reason."), code="reason")
    text = (text or "").strip()
    if len(text) > 1000:
        raise ValidationError(_("Tell us in at most 1,000 characters."), code="too_long")
    try:
        with transaction.atomic():
            return Report.objects.create(
                message=message,
                reporter=reporter,
                reason=reason,
                text=text,
                snapshot=take_snapshot(message),
                room=message.room,
                author=message.author,
            )
    except IntegrityError:
        raise ValidationError(_("You already reported this message."), code="duplicate") from None


# Moderator actions


def _check_moderator(moderator: User) -> None:
    if not (moderator.is_active and moderator.is_staff):
        raise PermissionDenied(_("Only moderators can do that."))


def _check_open(report: Report) -> None:
    if report.status != Report.Status.OPEN:
        raise ValidationError(_("This report was already resolved."), code="resolved")


def _act(
    moderator: User,
    action: str,
    *,
    reason: str = "",
    report: Report | None = None,
    user: User | None = None,
    room: Room | None = None,
    message: Message | None = None,
) -> ModerationAction:
    return ModerationAction.objects.create(
        moderator=moderator,
        action=action,
        reason=reason,
        report=report,
        target_user=user,
        room=room,
        message=message,
    )


def _resolve(report: Report, moderator: User, status: str, resolution: str) -> None:
    """Close a report (and any other open report of the same message) and tell reporters."""
    now = timezone.now()
    reports = Report.objects.filter(status=Report.Status.OPEN)
    reports = reports.filter(message=report.message) if report.message_id else reports.filter(pk=report.pk)
    reporters = list(reports.exclude(reporter=None).values_list("reporter_id", flat=True))
    reports.update(status=status, resolved_by=moderator, resolved_at=now, resolution=resolution)
    if status == Report.Status.DISMISSED:
        text = "A moderator reviewed a message you reported and took no action."
    else:
        text = f"A moderator acted on a message you reported: {resolution}."
    for reporter_id in reporters:
        do_notify(reporter_id, text)


def do_notify(user_id: int, text: str) -> Notice:
    notice = Notice.objects.create(user_id=user_id, text=text)
    hooks.notice_created(notice)
    event = {"type": "user.notice", "text": text, "id": notice.pk}
    transaction.on_commit(lambda: send_event(user_group(user_id), event))
    return notice


def mark_notices_seen(user: User, notice_id: int | None = None) -> None:
    """A notice (or, from an event without its id, every one) was sent to the person's
    pages live: not shown again. Only that one: another, kept while away, may be on its way
    to a page that is opening (`take_notices`)."""
    unseen = Notice.objects.filter(user=user, seen_at__isnull=True)
    if notice_id is not None:
        unseen = unseen.filter(pk=notice_id)
    unseen.update(seen_at=timezone.now())


def take_notices(user_id: int, ids: list[int]) -> list[int]:
    """A page that opened is about to show the person's unseen notices `ids`: marked seen
    for it, each by one page only (two opening at once both read them). Returns those it
    took, in order; `give_back_notices` if they could not be sent."""
    now = timezone.now()
    return [
        pk
        for pk in ids
        if Notice.objects.filter(pk=pk, user_id=user_id, seen_at__isnull=True).update(seen_at=now)
    ]


def give_back_notices(user_id: int, ids: list[int]) -> None:
    """Notices a page took but could not send: shown on the next page instead."""
    Notice.objects.filter(pk__in=ids, user_id=user_id).update(seen_at=None)


def do_dismiss_report(moderator: User, report: Report, *, reason: str = "") -> None:
    _check_moderator(moderator)
    _check_open(report)
    with transaction.atomic():
        _act(moderator, "dismiss report", reason=reason, report=report, user=report.author, room=report.room)
        _resolve(report, moderator, Report.Status.DISMISSED, "dismissed")


def do_remove_reported_message(moderator: User, report: Report, *, reason: str = "") -> None:
    _check_moderator(moderator)
    _check_open(report)
    with transaction.atomic():
        message = report.message
        if message is None:
            raise ValidationError(_("The reported message no longer exists."), code="gone")
        if not message.is_deleted:
            do_remove_message_as_moderator(message)
        _act(
            moderator,
            "delete message",
            reason=reason,
            report=report,
            user=report.author,
            room=report.room,
            message=message,
        )
        _resolve(report, moderator, Report.Status.ACTIONED, "the message was removed")


def do_remove_author_from_room(moderator: User, report: Report, *, reason: str = "") -> None:
    _check_moderator(moderator)
    _check_open(report)
    if report.author is None or report.room is None:
        raise ValidationError(_("This report has no author or room any more."), code="gone")
    with transaction.atomic():
        do_remove_member_as_moderator(report.room, report.author)
        _act(
            moderator, "remove from room", reason=reason, report=report, user=report.author, room=report.room
        )
        _resolve(report, moderator, Report.Status.ACTIONED, "the author was removed from the room")


def end_sessions(user: User) -> int:
    """Sign the user out everywhere: delete their sessions, through the session engine
    so its cache forgets them too."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    ended = 0
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            store(session_key=session.session_key).delete()
            ended += 1
    return ended


def do_suspend(moderator: User, user: User, *, reason: str = "", report: Report | None = None) -> None:
    """Deactivate the account, end its sessions and close its open sockets at once."""
    _check_moderator(moderator)
    if user.pk == moderator.pk:
        raise ValidationError(_("You can't suspend yourself."), code="self")
    if user.is_superuser and not moderator.is_superuser:
        raise PermissionDenied(_("Only a superuser can suspend a superuser."))
    if report is not None:
        _check_open(report)
    with transaction.atomic():
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        user.is_active = False
        end_sessions(user)
        user_id = user.pk
        transaction.on_commit(lambda: close_user_sockets(user_id, reason="suspended"))
        _act(
            moderator,
            "suspend",
            reason=reason,
            report=report,
            user=user,
            room=report.room if report else None,
        )
        if report is not None:
            _resolve(report, moderator, Report.Status.ACTIONED, "the author's account was suspended")


def do_unsuspend(moderator: User, user: User, *, reason: str = "") -> None:
    _check_moderator(moderator)
    with transaction.atomic():
        get_user_model().objects.filter(pk=user.pk).update(is_active=True)
        user.is_active = True
        _act(moderator, "unsuspend", reason=reason, user=user)
