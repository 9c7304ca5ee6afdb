"""What people own: their data export, and deleting their account.

`accounts` may not import `rooms` or `assistant`, and deleting an account touches all
three, so these live in an app of their own above them.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import RetiredUsername, User
from jobs import queue
from jobs.models import Job
from jobs.queue import JobContext
from privacy import export as builder
from privacy.models import DataExport
from rooms import live
from rooms.models import Invite, Membership, Message, ModerationAction, Room
from rooms.services import do_leave_room, search
from rooms.services.moderation import end_sessions

log = logging.getLogger(__name__)

EXPORT_JOB = "privacy.export"
EXPIRE_JOB = "privacy.expire_export"
EXPORTS_PER_DAY = 3
# Messages per room whose open pages are told at once that their author's account is gone;
# older ones show it from the next load on.
ANNOUNCED_CHANGES_PER_ROOM = 50


# Download my data


def visible_exports(user: User) -> list[DataExport]:
    """The person's exports still on offer (or on their way), newest first."""
    now = timezone.now()
    exports = DataExport.objects.filter(user=user).order_by("-created_at", "-id")[:5]
    return [export for export in exports if not export.is_expired(now)]


def do_request_export(user: User) -> DataExport:
    """Queue a new export, built in the background; one at a time, a few a day."""
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # one request at a time per person
        pending = DataExport.objects.filter(
            user=user, status__in=[DataExport.Status.QUEUED, DataExport.Status.BUILDING]
        ).first()
        if pending is not None:
            return pending
        since = timezone.now() - dt.timedelta(days=1)
        if DataExport.objects.filter(user=user, created_at__gte=since).count() >= EXPORTS_PER_DAY:
            raise ValidationError(
                f"You can ask for {EXPORTS_PER_DAY} exports a day; try again tomorrow.", code="too_many"
            )
        export = DataExport.objects.create(user=user)
        queue.enqueue(EXPORT_JOB, {"export_id": export.pk}, max_attempts=3)
    return export


def run_export(job: Job, context: JobContext) -> None:
    """The job: build the ZIP, offer it for EXPORT_DAYS, and schedule its deletion."""
    export = DataExport.objects.select_related("user").filter(pk=job.payload.get("export_id")).first()
    if export is None or export.status == DataExport.Status.READY:
        return  # the account was deleted meanwhile, or an earlier attempt finished it
    DataExport.objects.filter(pk=export.pk).update(status=DataExport.Status.BUILDING, progress=5)
    path = builder.build(export, context)
    now = timezone.now()
    expires_at = now + dt.timedelta(days=settings.EXPORT_DAYS)
    with transaction.atomic():
        updated = DataExport.objects.filter(pk=export.pk).update(
            status=DataExport.Status.READY,
            progress=100,
            size=path.stat().st_size,
            finished_at=now,
            expires_at=expires_at,
        )
        if updated:
            queue.enqueue(EXPIRE_JOB, {"export_id": export.pk}, run_after=expires_at)
    if not updated:
        path.unlink(missing_ok=True)


def export_failed(job: Job) -> None:
    DataExport.objects.filter(pk=job.payload.get("export_id")).update(status=DataExport.Status.FAILED)


def _delete_export_files(exports: list[DataExport]) -> None:
    for export in exports:
        try:
            builder.export_path(export).unlink(missing_ok=True)
        except (OSError, ValueError):
            log.exception("Could not delete the file of export %s", export.pk)


def expire_export(job: Job, context: JobContext) -> None:
    """The job, EXPORT_DAYS later: the ZIP and its row go."""
    export = DataExport.objects.filter(pk=job.payload.get("export_id")).first()
    if export is None:
        return
    _delete_export_files([export])
    export.delete()


# Delete my account


def _recent_messages(user: User) -> list[int]:
    """The person's latest messages in each shared room: the ones open pages may show."""
    ids: list[int] = []
    rooms = Message.objects.filter(author=user).values_list("room_id", flat=True).distinct()
    for room_id in rooms:
        ids += (
            Message.objects.filter(author=user, room_id=room_id)
            .order_by("-seq")
            .values_list("pk", flat=True)[:ANNOUNCED_CHANGES_PER_ROOM]
        )
    return ids


def _announce_changed(message_ids: list[int]) -> None:
    """Open pages show these messages from "Deleted account" (or deleted) at once."""
    for message in Message.objects.filter(pk__in=message_ids).select_related("room", "reply_to__author"):
        live.announce_message_changed(message)


def _stored_files(messages: QuerySet[Message]) -> list[str]:
    """The names in storage of the messages' pictures and files."""
    names = messages.filter(Q(image__gt="") | Q(file__gt="")).values_list("image", "file")
    return [name for pair in names for name in pair if name]


def do_delete_account(
    user: User, *, delete_messages: bool = False, moderator: User | None = None, reason: str = ""
) -> None:
    """Delete the account at once. Its sessions end and its sockets close; its groups go
    on without it (an owner's to the longest-standing member, as when an owner leaves); its
    private assistant room, memories, invite links, exports, picture and blocks go; its
    messages in shared rooms stay, shown as "Deleted account", or are deleted ("message
    deleted") with `delete_messages`. The username stays taken for USERNAME_HOLD_DAYS.
    A moderator's deletion (the admin) is written to the audit log with `reason`."""
    if moderator is not None:
        if not (moderator.is_active and moderator.is_staff):
            raise PermissionDenied(_("Only moderators can do that."))
        if moderator.pk == user.pk:
            raise ValidationError(_("Delete your own account from its settings page."), code="self")
        if user.is_superuser and not moderator.is_superuser:
            raise PermissionDenied(_("Only a superuser can delete a superuser."))
    user_id, username = user.pk, user.username
    files = [f.name for f in (user.avatar_large, user.avatar_small) if f]
    storage = user.avatar_large.storage
    exports = list(DataExport.objects.filter(user=user))
    with transaction.atomic():
        if moderator is not None:
            kept = "deleted" if delete_messages else "kept"
            ModerationAction.objects.create(
                moderator=moderator,
                action="delete account",
                target_user=user,
                reason=f"@{username} (id {user_id}), messages {kept}. {reason}".strip(),
            )
        for membership in Membership.objects.filter(user=user, room__kind=Room.Kind.GROUP).select_related(
            "room", "user"
        ):
            do_leave_room(membership)
        # Direct rooms the other person never accepted go: nobody else ever saw them.
        unanswered = Membership.objects.filter(
            room__kind=Room.Kind.DIRECT,
            room__memberships__user=user,
            request__in=[Membership.Request.PENDING, Membership.Request.DECLINED],
        ).exclude(user=user)
        unanswered_rooms = list(unanswered.values_list("room_id", flat=True))
        private_rooms = list(
            Room.objects.filter(kind=Room.Kind.PRIVATE, owner=user).values_list("pk", flat=True)
        )
        gone_rooms = unanswered_rooms + private_rooms
        search.unindex_messages(Message.objects.filter(room_id__in=gone_rooms))
        files += _stored_files(Message.objects.filter(room_id__in=gone_rooms))
        Room.objects.filter(pk__in=gone_rooms).delete()
        Invite.objects.filter(created_by=user).delete()
        changed = _recent_messages(user)
        if delete_messages:
            mine = Message.objects.filter(author=user, deleted_at__isnull=True)
            files += _stored_files(mine)
            search.unindex_messages(mine)
            mine.update(
                body="",
                html="",
                mentioned_user_ids=[],
                image="",
                file="",
                file_name="",
                file_size=None,
                file_type="",
                deleted_at=timezone.now(),
            )
        end_sessions(user)
        RetiredUsername.objects.update_or_create(
            username=username.lower(),
            defaults={"available_after": timezone.now() + dt.timedelta(days=settings.USERNAME_HOLD_DAYS)},
        )
        user.delete()
        # Direct rooms nobody is left in are archived, like an empty group.
        Room.objects.filter(kind=Room.Kind.DIRECT, archived_at__isnull=True, memberships__isnull=True).update(
            archived_at=timezone.now()
        )

        def after_commit() -> None:
            live.close_user_sockets(user_id, reason="account_deleted")
            for name in files:
                storage.delete(name)
            _delete_export_files(exports)
            _announce_changed(changed)

        transaction.on_commit(after_commit)
