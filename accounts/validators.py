import re
import unicodedata
from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.translation import gettext as _

from calpico.text import check_no_direction_overrides, is_invisible, visible_characters

# Names that would let someone pose as the product, its staff or a mention keyword.
RESERVED_USERNAMES = frozenset(
    {
        "admin",
        "administrator",
        "assistant",
        "ai",
        "bot",
        "calpico",
        "everyone",
        "help",
        "here",
        "me",
        "moderator",
        "mod",
        "null",
        "root",
        "room",
        "staff",
        "support",
        "system",
        "undefined",
    }
)

validate_username_characters = RegexValidator(
    r"^[A-Za-z0-9_.]{3,30}\Z",
    "Usernames are 3 to 30 characters: letters, digits, underscores and dots.",
    code="invalid_username",
)


def validate_username_not_reserved(value: str) -> None:
    if value.lower() in RESERVED_USERNAMES:
        raise ValidationError(_("That username is reserved."), code="reserved_username")


USERNAME_VALIDATORS: list[Callable[[str], None]] = [
    validate_username_characters,
    validate_username_not_reserved,
]


# Display names that would pass for the product, its staff or the system. A name made only
# of these (and the fillers) is refused, whatever its case, width, spacing or punctuation.
RESERVED_DISPLAY_NAMES = frozenset(
    {
        "admin",
        "admins",
        "administrator",
        "administrators",
        "assistant",
        "bot",
        "calpico",
        "mod",
        "mods",
        "moderator",
        "moderators",
        "root",
        "security",
        "staff",
        "support",
        "system",
    }
)
_DISPLAY_NAME_FILLERS = frozenset({"the", "team", "official", "account", "help", "desk", "of"})


def is_reserved_display_name(value: str) -> bool:
    """True for "Admin", "ＡＤＭＩＮ", "Ad(zero-width space)min", "A d m i n", "The Calpico Team"."""
    # Spaces still separate words; the other invisible characters are as if not there.
    spaced = "".join(
        " " if char.isspace() else char for char in value if char.isspace() or not is_invisible(char)
    )
    folded = unicodedata.normalize("NFKC", spaced).casefold()
    words = re.findall(r"[^\W_]+", folded)
    if not words:
        return False
    if all(len(word) == 1 for word in words) and "".join(words) in RESERVED_DISPLAY_NAMES:
        return True  # spelled out letter by letter
    return all(word in RESERVED_DISPLAY_NAMES | _DISPLAY_NAME_FILLERS for word in words) and any(
        word in RESERVED_DISPLAY_NAMES for word in words
    )


def validate_display_name(value: str) -> None:
    if not value:
        return  # no display name: the username is shown
    if not visible_characters(value):
        raise ValidationError(
            "That name has only invisible characters; leave it empty to show your username.",
            code="invisible",
        )
    check_no_direction_overrides(value, "Display names")
    if is_reserved_display_name(value):
        raise ValidationError(
            "That name is reserved: it would look like the staff or the app speaking.",
            code="reserved_display_name",
        )
