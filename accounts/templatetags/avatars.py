from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext

register = template.Library()


@register.simple_tag
def avatar(user, size: int = 36) -> SafeString:
    """A user's picture, or their generated avatar (initials on a colour); a deleted
    account's is a question mark. Built here rather than from a template: a room page draws
    about sixty (its members' faces for "Seen", the header's, the sidebar's), and an
    inclusion template with its own context cost about 40 µs each. Each ends in a newline,
    as the template's file did: between inline elements it is a space the layout may show."""
    picture = _picture(user, size)
    if picture:
        return format_html(
            '<img class="avatar avatar--{}" src="{}" width="{}" height="{}" alt="{}">\n',
            size,
            picture,
            size,
            size,
            user.name,
        )
    if user:
        return format_html(
            '<span class="avatar avatar--{} avatar--c{}" role="img" aria-label="{}">{}</span>\n',
            size,
            user.avatar_colour,
            user.name,
            user.initials,
        )
    return format_html(
        '<span class="avatar avatar--{} avatar--gone" role="img" aria-label="{}">?</span>\n',
        size,
        gettext("Deleted account"),
    )


def _picture(user, size: int):
    if user is None:
        return None
    field = user.avatar_small if size <= 64 else user.avatar_large
    return field.url if field else None
