"""The language a request or a WebSocket is answered in, outside LocaleMiddleware."""

from typing import Any

from django.conf import settings
from django.utils.translation import get_supported_language_variant
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
