from django.contrib import admin

from accounts.models import RetiredUsername, User
from privacy import services
from privacy.models import DataExport
from rooms.admin import ModeratedUserAdmin, _with_reason


@admin.register(DataExport)
class DataExportAdmin(admin.ModelAdmin):
    """Exports are looked at here (their files are their owners' alone), never changed."""

    list_display = ("user", "status", "progress", "size", "created_at", "expires_at")
    list_filter = ("status",)
    raw_id_fields = ("user",)
    exclude = ("token",)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields if field.name != "token"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RetiredUsername)
class RetiredUsernameAdmin(admin.ModelAdmin):
    list_display = ("username", "available_after")
    search_fields = ("username",)


admin.site.unregister(User)


@admin.register(User)
class AccountUserAdmin(ModeratedUserAdmin):
    """Accounts: deleting one goes through the same service as a person's own deletion
    (sessions ended, sockets closed, groups handed over, files removed, username held),
    and into the audit log with the reason. Django's own delete is switched off."""

    actions = [
        *ModeratedUserAdmin.actions,
        _with_reason(
            "delete_account",
            "Delete account (keep their messages as “Deleted account”)",
            lambda r, user, why: services.do_delete_account(user, moderator=r.user, reason=why),
            permissions=["delete_account"],
        ),
        _with_reason(
            "delete_account_and_messages",
            "Delete account and their messages",
            lambda r, user, why: services.do_delete_account(
                user, delete_messages=True, moderator=r.user, reason=why
            ),
            permissions=["delete_account"],
        ),
    ]

    def has_delete_permission(self, request, obj=None):
        return False

    def has_delete_account_permission(self, request):
        """The account actions: for staff allowed to delete users (Django's own delete
        being switched off, its permission is the one that says so)."""
        return request.user.has_perm("accounts.delete_user")
