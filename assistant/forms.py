from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy

from assistant.models import NAME_MAX_LENGTH, PERSONALITY_MAX_LENGTH, BudgetUnit, ReplyMode
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
                "placeholder": gettext_lazy("e.g. a terse travel planner who answers in French"),
            }
        ),
        help_text=format_lazy(
            gettext_lazy("How it talks and what it focuses on; up to {} characters."),
            f"{PERSONALITY_MAX_LENGTH:,}",
        ),
    )
    reply_mode = forms.ChoiceField(
        choices=ReplyMode.choices, widget=forms.RadioSelect, label=gettext_lazy("Replies")
    )
    members_can_edit = forms.BooleanField(
        required=False,
        label=gettext_lazy("Every member may change the assistant (otherwise only the owner and admins)"),
    )

    web_search = forms.BooleanField(required=False, label=gettext_lazy("The assistant may search the web"))

    def __init__(self, *args, owner_controls: bool = False, search_controls: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not owner_controls:
            del self.fields["members_can_edit"]
        if not search_controls:
            del self.fields["web_search"]


class MemoryForm(forms.Form):
    text = forms.CharField(
        max_length=MEMORY_MAX_LENGTH,
        label=gettext_lazy("Memory"),
        widget=forms.TextInput(
            attrs={"placeholder": gettext_lazy("e.g. I am vegetarian"), "autocomplete": "off"}
        ),
    )


class ShareForm(forms.Form):
    room = forms.TypedChoiceField(
        label=gettext_lazy("Share to"),
        coerce=int,
        choices=[],
        error_messages={"invalid_choice": "Choose one of your conversations."},
    )
    note = forms.CharField(required=False, max_length=500, label=gettext_lazy("Add a note (optional)"))

    def __init__(self, *args, targets=(), **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["room"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(room.pk, title) for room, title in targets]


class BudgetForm(forms.Form):
    unit = forms.ChoiceField(choices=BudgetUnit.choices, label=gettext_lazy("Counted in"))
    limit = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=2_000_000_000,
        label=gettext_lazy("Monthly budget"),
        help_text=gettext_lazy("Empty: no limit."),
    )
