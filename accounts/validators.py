from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

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
        raise ValidationError("That username is reserved.", code="reserved_username")


USERNAME_VALIDATORS = [validate_username_characters, validate_username_not_reserved]
