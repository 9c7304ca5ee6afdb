from django import template

register = template.Library()


@register.inclusion_tag("accounts/_avatar.html")
def avatar(user, size: int = 36):
    """A user's picture, or their generated avatar (initials on a colour)."""
    return {"person": user, "size": size, "picture": _picture(user, size)}


def _picture(user, size: int):
    if user is None:
        return None
    field = user.avatar_small if size <= 64 else user.avatar_large
    return field.url if field else None
