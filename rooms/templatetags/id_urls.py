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
from django.urls import get_script_prefix, get_urlconf, reverse

register = template.Library()

# Ids no real row has and no address contains otherwise, one per position.
_STAND_INS = ("918273645501", "918273645502", "918273645503")


@functools.cache
def _pieces(name: str, arity: int, script_prefix: str, urlconf: str | None) -> tuple[str, ...]:
    """The address of `name` cut at its `arity` ids."""
    address = reverse(name, urlconf=urlconf, args=[int(s) for s in _STAND_INS[:arity]])
    pieces = []
    for stand_in in _STAND_INS[:arity]:
        before, found, address = address.partition(stand_in)
        if not found:
            raise ValueError(f"{name}: the address does not show its ids as they are")
        pieces.append(before)
    pieces.append(address)
    return tuple(pieces)


def id_address(name: str, *ids: int) -> str:
    """`reverse(name, args=ids)` for a pattern whose arguments are ids (`<id:...>`)."""
    pieces = _pieces(name, len(ids), get_script_prefix(), get_urlconf())
    parts = [pieces[0]]
    for value, after in zip(ids, pieces[1:], strict=True):
        parts.append(str(int(value)))  # an id, never text that could change the address
        parts.append(after)
    return "".join(parts)


@register.simple_tag
def id_url(name: str, *ids: int) -> str:
    """`{% id_url 'rooms:edit_message' message.room_id message.pk %}`, as `{% url %}` would
    give (`as variable` too)."""
    return id_address(name, *ids)
