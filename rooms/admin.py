from django.contrib import admin
from django.db.models import Count

from rooms.models import Membership, Message, Room


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)
    readonly_fields = ("joined_at", "last_read_seq")


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
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
        return room.member_count


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "room", "joined_at", "last_read_seq")
    search_fields = ("user__username", "user__display_name", "room__title")
    raw_id_fields = ("user", "room")
    list_select_related = ("user", "room")


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("room", "seq", "kind", "author", "short_body", "created_at", "edited_at", "deleted_at")
    list_filter = ("kind", ("deleted_at", admin.EmptyFieldListFilter))
    search_fields = ("body", "author__username", "author__display_name", "room__title")
    raw_id_fields = ("room", "author", "reply_to")
    readonly_fields = ("seq", "html", "client_id", "created_at")
    list_select_related = ("room", "author")
    date_hierarchy = "created_at"

    @admin.display(description="Text")
    def short_body(self, message: Message) -> str:
        return message.preview[:80]
