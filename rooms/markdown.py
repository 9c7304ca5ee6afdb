"""Message text to safe HTML: a markdown subset, @mentions, then a sanitizer.

markdown-it-py parses with raw HTML disabled; only bold, italic, inline code, code
blocks, lists, links, quotes and line breaks are switched on. Mentions of room members become
spans in text tokens (never inside code). nh3 then keeps only the tags and attributes we
emit, so even a parser bug cannot let markup through.
"""

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

MENTION_RE = re.compile(r"(?<![\w.@])@([A-Za-z0-9_.]{3,30})")

_OPTIONS = {"html": False, "linkify": True, "breaks": True, "typographer": False}
_RULES = [
    "emphasis",
    "backticks",
    "code",
    "fence",
    "list",
    "link",
    "linkify",
    "newline",
    "escape",
    "blockquote",
]
_md = MarkdownIt("zero", _OPTIONS).enable(_RULES)
# The assistant writes longer answers: headings, tables, rules and strikethrough too.
_md_rich = MarkdownIt("zero", _OPTIONS).enable([*_RULES, "heading", "table", "hr", "strikethrough"])

ALLOWED_TAGS = {"p", "br", "strong", "em", "code", "pre", "ul", "ol", "li", "a", "span", "blockquote"}
RICH_TAGS = ALLOWED_TAGS | {
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "hr",
    "s",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href"},
    "ol": {"start"},
    "span": {"class", "data-user-id"},
}


@dataclass(frozen=True)
class RenderedText:
    html: str
    mentioned_user_ids: list[int]


def _mention_tokens(text: str, members: Mapping[str, int], found: list[int]) -> list[Token] | None:
    pieces: list[Token] = []
    position = 0
    for match in MENTION_RE.finditer(text):
        name = match.group(1).rstrip(".")
        user_id = members.get(name.lower())
        if user_id is None:
            continue
        start, end = match.start(), match.start() + 1 + len(name)
        if start > position:
            pieces.append(Token("text", "", 0, content=text[position:start]))
        span = Token("html_inline", "", 0)
        # Usernames are [A-Za-z0-9_.] only, so they need no escaping inside the markup.
        span.content = f'<span class="mention" data-user-id="{user_id}">@{name}</span>'
        pieces.append(span)
        position = end
        if user_id not in found:
            found.append(user_id)
    if not pieces:
        return None
    if position < len(text):
        pieces.append(Token("text", "", 0, content=text[position:]))
    return pieces


def _mark_mentions(tokens: list[Token], members: Mapping[str, int]) -> list[int]:
    found: list[int] = []
    for token in tokens:
        if token.type != "inline" or not token.children:
            continue
        children: list[Token] = []
        inside_link = 0
        for child in token.children:
            if child.type == "link_open":
                inside_link += 1
            elif child.type == "link_close":
                inside_link -= 1
            replaced = None
            if child.type == "text" and not inside_link and "@" in child.content:
                replaced = _mention_tokens(child.content, members, found)
            children.extend(replaced or [child])
        token.children = children
    return found


def render_message(body: str, members: Mapping[str, int], *, rich: bool = False) -> RenderedText:
    """Render `body` to sanitized HTML; `members` maps lower-case usernames to user ids.

    `rich` (the assistant's messages) adds headings, tables, rules and strikethrough.
    """
    md = _md_rich if rich else _md
    tokens = md.parse(body)
    mentioned = _mark_mentions(tokens, members)
    html = md.renderer.render(tokens, md.options, {})
    clean = nh3.clean(
        html,
        tags=RICH_TAGS if rich else ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener nofollow ugc",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )
    return RenderedText(html=clean.strip(), mentioned_user_ids=mentioned)


def rendered_text(rendered_html: str) -> str:
    """The text a reader sees in `rendered_html`: the markup gone, entities read."""
    return html.unescape(nh3.clean(rendered_html, tags=set()))
