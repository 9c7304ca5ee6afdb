import json

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Case, Count, Value, When
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _

from accounts.admin import UserAdmin
from accounts.models import User
from rooms.models import Membership, Message, ModerationAction, Report, Room
from rooms.services import moderation


class ReadOnlyAdmin:
    """Rooms, memberships and messages change only through the services, which announce
    each change to open pages and audit moderator actions; here they are looked at."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MembershipInline(ReadOnlyAdmin, admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)
    readonly_fields = ("joined_at", "last_read_seq")


@admin.register(Room)
class RoomAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("__str__", "kind", "owner", "member_count", "last_seq", "last_activity_at", "archived_at")
    list_filter = ("kind", ("archived_at", admin.EmptyFieldListFilter))
    search_fields = ("title", "memberships__user__username")
    raw_id_fields = ("owner", "last_message")
    readonly_fields = ("direct_key", "last_seq", "created_at")
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return (
            super().get_queryset(request).select_related("owner").annotate(member_count=Count("memberships"))
        )

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, room: Room) -> int:
        return room.member_count  # type: ignore[attr-defined]  # annotated by get_queryset


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("user", "room", "joined_at", "last_read_seq")
    search_fields = ("user__username", "user__display_name", "room__title")
    raw_id_fields = ("user", "room")
    list_select_related = ("user", "room")


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("room", "seq", "kind", "author", "short_body", "created_at", "edited_at", "deleted_at")
    list_filter = ("kind", ("deleted_at", admin.EmptyFieldListFilter))
    search_fields = ("body", "author__username", "author__display_name", "room__title")
    raw_id_fields = ("room", "author", "reply_to")
    readonly_fields = ("seq", "html", "client_id", "created_at")
    list_select_related = ("room", "author")
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        # What someone tells their own assistant is theirs alone: not listed, searched or
        # opened here. Shared rooms are what moderators look after.
        return super().get_queryset(request).exclude(room__kind=Room.Kind.PRIVATE)

    @admin.display(description="Text")
    def short_body(self, message: Message) -> str:
        return message.preview[:80]


# Moderation: the report queue, suspending accounts, and the audit log.


def _with_reason(action_name: str, title: str, perform, permissions: list[str] | None = None):
    """An admin action that first asks the moderator why (the reason goes to the audit
    log), then calls `perform(request, obj, reason)` for each selected object. With
    `permissions`, only staff who have them see it and may run it (the admin's
    `has_<name>_permission` methods)."""

    def action(modeladmin, request, queryset):
        if request.POST.get("confirm") != "yes":
            return render(
                request,
                "admin/rooms/confirm_moderation.html",
                {
                    **modeladmin.admin_site.each_context(request),
                    "title": title,
                    "objects": queryset,
                    "action": action_name,
                    "opts": modeladmin.model._meta,
                    "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
                },
            )
        reason = request.POST.get("reason", "").strip()[:1000]
        done, problems = 0, []
        for obj in queryset:
            try:
                perform(request, obj, reason)
                done += 1
            except (ValidationError, PermissionDenied) as exc:
                problems.append(f"{obj}: {' '.join(getattr(exc, 'messages', [str(exc)]))}")
        if done:
            modeladmin.message_user(request, f"{title}: done for {done}.", messages.SUCCESS)
        for problem in problems:
            modeladmin.message_user(request, problem, messages.ERROR)
        return None

    action.__name__ = action_name
    return admin.action(description=title, permissions=permissions)(action)


class OpenFirst(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Report.Status.choices

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    """The report queue: open reports first, oldest first among them."""

    list_display = ("id", "created_at", "status", "reason", "reporter", "author", "room", "reported_text")
    list_filter = (OpenFirst, "reason")
    search_fields = ("author__username", "reporter__username", "text", "room__title")
    list_select_related = ("reporter", "author", "room")
    readonly_fields = (
        "message",
        "reporter",
        "reason",
        "text",
        "status",
        "created_at",
        "room",
        "author",
        "resolved_by",
        "resolved_at",
        "resolution",
        "in_context",
        "snapshot_view",
    )
    exclude = ("snapshot",)
    actions = [
        _with_reason(
            "dismiss",
            "Dismiss the report",
            lambda r, report, why: moderation.do_dismiss_report(r.user, report, reason=why),
        ),
        _with_reason(
            "delete_message",
            "Delete the message (“removed by a moderator”)",
            lambda r, report, why: moderation.do_remove_reported_message(r.user, report, reason=why),
        ),
        _with_reason(
            "suspend_author",
            "Suspend the author",
            lambda r, report, why: _suspend_reported(r.user, report, why),
        ),
        _with_reason(
            "remove_author",
            "Remove the author from the room",
            lambda r, report, why: moderation.do_remove_author_from_room(r.user, report, reason=why),
        ),
    ]

    def get_queryset(self, request):
        open_first = Case(When(status=Report.Status.OPEN, then=Value(0)), default=Value(1))
        return (
            super().get_queryset(request).annotate(open_first=open_first).order_by("open_first", "created_at")
        )

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Reported text")
    def reported_text(self, report: Report) -> str:
        text = (report.snapshot.get("message", {}).get("body") or "")[:80]
        url = _message_url(report)
        return format_html('<a href="{}">{}</a>', url, text or "(no text)") if url else text

    @admin.display(description="In the conversation")
    def in_context(self, report: Report) -> str:
        url = _message_url(report)
        if not url:
            return "—"
        return format_html(
            '<a href="{}">Open the message in its conversation</a> (for its members only)', url
        )

    @admin.display(description="Snapshot (as reported)")
    def snapshot_view(self, report: Report):
        snapshot = report.snapshot or {}
        rows = [*snapshot.get("context", []), {**snapshot.get("message", {}), "reported": True}]
        # Plain markup: the Content-Security-Policy allows no inline styles, even here.
        items = format_html_join(
            "",
            "<li>{}</li>",
            (
                (format_html("<mark><strong>{}</strong>: {}</mark>", row.get("sender"), row.get("body")),)
                if row.get("reported")
                else (format_html("<strong>{}</strong>: {}", row.get("sender"), row.get("body")),)
                for row in rows
            ),
        )
        run = snapshot.get("assistant_run")
        prompt = ""
        if run:
            prompt = format_html(
                "<p>Assistant run {} ({}), asked by {}.</p><pre>{}</pre>",
                run.get("id"),
                run.get("model"),
                run.get("requested_by"),
                json.dumps(run.get("prompt"), indent=2, ensure_ascii=False),
            )
        return format_html("<ol>{}</ol>{}", items, prompt)


def _message_url(report: Report) -> str:
    """The reported message's link (/r/<room>/m/<seq>/), from the snapshot: no query."""
    room_id = (report.snapshot.get("room") or {}).get("id")
    seq = (report.snapshot.get("message") or {}).get("seq")
    if not (isinstance(room_id, int) and isinstance(seq, int)):
        return ""
    return reverse("rooms:message", args=[room_id, seq])


def _suspend_reported(moderator, report: Report, reason: str) -> None:
    if report.author is None:
        raise ValidationError(_("The author's account no longer exists."))
    moderation.do_suspend(moderator, report.author, reason=reason, report=report)


@admin.register(ModerationAction)
class ModerationActionAdmin(admin.ModelAdmin):
    """The audit log. Nobody adds, changes or deletes entries here."""

    list_display = ("created_at", "moderator", "action", "target_user", "room", "report", "reason")
    list_filter = ("action", "moderator")
    search_fields = ("target_user__username", "moderator__username", "reason")
    list_select_related = ("moderator", "target_user", "room", "report")
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def get_actions(self, request):
        return {}

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.unregister(User)


@admin.register(User)
class ModeratedUserAdmin(UserAdmin):
    """Accounts, with suspend and unsuspend written to the audit log."""

    list_filter = ("is_active", "is_staff", "date_joined")
    actions = [
        _with_reason(
            "suspend",
            "Suspend (deactivate, sign out, close sockets)",
            lambda r, user, why: moderation.do_suspend(r.user, user, reason=why),
        ),
        _with_reason(
            "unsuspend", "Unsuspend", lambda r, user, why: moderation.do_unsuspend(r.user, user, reason=why)
        ),
    ]
