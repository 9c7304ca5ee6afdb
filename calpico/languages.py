"""The language a request or a WebSocket is answered in, outside LocaleMiddleware."""

import re
import time
import unicodedata
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.utils.translation import get_language, get_supported_language_variant
from django.utils.translation.trans_real import parse_accept_lang_header


def socket_language(scope: dict[str, Any]) -> str:
    """A WebSocket's language, as LocaleMiddleware and calpico.middleware.UserLanguageMiddleware
    choose a page's: the signed-in person's choice, else the browser's Accept-Language (sent
    with the handshake), else the default."""
    user = scope.get("user")
    chosen = getattr(user, "language", "") if user is not None and user.is_authenticated else ""
    if chosen and chosen in dict(settings.LANGUAGES):
        return chosen
    headers = dict(scope.get("headers") or [])
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    for code, _quality in parse_accept_lang_header(accept):
        if code == "*":
            break
        try:
            return get_supported_language_variant(code)
        except LookupError:
            continue
    return get_supported_language_variant(settings.LANGUAGE_CODE)


# Which languages someone uses, so live events are rendered only in those (rooms.live.localized):
# a page or a socket in a language other than the default marks it in the cache for a week.
# Each process writes a mark at most once a minute per language.
IN_USE_SECONDS = 7 * 24 * 3600
MARK_EVERY_SECONDS = 60.0
_KEY = "language-in-use:{}"
_marked: dict[str, float] = {}  # when this process last wrote each mark
_seen: dict[str, float] = {}  # when this process last found each mark


def _due(code: str) -> bool:
    if code == settings.LANGUAGE_CODE or code not in dict(settings.LANGUAGES):
        return False
    return time.monotonic() - _marked.get(code, -MARK_EVERY_SECONDS) >= MARK_EVERY_SECONDS


def mark_in_use(code: str) -> None:
    """Note that a page or socket is answered in `code` (a language of settings.LANGUAGES)."""
    if _due(code):
        cache.set(_KEY.format(code), True, IN_USE_SECONDS)
        _marked[code] = time.monotonic()


async def amark_in_use(code: str) -> None:
    """mark_in_use from the event loop: the cache is only asked when a mark is due."""
    if _due(code):
        await sync_to_async(mark_in_use, thread_sensitive=False)(code)


def others_in_use() -> list[str]:
    """The languages other than the default that a page or socket used this week; every one
    of them while the cache cannot tell (Redis unreachable: calpico.cache)."""
    others = [code for code, _name in settings.LANGUAGES if code != settings.LANGUAGE_CODE]
    if not others or getattr(cache, "unreachable", False):
        return others
    now = time.monotonic()
    unknown = [code for code in others if now - _seen.get(code, -MARK_EVERY_SECONDS) >= MARK_EVERY_SECONDS]
    if unknown:
        found = cache.get_many([_KEY.format(code) for code in unknown])
        for code in unknown:
            if _KEY.format(code) in found:
                _seen[code] = now  # marked for a week: no need to ask again for a minute
    return [code for code in others if now - _seen.get(code, -MARK_EVERY_SECONDS) < MARK_EVERY_SECONDS]


def forget_marks() -> None:
    """For tests that empty the cache: this process's marks went with it."""
    _marked.clear()
    _seen.clear()


# French elides "de" before a vowel sound: "Nouveau message d’Alice", "de Bob". A name's
# first letter is read without its accents (É, Ï, Œ...); an h is left as it is (h aspiré
# or not cannot be told from a name), and so is anything that is not a letter.
_DE_BEFORE = re.compile(r"\b([Dd])e %\((\w+)\)s")
_VOWELS = frozenset("aeiouyæœ")


def _starts_with_vowel(name: str) -> bool:
    first = unicodedata.normalize("NFD", name.lstrip()[:1])[:1].lower()
    return first in _VOWELS


def format_names(template: str, **values: str) -> str:
    """`template % values` in the active language, with French "de %(name)s" written
    "d’%(name)s" where the name starts with a vowel: use it for a translated string that puts
    a name after "from" (a message from Alice)."""
    if (get_language() or "").split("-")[0] == "fr":

        def elide(match: re.Match[str]) -> str:
            value = values.get(match.group(2))
            if isinstance(value, str) and _starts_with_vowel(value):
                return f"{match.group(1)}’%({match.group(2)})s"
            return match.group(0)

        template = _DE_BEFORE.sub(elide, template)
    return template % values
