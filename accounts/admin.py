from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from accounts.models import User
from accounts.signals import password_set_by_admin


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("avatar", "username", "display_name", "email", "is_active", "is_staff", "date_joined")
    list_display_links = ("avatar", "username")
    search_fields = ("username", "display_name", "email")
    fieldsets = (
        *(BaseUserAdmin.fieldsets or ()),
        ("Profile", {"fields": ("display_name", "avatar_large", "avatar_small")}),
    )

    @admin.display(description="Picture")
    def avatar(self, user: User) -> str:
        if user.avatar_small:
            return format_html('<img src="{}" width="32" height="32" alt="">', user.avatar_small.url)
        return format_html('<span title="generated avatar">{}</span>', user.initials)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:
            # Set (or made unusable): the account's other sessions are over, and their open
            # pages must stop reading too (rooms.live closes them).
            user = self.get_object(request, id)
            if user is not None:
                password_set_by_admin.send(sender=User, user=user, request=request)
        return response
