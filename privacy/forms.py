from django import forms
from django.contrib.auth import authenticate
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

CONFIRMATION = "delete my account"


class DeleteAccountForm(forms.Form):
    password = forms.CharField(label=gettext_lazy("Your password"), strip=False, widget=forms.PasswordInput)
    confirmation = forms.CharField(
        label=f"Type “{CONFIRMATION}” to confirm",
        max_length=100,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false"}),
    )
    delete_messages = forms.BooleanField(
        label=gettext_lazy("Also delete my messages"),
        required=False,
        help_text=gettext_lazy(
            "Without this, your messages stay in shared conversations as “Deleted account”."
        ),
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if authenticate(username=self.user.username, password=password) is None:
            raise forms.ValidationError(_("That is not your password."), code="wrong_password")
        return password

    def clean_confirmation(self) -> str:
        typed = " ".join(self.cleaned_data["confirmation"].split()).lower()
        if typed != CONFIRMATION:
            raise forms.ValidationError(f"Type “{CONFIRMATION}” exactly, to be sure.", code="confirmation")
        return typed
