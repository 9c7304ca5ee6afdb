from allauth.account.adapter import DefaultAccountAdapter
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import RetiredUsername


class AccountAdapter(DefaultAccountAdapter):
    """The one place where Calpico customises allauth.

    Username rules (characters, length, reserved names) come from
    ACCOUNT_USERNAME_VALIDATORS; uniqueness ignoring case from allauth's own check with
    ACCOUNT_PRESERVE_USERNAME_CASING and the database constraint behind it; a deleted
    account's username stays taken for USERNAME_HOLD_DAYS (accounts.models.RetiredUsername).
    """

    def clean_username(self, username, shallow=False):
        username = super().clean_username(username, shallow=shallow)
        if RetiredUsername.objects.filter(
            username=username.lower(), available_after__gt=timezone.now()
        ).exists():
            raise ValidationError(_("That username is taken."), code="retired")
        return username

    def get_signup_redirect_url(self, request):
        # A new account lands on its profile settings, to pick a display name and picture.
        return reverse("accounts:profile_settings")
