"""The emoji people (and the assistant) react with: the vendored, pinned emojibase data set.

`static/vendor/emojibase-data-17.0.0/` holds the package's English `compact.json` and its
`versions/emoji.json` as published (MIT, see the LICENSE beside them). The picker in the page
(static/js/reactions.js) reads the same two files, so what it offers and what the server
accepts come from one source. A reaction is stored as the data set spells the emoji (fully
qualified, with its variation selector), so "❤" and "❤️" are one reaction.
"""

import functools
import json
from dataclasses import dataclass

from django.conf import settings

DATA_DIR = settings.BASE_DIR / "static" / "vendor" / "emojibase-data-17.0.0"

# The row a hovered message shows, WhatsApp's six, spelled as the data set spells them
# (thumbs up and the heart with U+FE0F); static/js/reactions.js lists the same.
QUICK_REACTIONS = ("\U0001f44d\ufe0f", "\u2764\ufe0f", "😂", "😮", "😢", "🙏")

# Pickers offer emoji up to this Emoji version: newer ones show as empty boxes on most
# devices for a year or two (Debian 12's Noto Color Emoji stops at 15.0). The server still
# accepts every emoji of the data set.
PICKER_MAX_VERSION = 15.0

# emojibase's group numbers; 2 ("component": skin tones, hair styles) is no emoji of its own.
GROUPS = {
    0: "Smileys & emotion",
    1: "People & body",
    3: "Animals & nature",
    4: "Food & drink",
    5: "Travel & places",
    6: "Activities",
    7: "Objects",
    8: "Symbols",
    9: "Flags",
}

# The longest emoji of the data set is 10 code points (a kiss with two skin tones).
MAX_LENGTH = 16
VARIATION_SELECTOR = "\ufe0f"


@dataclass(frozen=True)
class Emoji:
    unicode: str
    label: str
    group: int
    order: int
    tags: tuple[str, ...]
    offered: bool  # shown in pickers (base emoji, not too new); skin tones are accepted too


@dataclass(frozen=True)
class _DataSet:
    by_unicode: dict[str, Emoji]
    # Spelled without variation selectors, for what a keyboard may send ("❤" for "❤️").
    loose: dict[str, str]
    offered: tuple[Emoji, ...]


@functools.cache
def _data_set() -> _DataSet:
    entries = json.loads((DATA_DIR / "en" / "compact.json").read_text(encoding="utf-8"))
    versions = json.loads((DATA_DIR / "versions" / "emoji.json").read_text(encoding="utf-8"))
    too_new = {
        code for version, codes in versions.items() if float(version) > PICKER_MAX_VERSION for code in codes
    }
    by_unicode: dict[str, Emoji] = {}
    for entry in entries:
        group = entry.get("group")
        if group not in GROUPS:
            continue  # regional indicator letters, skin tone and hair components
        tags = tuple(entry.get("tags", ()))
        by_unicode[entry["unicode"]] = Emoji(
            entry["unicode"], entry["label"], group, entry["order"], tags, entry["hexcode"] not in too_new
        )
        for skin in entry.get("skins", ()):
            skin_emoji = Emoji(skin["unicode"], skin["label"], group, skin["order"], tags, False)
            by_unicode[skin["unicode"]] = skin_emoji
    loose = {spelling.replace(VARIATION_SELECTOR, ""): spelling for spelling in by_unicode}
    offered = tuple(sorted((e for e in by_unicode.values() if e.offered), key=lambda e: e.order))
    return _DataSet(by_unicode, loose, offered)


def canonical(value: object) -> str | None:
    """The emoji as stored, for an emoji of the data set however it is spelled; else None."""
    if not isinstance(value, str) or not value or len(value) > MAX_LENGTH:
        return None
    data = _data_set()
    if value in data.by_unicode:
        return value
    return data.loose.get(value.replace(VARIATION_SELECTOR, ""))


def find(emoji: str) -> Emoji:
    """An emoji of the data set, spelled as `canonical` returns it; KeyError for any other."""
    return _data_set().by_unicode[emoji]


def label(emoji: str) -> str:
    """Its name in words ("thumbs up"), for people who cannot see it."""
    found = _data_set().by_unicode.get(emoji)
    return found.label if found else emoji


def offered() -> tuple[Emoji, ...]:
    """What a picker shows, in the data set's order."""
    return _data_set().offered


def search(query: str) -> list[Emoji]:
    """The offered emoji whose name or keywords start with every word of the query (as the
    page's picker searches)."""
    words = query.lower().split()
    if not words:
        return list(offered())

    def matches(emoji: Emoji) -> bool:
        names = [*emoji.label.lower().replace(":", " ").split(), *emoji.tags]
        return all(any(name.startswith(word) for name in names) for word in words)

    return [emoji for emoji in offered() if matches(emoji)]


def by_group(emoji_list: list[Emoji] | tuple[Emoji, ...]) -> list[tuple[str, list[Emoji]]]:
    """The emoji under their group's name, groups in the data set's order."""
    groups: dict[int, list[Emoji]] = {}
    for emoji in emoji_list:
        groups.setdefault(emoji.group, []).append(emoji)
    return [(GROUPS[group], groups[group]) for group in sorted(groups)]
