from django import forms

from assistant.models import NAME_MAX_LENGTH, PERSONALITY_MAX_LENGTH, ReplyMode
from assistant.private import MEMORY_MAX_LENGTH


class AssistantForm(forms.Form):
    name = forms.CharField(max_length=NAME_MAX_LENGTH, strip=True)
    # The length is checked by the service after line endings are normalised: a browser
    # sends each newline as two characters.
    personality = forms.CharField(
        required=False,
        widget=forms.Textarea(
            attrs={
                "rows": 3,
                "maxlength": PERSONALITY_MAX_LENGTH,
                "placeholder": "e.g. a terse travel planner who answers in French",
            }
        ),
        help_text=f"How it talks and what it focuses on; up to {PERSONALITY_MAX_LENGTH:,} characters.",
    )
    reply_mode = forms.ChoiceField(choices=ReplyMode.choices, widget=forms.RadioSelect, label="Replies")
    members_can_edit = forms.BooleanField(
        required=False, label="Every member may change the assistant (otherwise only the owner and admins)"
    )

    def __init__(self, *args, owner_controls: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not owner_controls:
            del self.fields["members_can_edit"]


class MemoryForm(forms.Form):
    text = forms.CharField(
        max_length=MEMORY_MAX_LENGTH,
        label="Memory",
        widget=forms.TextInput(attrs={"placeholder": "e.g. I am vegetarian", "autocomplete": "off"}),
    )


class ShareForm(forms.Form):
    room = forms.TypedChoiceField(
        label="Share to",
        coerce=int,
        choices=[],
        error_messages={"invalid_choice": "Choose one of your conversations."},
    )
    note = forms.CharField(required=False, max_length=500, label="Add a note (optional)")

    def __init__(self, *args, targets=(), **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["room"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(room.pk, title) for room, title in targets]
