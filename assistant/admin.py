import json

from django.contrib import admin

from assistant.models import AssistantRun, AssistantSettings, Memory


class FailedFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [("failed", "Failed or refused"), ("slow", "First token after 5 s")]

    def queryset(self, request, queryset):
        if self.value() == "failed":
            return queryset.filter(status=AssistantRun.Status.FAILED)
        if self.value() == "slow":
            from datetime import timedelta

            from django.db.models import F

            return queryset.filter(first_token_at__gt=F("started_at") + timedelta(seconds=5))
        return queryset


@admin.register(AssistantRun)
class AssistantRunAdmin(admin.ModelAdmin):
    """Usage and failures: every run the assistant did or refused. Read-only."""

    list_display = (
        "id",
        "created_at",
        "room",
        "requested_by",
        "kind",
        "status",
        "decision",
        "reason",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "first_token_seconds",
        "total_seconds",
        "error_code",
    )
    list_filter = (
        "status",
        FailedFilter,
        "kind",
        "decision",
        "unprompted",
        "error_code",
        "model",
        "created_at",
    )
    search_fields = ("requested_by__username", "room__title", "error")
    date_hierarchy = "created_at"
    list_select_related = ("room", "requested_by")
    raw_id_fields = ("room", "requested_by", "trigger", "reply")

    exclude = ("prompt",)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields if field.name != "prompt"] + ["prompt_sent"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Prompt")
    def prompt_sent(self, run: AssistantRun):
        # Memories and private conversations are their owner's: not shown here either.
        if run.room.is_private:
            return "(a private conversation: not shown)"
        return json.dumps(run.prompt, indent=2, ensure_ascii=False)

    @admin.display(description="First token (s)")
    def first_token_seconds(self, run: AssistantRun):
        value = run.time_to_first_token
        return None if value is None else round(value, 2)

    @admin.display(description="Total (s)")
    def total_seconds(self, run: AssistantRun):
        value = run.total_time
        return None if value is None else round(value, 2)


@admin.register(AssistantSettings)
class AssistantSettingsAdmin(admin.ModelAdmin):
    list_display = ("room", "name", "reply_mode", "members_can_edit")
    list_filter = ("reply_mode",)
    search_fields = ("room__title", "name")
    raw_id_fields = ("room",)


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    """Counts only: memories are private, so the admin does not show their text."""

    list_display = ("id", "user", "created_at", "updated_at")
    search_fields = ("user__username",)
    raw_id_fields = ("user",)
    fields = ("user", "created_at", "updated_at")
    readonly_fields = ("user", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
