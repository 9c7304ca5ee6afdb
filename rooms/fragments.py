"""A message's HTML, rendered once and shared by every viewer.

`templates/rooms/_message.html` draws a message the same for everyone who may see it; what
differs per viewer (my own messages, blocked authors, admin actions) is decided by classes
the page's CSS and JS act on. So a message is rendered once per version of what it shows
and kept in the cache: the post renders it for the live event and its own response, and
every room page after that reads it back with one `get_many` instead of rendering fifty
templates (docs/performance.md has the figures).

The cache key is a digest of everything the partial reads: every stored field of the
message, of its author, of the message it replies to and that message's author, the
room's kind, the active language and time zone, and the text of the templates, of the
code they call and of the translations. Changing any of them (an edit, a new display
name or avatar, a reply finishing, a deploy) makes a new key; nothing is ever
invalidated by hand. Whatever else a future partial reads must be added to
`_fingerprint`. Reaction chips differ per viewer and are drawn into the shared HTML's
slot for each page (`_with_reactions`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import Enum
from pathlib import Path

from django.conf import settings
from django.core.cache import caches
from django.db.models import Model
from django.db.models.fields.files import FieldFile
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.safestring import SafeString, mark_safe

from accounts.models import User
from rooms.models import Message

CACHE = "fragments"  # settings.CACHES: its own, so it never crowds out rate limits
TEMPLATE = "rooms/_message.html"
REACTIONS = "rooms/_reactions.html"
# Where a message's reactions go; what people type is escaped, so it never holds this.
_REACTIONS_SLOT = "<!--reactions-->"
# Long enough that a room's history stays warm between visits; a key never goes stale,
# so this only bounds the memory a cold message keeps.
TIMEOUT = 24 * 3600
_MINE_FROM = '<article class="message'
_MINE_TO = '<article class="message is-mine'
# The author's fields the partial draws; `last_login` and the like would change the key
# without changing the HTML.
_USER_FIELDS = ("pk", "username", "display_name", "avatar_small", "avatar_large", "is_active")


def _code_digest() -> str:
    """The text of every template, of the code they call (models' properties, template
    tags, file types) and of the translations, so a deploy that changes any never serves
    HTML rendered by the old one."""
    base = Path(settings.BASE_DIR)
    paths = [*(base / "templates").rglob("*.html"), *(base / "locale").rglob("*.mo")]
    for app in ("accounts", "rooms", "assistant"):
        paths += [p for p in (base / app).rglob("*.py") if "migrations" not in p.parts]
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(paths):
        digest.update(path.read_bytes())
    return digest.hexdigest()


_CODE = _code_digest()


def _value(value: object) -> object:
    # As the database has it, so a message just created and the same message read back
    # give the same key: a file by its name, a time in one spelling whatever its tzinfo,
    # a choice by its value.
    if isinstance(value, FieldFile):
        return value.name or ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):  # Message.Kind.TEXT as set, "text" as read back
        return value.value
    return value


def _row(instance: Model | None) -> tuple[object, ...]:
    """The stored fields of a row."""
    if instance is None:
        return ()
    return tuple(_value(getattr(instance, field.attname)) for field in instance._meta.concrete_fields)


def _user(user: User | None) -> tuple[object, ...]:
    if user is None:
        return ()
    return tuple(str(getattr(user, name)) for name in _USER_FIELDS)


def _fingerprint(message: Message) -> str:
    reply_to = message.reply_to if message.reply_to_id else None
    parts = (
        _CODE,
        translation.get_language(),
        timezone.get_current_timezone_name(),
        message.room.kind,
        _row(message),
        _user(message.author),
        _row(reply_to),
        _user(reply_to.author if reply_to is not None else None),
    )
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def _key(message: Message) -> str:
    return f"message-html:{message.pk}:{_fingerprint(message)}"


def _render(message: Message) -> SafeString:
    # The template escapes what people typed; its output is HTML to send as it is.
    # `shared`: a message with reactions gets a slot for them instead (see `_with_reactions`).
    return mark_safe(render_to_string(TEMPLATE, {"message": message, "shared": True}))  # noqa: S308


def _with_reactions(html: str, message: Message, viewer: User | None) -> str:
    """Reaction chips are drawn per viewer (mine marked, people I blocked left out), so a
    message that has any gets them rendered into its slot; the rest of the message, and
    every message never reacted to, is shared."""
    if message.reactions_changed_at is None or message.is_deleted:
        return html
    chips = render_to_string(REACTIONS, {"message": message, "viewer": viewer, "reactions_oob": False})
    return html.replace(_REACTIONS_SLOT, chips, 1)


def message_html(message: Message) -> SafeString:
    """The message's HTML for any viewer, rendered at most once per instance: the live
    event and the poster's response share it, and it goes into the cache for the pages
    that show it next."""
    key = _key(message)
    kept: tuple[str, SafeString] | None = getattr(message, "_shared_html", None)
    if kept is not None and kept[0] == key:
        return kept[1]
    html = _render(message)
    message._shared_html = (key, html)  # type: ignore[attr-defined]
    caches[CACHE].set(key, str(html), TIMEOUT)
    return html


def for_viewer(html: str, message: Message, viewer: User | None) -> SafeString:
    """The shared HTML with what the server draws for this viewer: their own messages
    marked, and the reactions as they see them."""
    if viewer is not None and message.author_id is not None and message.author_id == viewer.pk:
        html = html.replace(_MINE_FROM, _MINE_TO, 1)
    return mark_safe(_with_reactions(html, message, viewer))  # noqa: S308 (our template's output, as rendered above)


def messages_html(messages: Sequence[Message], viewer: User | None = None) -> list[SafeString]:
    """The HTML of each message, in order: read from the cache in one round trip, the
    missing ones rendered and kept."""
    keys = [_key(m) for m in messages]
    found: dict[str, str] = caches[CACHE].get_many(keys)
    missing: dict[str, str] = {}
    out: list[SafeString] = []
    for key, message in zip(keys, messages, strict=True):
        html = found.get(key)
        if html is None:
            html = missing[key] = str(_render(message))
        out.append(for_viewer(html, message, viewer))
    if missing:
        caches[CACHE].set_many(missing, TIMEOUT)
    return out


def pair(messages: Iterable[Message], viewer: User | None = None) -> list[tuple[Message, SafeString]]:
    """(message, its HTML) for a template that loops over both."""
    listed = list(messages)
    return list(zip(listed, messages_html(listed, viewer), strict=True))
