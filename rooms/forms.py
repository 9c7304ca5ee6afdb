import re
import uuid

from django import forms
from django.conf import settings
from django.db.models import Q
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import User
from rooms.access import parse_id
from rooms.models import Report
from rooms.services.invites import EXPIRY_CHOICES, USES_CHOICES


class _DirectWidget(forms.Widget):
    """A widget drawn with format_html instead of Django's widget templates: the same
    markup (django/forms/widgets/input.html, textarea.html and attrs.html), at a tenth of
    the cost (the composer on every room page drew four, 0.2–0.3 ms each). FORM_RENDERER
    does not apply to these."""

    def render(self, name, value, attrs=None, renderer=None):
        widget = self.get_context(name, value, attrs)["widget"]
        attributes = format_html_join(
            "",
            "{}",
            (
                (format_html(" {}", key) if item is True else format_html(' {}="{}"', key, f"{item}"),)
                for key, item in widget["attrs"].items()
                if item is not False
            ),
        )
        if isinstance(self, forms.Textarea):
            return format_html(
                '<textarea name="{}"{}>\n{}</textarea>', widget["name"], attributes, widget["value"] or ""
            )
        value = "" if widget["value"] is None else format_html(' value="{}"', f"{widget['value']}")
        return format_html(
            '<input type="{}" name="{}"{}{}>', widget["type"], widget["name"], value, attributes
        )


class DirectTextarea(_DirectWidget, forms.Textarea):
    pass


class DirectHiddenInput(_DirectWidget, forms.HiddenInput):
    pass


class DirectFileInput(_DirectWidget, forms.FileInput):
    pass


class IdField(forms.Field):
    """An id in a form: a whole number a 64-bit column holds (see rooms.access.parse_id).
    Django's IntegerField would take "+12", "١٢" and ids no column holds."""

    widget = forms.HiddenInput
    default_error_messages = {"invalid": gettext_lazy("That is not one of the choices.")}

    def to_python(self, value):
        if value in self.empty_values:
            return None
        parsed = parse_id(value)
        if parsed is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return parsed


# The id of no form: an encrypted room's textarea names it (MessageForm.keep_text_in_page).
PLAINTEXT_STAYS_IN_PAGE = "e2ee-plaintext-stays-in-page"


class MessageForm(forms.Form):
    body = forms.CharField(
        required=False,
        strip=False,
        widget=DirectTextarea(
            attrs={
                "rows": 1,
                "placeholder": gettext_lazy("Write a message"),
                "autocomplete": "off",
                "aria-label": gettext_lazy("Message"),
            }
        ),
    )
    client_id = forms.UUIDField(required=False, widget=DirectHiddenInput)
    reply_to = IdField(
        required=False,
        widget=DirectHiddenInput,
        error_messages={"invalid": gettext_lazy("The message you replied to is not in this room.")},
    )
    # Any file. Checked by rooms.attachments (size, a picture re-encoded), not by Django's
    # ImageField (which would let Pillow try every format it knows); an empty file is
    # refused there, with the same words as a file too large.
    file = forms.FileField(
        required=False,
        allow_empty_file=True,
        widget=DirectFileInput(
            attrs={"class": "composer__file", "aria-label": gettext_lazy("Attach a file")}
        ),
    )

    def __init__(self, data=None, files=None, *args, **kwargs):
        # "image" is what the composer called its file before it took any file: a page
        # loaded before an upgrade still sends it.
        if files is not None and "image" in files and "file" not in files:
            files = files.copy()
            files["file"] = files["image"]
        super().__init__(data, files, *args, **kwargs)
        # Rendered into the page, so even a form sent twice without JavaScript is one message.
        self.fields["client_id"].initial = uuid.uuid4()
        self.fields["body"].widget.attrs["maxlength"] = settings.MESSAGE_MAX_LENGTH
        # The page refuses a file over the limit before sending it (static/js/attachments.js).
        self.fields["file"].widget.attrs["data-max-bytes"] = settings.ATTACHMENT_MAX_BYTES

    @property
    def max_file_bytes(self) -> int:
        return settings.ATTACHMENT_MAX_BYTES

    def keep_text_in_page(self) -> "MessageForm":
        """An encrypted room's composer (docs/e2ee.md): the textarea belongs to no form, so
        no submission sends what was typed (no JavaScript, static/js/e2ee.js not loaded yet
        or failing); e2ee.js posts the ciphertext as `body` instead."""
        self.fields["body"].widget.attrs["form"] = PLAINTEXT_STAYS_IN_PAGE
        return self


class EditMessageForm(forms.Form):
    body = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "aria-label": gettext_lazy("Message")}),
    )


def parse_usernames(text: str) -> list[str]:
    names = [name.lstrip("@") for name in re.split(r"[\s,;]+", text or "") if name.strip("@")]
    return list(dict.fromkeys(names))


class UsernamesField(forms.CharField):
    """Usernames separated by commas or spaces, turned into active users."""

    def clean(self, value):
        names = parse_usernames(super().clean(value))
        if len(names) > settings.ROOM_MAX_MEMBERS:
            raise forms.ValidationError(
                _("A group has at most %(count)s members.") % {"count": settings.ROOM_MAX_MEMBERS}
            )
        if not names:
            return []
        query = Q()
        for name in names:
            query |= Q(username__iexact=name)
        found = {u.username.lower(): u for u in User.objects.filter(query, is_active=True)}
        missing = [name for name in names if name.lower() not in found]
        if missing:
            raise forms.ValidationError(
                "No account named " + ", ".join(f"“{name}”" for name in missing) + "."
            )
        return [found[name.lower()] for name in names]


class GroupForm(forms.Form):
    title = forms.CharField(label=gettext_lazy("Group name"), max_length=80, required=False)
    members = UsernamesField(
        label=gettext_lazy("Members"),
        required=False,
        help_text=gettext_lazy("Usernames, separated by commas or spaces."),
        widget=forms.TextInput(attrs={"placeholder": "bob, carol", "autocomplete": "off"}),
    )

    encrypted = forms.BooleanField(
        label=gettext_lazy("End-to-end encrypted"),
        required=False,
        help_text=gettext_lazy(
            "Messages are encrypted in the members' browsers; the server can't read them. No assistant, "
            "no files, no search, and a new device can't read earlier messages."
        ),
    )


class AddMembersForm(forms.Form):
    members = UsernamesField(
        label=gettext_lazy("Add people"),
        help_text=gettext_lazy("Usernames, separated by commas or spaces."),
        widget=forms.TextInput(attrs={"placeholder": "dave, erin", "autocomplete": "off"}),
    )


class RenameForm(forms.Form):
    title = forms.CharField(label=gettext_lazy("Group name"), max_length=80, required=False)


class InviteForm(forms.Form):
    expiry = forms.ChoiceField(label=gettext_lazy("Expires after"), initial="7d")
    uses = forms.ChoiceField(label=gettext_lazy("Can be used"), initial="unlimited")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        expiry, uses = self.fields["expiry"], self.fields["uses"]
        assert isinstance(expiry, forms.ChoiceField) and isinstance(uses, forms.ChoiceField)
        expiry.choices = [(key, label) for key, (label, _) in EXPIRY_CHOICES.items()]
        uses.choices = [(key, label) for key, (label, _) in USES_CHOICES.items()]


class ReportForm(forms.Form):
    reason = forms.ChoiceField(
        choices=Report.Reason.choices, widget=forms.RadioSelect, label=gettext_lazy("What's wrong?")
    )
    text = forms.CharField(
        required=False,
        max_length=1000,
        label=gettext_lazy("Anything the moderators should know (optional)"),
        widget=forms.Textarea(attrs={"rows": 3}),
    )
