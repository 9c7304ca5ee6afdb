"""A room's members as the page lists them for its scripts, fifty or more at a time: built
here rather than by a template loop, which cost about 20 µs a member (templates/rooms/
_mention_candidates.html and _seen_faces.html hold the lists)."""

from collections.abc import Iterable

from django import template
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from accounts.models import User
from accounts.templatetags.avatars import avatar

register = template.Library()


@register.simple_tag
def mention_candidates(members: Iterable[User]) -> SafeString:
    """Who can be mentioned: one item each, for static/js/mentions.js."""
    return format_html_join(
        "",
        '<li data-mention="{}" data-label="{}" data-user-id="{}"></li>',
        ((member.username, member.name, member.pk) for member in members),
    )


@register.simple_tag
def seen_faces(members: Iterable[User]) -> SafeString:
    """Each member's face for "Seen by", for static/js/receipts.js to copy."""
    return format_html_join(
        "",
        '<span class="seen__face" data-user-id="{}" data-name="{}">{}</span>',
        ((member.pk, member.name, avatar(member, 18)) for member in members),
    )
