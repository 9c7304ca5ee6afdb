from allauth.account import forms as allauth_forms
from django import forms
from django.conf import settings

from accounts.models import User
from accounts.validators import validate_display_name


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["display_name"]
        labels = {"display_name": "Display name"}
        help_texts = {"display_name": "Shown next to your messages. At most 50 characters."}

    def clean_display_name(self) -> str:
        display_name = self.cleaned_data["display_name"]
        validate_display_name(display_name)
        return display_name


class AvatarForm(forms.Form):
    avatar = forms.FileField(
        label="Profile picture",
        help_text="JPEG, PNG, WebP or GIF, up to 5 MB.",
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
        self.fields["username"].help_text = "3 to 30 characters: letters, digits, underscores and dots."
        self.fields["email"].help_text = "Only used to reset your password."


class LoginForm(_PlainLabels, allauth_forms.LoginForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tidy()
