"""`{% id_url %}`: `{% url %}` for the addresses whose arguments are all ids, at a fraction
of its cost.

A message's partial (rooms/_message.html) names a dozen addresses, each `{% url %}` a
resolver walk through every pattern; that was a third of rendering a message, which every
post does (docs/performance.md, "Post cost"). Here each name is reversed once per process
(and URL configuration and script prefix), with stand-in ids, and later ids are put in
their places.
"""

from __future__ import annotations

import functools

from django import template
from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.translation import get_language

from rooms.access import parse_seq

register = template.Library()

# Ids no real row has and no address contains otherwise, one per position.
_STAND_INS = ("918273645501", "918273645502", "918273645503")


@functools.cache
def _pieces(name: str, arity: int, script_prefix: str, urlconf: str, language: str | None) -> tuple[str, ...]:
    """The address of `name` cut at its `arity` ids (in `language`: i18n_patterns and
    translated routes give each language its own address)."""
    address = reverse(name, urlconf=urlconf, args=[int(s) for s in _STAND_INS[:arity]])
    pieces = []
    for stand_in in _STAND_INS[:arity]:
        before, found, address = address.partition(stand_in)
        if not found:
            raise ValueError(f"{name}: the address does not show its ids as they are")
        pieces.append(before)
    pieces.append(address)
    return tuple(pieces)


def id_address(name: str, *ids: int | str) -> str:
    """`reverse(name, args=ids)` for a pattern whose arguments are ids (`<id:...>`).
    ValueError for anything but an id: an int or ASCII digits, as the pattern takes them
    (never "-1", "1.5", True or " 12", which `int()` would turn into another address)."""
    # The URL configuration in force: a request's own (set_urlconf), else ROOT_URLCONF
    # (`get_urlconf()` is None then, also under override_settings(ROOT_URLCONF=...)).
    urlconf = get_urlconf() or settings.ROOT_URLCONF
    pieces = _pieces(name, len(ids), get_script_prefix(), urlconf, get_language())
    parts = [pieces[0]]
    for value, after in zip(ids, pieces[1:], strict=True):
        number = parse_seq(value)
        if number is None:
            raise ValueError(f"{name}: {value!r} is not an id")
        parts.append(str(number))  # an id, never text that could change the address
        parts.append(after)
    return "".join(parts)


@register.simple_tag
def id_url(name: str, *ids: int | str) -> str:
    """`{% id_url 'rooms:edit_message' message.room_id message.pk %}`, as `{% url %}` would
    give (`as variable` too)."""
    return id_address(name, *ids)
