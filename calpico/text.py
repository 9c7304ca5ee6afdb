"""Characters people cannot see, and the ones that turn around the text they can.

Shared by every place that takes text from a person: messages, display names, group and
assistant names.
"""

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

# Embeddings, overrides and isolates (with their terminators): everything after one reads in
# the other direction, so "Bob\u202eredom" shows as "Bobmoder" and a name can hide what it
# says. The plain marks (U+200E, U+200F, U+061C) change no order and stay allowed.
DIRECTION_OVERRIDES = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# Letters and symbols that are drawn as blank space without being whitespace.
_BLANKS = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")


def is_invisible(char: str) -> bool:
    """Whitespace, control and format characters (zero-width spaces and joiners, soft
    hyphens, the byte order mark, direction marks, tags), variation selectors and blanks."""
    code = ord(char)
    return (
        char.isspace()
        or unicodedata.category(char) in {"Cc", "Cf", "Zs", "Zl", "Zp"}
        or char in _BLANKS
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
    )


def visible_characters(text: str) -> str:
    """`text` without the characters nobody sees."""
    return "".join(char for char in text if not is_invisible(char))


def check_no_direction_overrides(text: str, what: str) -> None:
    """ValidationError if `text` holds a character that reverses the text around it; `what`
    names the field for the message ("Group names")."""
    if any(char in DIRECTION_OVERRIDES for char in text):
        raise ValidationError(
            _(
                "%(what)s can't contain characters that reverse the direction of the text "
                "(such as U+202E, right-to-left override)."
            )
            % {"what": what},
            code="direction",
        )
