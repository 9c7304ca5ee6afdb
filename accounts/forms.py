from allauth.account import forms as allauth_forms
from django import forms
from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import User
from accounts.validators import validate_display_name


class ProfileForm(forms.ModelForm):
    language = forms.ChoiceField(
        label=gettext_lazy("Language"),
        required=False,
        choices=[("", gettext_lazy("Same as my browser")), *settings.LANGUAGES],
    )

    class Meta:
        model = User
        fields = ["display_name", "language"]
        labels = {"display_name": gettext_lazy("Display name")}
        help_texts = {"display_name": gettext_lazy("Shown next to your messages. At most 50 characters.")}

    def clean_display_name(self) -> str:
        display_name = self.cleaned_data["display_name"]
        validate_display_name(display_name)
        return display_name


class AvatarForm(forms.Form):
    avatar = forms.FileField(
        label=gettext_lazy("Profile picture"),
        help_text=gettext_lazy("JPEG, PNG, WebP or GIF, up to 5 MB."),
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,image/webp,image/gif"}),
    )

    def clean_avatar(self):
        upload = self.cleaned_data["avatar"]
        if upload.size > settings.AVATAR_MAX_BYTES:
            raise forms.ValidationError(
                f"That file is {upload.size / 1024 / 1024:.1f} MB; the limit is "
                f"{settings.AVATAR_MAX_BYTES // 1024 // 1024} MB."
            )
        return upload


class _PlainLabels:
    """allauth's forms repeat each label as a placeholder and end labels with colons."""

    fields: dict[str, forms.Field]
    label_suffix: str

    def _tidy(self) -> None:
        self.label_suffix = ""
        for field in self.fields.values():
            field.widget.attrs.pop("placeholder", None)


class SignupForm(_PlainLabels, allauth_forms.SignupForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tidy()
        self.fields["username"].help_text = _("3 to 30 characters: letters, digits, underscores and dots.")
        self.fields["email"].help_text = _("Only used to reset your password.")


class LoginForm(_PlainLabels, allauth_forms.LoginForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tidy()
