from allauth.account.adapter import DefaultAccountAdapter
from django.urls import reverse


class AccountAdapter(DefaultAccountAdapter):
    """The one place where Calpico customises allauth.

    Username rules (characters, length, reserved names) come from
    ACCOUNT_USERNAME_VALIDATORS; uniqueness ignoring case from allauth's own check with
    ACCOUNT_PRESERVE_USERNAME_CASING and the database constraint behind it.
    """

    def get_signup_redirect_url(self, request):
        # A new account lands on its profile settings, to pick a display name and picture.
        return reverse("accounts:profile_settings")
