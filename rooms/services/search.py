"""Message search: one API, two backends.

`search_messages(user, text)` finds messages in the rooms `user` may read, newest first, a
page at a time, each with a snippet whose matches are highlighted. `parse_query` reads
what was typed: words (each also matches longer words it starts: "meet" finds
"meeting"), "quoted phrases", and the filters `from:username` (or `from:me`),
`in:room` (a group's name, the other person's username in a direct room, or a room id),
`has:image`, `has:file` (a file that is not a picture), `after:`, `before:` and `on:`
(dates as YYYY-MM-DD, in the current time zone; after and before leave the day itself
out, as in Slack).

Who sees what is the room page's rule (rooms/queries.py `history_page`): a member reads
the room's whole history, including what came before they joined; rooms they left, message
requests they have not accepted, and other people's private assistant rooms are not
searched. Messages from people the searcher blocked are left out (the room page collapses
them), as are system messages and deleted or removed ones.

The backends index the message text (its markdown source):
- SQLite: the FTS5 table `rooms_message_fts` (migration 0007), written by `index_message`
  in the same transaction as the message: on a post, an edit, an assistant's finished
  reply, and emptied on a delete or a removal.
- PostgreSQL: the generated column `rooms_message.search_vector` (to_tsvector('simple',
  body)) and its GIN index; the database keeps it in step with the text, so
  `index_message` has nothing to do there.
Neither scans the text with LIKE.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from django.conf import settings
from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchVectorField
from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import connection
from django.db.models import Func, Q, QuerySet, Value
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from accounts.models import Block, User
from rooms.access import parse_id
from rooms.models import Membership, Message, Room

MAX_QUERY_LENGTH = 200
MAX_WORDS = 12
# Highlight markers, never part of indexed text (`indexed_text`, `_headline_source`):
# a message cannot forge a highlight or carry markup through a snippet.
START, STOP = "\x02", "\x03"
SNIPPET_WORDS = 24

# A filter: `key:value` or `key:"a value with spaces"`.
_FILTER = re.compile(r'(?i)\b(from|in|has|after|before|on):("[^"]*"?|\S*)')
_PHRASE = re.compile(r'"([^"]*)"?')
# Words as FTS5's unicode61 tokenizer cuts them: runs of letters and digits.
_WORD = re.compile(r"[^\W_]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# The days a filter may name: a day from the calendar's ends leaves no room for the day
# before or after it (on:, after:) or for a time zone east or west of UTC.
FIRST_DAY, LAST_DAY = dt.date.min + dt.timedelta(days=1), dt.date.max - dt.timedelta(days=1)
# Control characters (what is left after whitespace becomes single spaces): no one types
# them, PostgreSQL takes no NUL in text, and \x02 \x03 are the highlight markers.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Term:
    """Words that must appear together, in this order; `prefix`: the last one may be the
    start of a longer word."""

    words: tuple[str, ...]
    prefix: bool


@dataclass(frozen=True)
class ParsedQuery:
    """What a search asks for, read from the text typed into the search box."""

    text: str
    terms: tuple[Term, ...] = ()
    from_user: str = ""
    in_room: str = ""
    has_image: bool = False
    has_file: bool = False
    after: dt.date | None = None
    before: dt.date | None = None

    @property
    def is_empty(self) -> bool:
        return not (
            self.terms
            or self.from_user
            or self.in_room
            or self.has_image
            or self.has_file
            or self.after
            or self.before
        )


def _date(key: str, value: str) -> dt.date:
    if _DATE.fullmatch(value):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            pass
        else:
            if not FIRST_DAY <= day <= LAST_DAY:
                raise ValidationError(
                    _("%(key)s: takes a date from %(first)s to %(last)s.")
                    % {"key": key, "first": FIRST_DAY.isoformat(), "last": LAST_DAY.isoformat()},
                    code="date",
                )
            return day
    raise ValidationError(
        _("%(key)s: takes a date written YYYY-MM-DD, like 2026-03-14.") % {"key": key}, code="date"
    )


def parse_query(text: str) -> ParsedQuery:
    """Read a search; ValidationError (with a message for the person) for one that is too
    long, holds control characters, names an unknown `has:` or a date that is not one (or
    one at the very ends of the calendar)."""
    text = " ".join((text or "").split())
    if len(text) > MAX_QUERY_LENGTH:
        raise ValidationError(
            _("Searches are at most %(limit)s characters; this one has %(length)s.")
            % {"limit": MAX_QUERY_LENGTH, "length": len(text)},
            code="too_long",
        )
    if _CONTROL.search(text):
        raise ValidationError(
            _("Searches cannot hold control characters; take them out and search again."), code="control"
        )
    values: dict[str, object] = {}
    after: dt.date | None = None
    before: dt.date | None = None

    def take_filter(match: re.Match[str]) -> str:
        nonlocal after, before
        key, value = match.group(1).lower(), match.group(2).strip('"').strip()
        if not value:
            raise ValidationError(
                _("%(key)s: needs something after the colon, like %(example)s.")
                % {"key": key, "example": f"{key}:{_EXAMPLES[key]}"}
            )
        if key == "from":
            values["from_user"] = value.removeprefix("@")
        elif key == "in":
            values["in_room"] = value.removeprefix("#").removeprefix("@")
        elif key == "has":
            if value.lower() not in ("image", "file"):
                raise ValidationError(_("has: is has:image or has:file."), code="has")
            values[f"has_{value.lower()}"] = True
        elif key == "after":
            after = _date(key, value)
        elif key == "before":
            before = _date(key, value)
        else:  # on: the day itself, from both sides
            day = _date(key, value)
            after, before = day - dt.timedelta(days=1), day + dt.timedelta(days=1)
        return " "

    rest = _FILTER.sub(take_filter, text)
    terms: list[Term] = []
    for phrase, loose in re.findall(r'"([^"]*)"?|(\S+)', rest):
        words = tuple(word.lower() for word in _WORD.findall(phrase or loose))
        if words:
            # A quoted phrase means these words; a loose word also finds longer ones, from
            # two letters on (one letter would match most of the index).
            terms.append(Term(words, prefix=not phrase and len(words[-1]) > 1))
    if sum(len(term.words) for term in terms) > MAX_WORDS:
        raise ValidationError(
            _("Search for at most %(count)s words at a time.") % {"count": MAX_WORDS}, code="too_many_words"
        )
    if after and before and after >= before - dt.timedelta(days=1):
        raise ValidationError(
            _("That date range holds no day: after: must come before before:."), code="range"
        )
    return ParsedQuery(text=text, terms=tuple(terms), after=after, before=before, **values)  # type: ignore[arg-type]


_EXAMPLES = {
    "from": "alice",
    "in": '"Trip planning"',
    "has": "image",
    "after": "2026-03-14",
    "before": "2026-03-14",
    "on": "2026-03-14",
}


# Where a search looks


class SearchableRoom(NamedTuple):
    kind: str
    title: str


def searchable_rooms(user: User) -> dict[int, SearchableRoom]:
    """The rooms whose history `user` reads, by id: accepted memberships of rooms that are
    not archived; a private assistant room only for its owner. One query, and no model
    instances (someone in hundreds of rooms searches as fast as someone in three)."""
    rows = Membership.objects.filter(
        user=user, request=Membership.Request.NONE, room__archived_at__isnull=True
    ).values_list("room_id", "room__kind", "room__title", "room__owner_id")
    return {
        room_id: SearchableRoom(kind, title)
        for room_id, kind, title, owner_id in rows
        if not (kind == Room.Kind.PRIVATE and owner_id != user.pk)
    }


def _rooms_named(rooms: dict[int, SearchableRoom], name: str, user: User) -> list[int]:
    """The rooms `in:name` means: one by id, groups (and the private room) by name (the
    whole name, else the start of a word in it), direct rooms by the other person's
    username or display name."""
    room_id = parse_id(name)
    if room_id is not None and room_id in rooms:
        return [room_id]
    wanted = name.casefold()
    titled = {pk: room.title.casefold() for pk, room in rooms.items() if room.kind != Room.Kind.DIRECT}
    exact = [pk for pk, title in titled.items() if title == wanted]
    if exact:
        return exact
    direct_ids = [pk for pk, room in rooms.items() if room.kind == Room.Kind.DIRECT]
    people = (
        Membership.objects.filter(room_id__in=direct_ids)
        .exclude(user=user)
        .values_list("room_id", "user__username", "user__display_name")
        if direct_ids
        else []
    )
    direct = [pk for pk, username, display in people if wanted in (username.casefold(), display.casefold())]
    if direct:
        return direct
    return [pk for pk, title in titled.items() if any(w.startswith(wanted) for w in _word_starts(title))]


def _word_starts(title: str) -> list[str]:
    """`title` from each word on: "trip planning" and "planning" for "Trip planning"."""
    words = title.split()
    return [" ".join(words[i:]) for i in range(len(words))]


def _bounds(parsed: ParsedQuery) -> Q:
    """after: and before: as times in the current time zone."""
    zone = timezone.get_current_timezone()
    condition = Q()
    if parsed.after:
        start = dt.datetime.combine(parsed.after + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
        condition &= Q(created_at__gte=start)
    if parsed.before:
        end = dt.datetime.combine(parsed.before, dt.time.min, tzinfo=zone)
        condition &= Q(created_at__lt=end)
    return condition


@dataclass(frozen=True)
class Scope:
    """What a search may find, before any text is matched: the messages (a queryset with
    every rule and filter), the rooms and the author they come from (for backends that
    can narrow the text match by them), and notes for the person about filters that
    matched nothing."""

    messages: QuerySet[Message]
    room_ids: list[int]
    author_id: int | None = None
    notes: tuple[str, ...] = ()


def _scoped(user: User, parsed: ParsedQuery) -> Scope:
    rooms = searchable_rooms(user)
    notes: list[str] = []
    room_ids = list(rooms)
    if parsed.in_room:
        room_ids = _rooms_named(rooms, parsed.in_room, user)
        if not room_ids:
            notes.append(_("You are in no conversation called “%(room)s”.") % {"room": parsed.in_room})
    # Encrypted messages are ciphertext to the server: never searched (docs/e2ee.md).
    query = Message.objects.filter(room_id__in=room_ids, deleted_at__isnull=True).exclude(
        kind__in=[Message.Kind.SYSTEM, Message.Kind.ENCRYPTED]
    )
    # Blocked authors, as a subquery: a blocker's list can be long, and it is one query less.
    query = query.exclude(author_id__in=Block.objects.filter(blocker=user).values("blocked_id"))
    author_id = None
    if parsed.from_user:
        if parsed.from_user.lower() == "me":
            author_id = user.pk
        else:
            author_id = (
                User.objects.filter(username__iexact=parsed.from_user).values_list("pk", flat=True).first()
            )
            if author_id is None:
                notes.append(_("Nobody is called “%(name)s”.") % {"name": parsed.from_user})
                room_ids = []
                query = query.none()
        query = query.filter(author_id=author_id)
    if parsed.has_image:
        query = query.exclude(image="")
    if parsed.has_file:
        query = query.with_file()
    return Scope(query.filter(_bounds(parsed)), room_ids, author_id, tuple(notes))


# Results


@dataclass(frozen=True)
class SearchHit:
    message: Message
    snippet: SafeString


@dataclass(frozen=True)
class SearchResults:
    query: ParsedQuery
    hits: list[SearchHit] = field(default_factory=list)
    # The id to pass as `before` for the next page, or None when this is the last one.
    next_before: int | None = None
    notes: tuple[str, ...] = ()


def search_messages(
    user: User, query: str | ParsedQuery, *, before: int | None = None, size: int | None = None
) -> SearchResults:
    """Messages matching `query` (text or `parse_query`'s result) that `user` may read,
    newest first: `size` of them (settings.SEARCH_RESULTS_PER_PAGE), older than the message
    id `before` when given. ValidationError for a query `parse_query` refuses.

    A fixed number of queries: the rooms, the matching ids with their snippets, the
    messages (and one more for `in:` naming a direct room's person)."""
    parsed = query if isinstance(query, ParsedQuery) else parse_query(query)
    size = size or settings.SEARCH_RESULTS_PER_PAGE
    if parsed.is_empty:
        return SearchResults(parsed)
    scope = _scoped(user, parsed)
    if before is not None:
        scope = replace(scope, messages=scope.messages.filter(pk__lt=before))
    # (message id, its snippet marked by the backend, or None: no text was matched)
    rows: list[tuple[int, str | None]] = []
    if not scope.room_ids:
        pass
    elif not parsed.terms:
        # Filters alone (from:bob, has:image): the newest of what they leave, no text to match.
        newest = scope.messages.order_by("-pk").values_list("pk", flat=True)
        rows = [(pk, None) for pk in newest[: size + 1]]
    elif connection.vendor == "postgresql":
        rows = list(_postgres_matches(scope.messages, parsed, size + 1))
    else:
        rows = list(_sqlite_matches(scope, parsed, size + 1))
    more = len(rows) > size
    rows = rows[:size]
    messages = Message.objects.select_related("room", "author").in_bulk([pk for pk, _ in rows])
    hits = []
    for pk, marked in rows:
        message = messages.get(pk)
        if message is None:  # deleted in between
            continue
        # Filters alone matched no text: the message's one-line preview stands in.
        snippet = SafeString(html.escape(message.preview)) if marked is None else render_snippet(marked)
        hits.append(SearchHit(message, snippet))
    next_before = rows[-1][0] if more and rows else None
    return SearchResults(parsed, hits, next_before, scope.notes)


def render_snippet(marked: str) -> SafeString:
    """HTML for a snippet whose matches the backend wrapped in START and STOP: the text
    escaped, each match in <mark>. Markers never come from the text (`indexed_text`)."""
    parts = []
    inside = False
    for piece in re.split(f"([{START}{STOP}])", " ".join(marked.split())):
        if piece == START:
            inside = True
        elif piece == STOP:
            inside = False
        elif piece:
            escaped = html.escape(piece)
            parts.append(f"<mark>{escaped}</mark>" if inside else escaped)
    return mark_safe("".join(parts))  # noqa: S308 - every piece of text is escaped above


# SQLite: FTS5


def indexed_text(body: str) -> str:
    """The text as the index holds it: without the highlight markers."""
    return body.replace(START, " ").replace(STOP, " ")


def index_message(message: Message, *, new: bool = False) -> None:
    """Bring the search index up to date with `message`, in the caller's transaction: its
    text if it is searchable, nothing for a system message or a deleted or emptied one.
    `new`: just stored, so there is no entry to remove. PostgreSQL's generated column
    follows the text by itself."""
    if connection.vendor != "sqlite":
        return
    searchable = not (message.is_system or message.is_encrypted or message.is_deleted or not message.body)
    if new and not searchable:
        return
    with connection.cursor() as cursor:
        if not searchable:
            cursor.execute("DELETE FROM rooms_message_fts WHERE rowid = %s", [message.pk])
        else:
            cursor.execute(
                "INSERT OR REPLACE INTO rooms_message_fts (rowid, body, room, author)"
                " VALUES (%s, %s, %s, %s)",
                [message.pk, indexed_text(message.body), *index_tokens(message.room_id, message.author_id)],
            )


# Up to this many rooms, the FTS5 query itself says which rooms (`room : (r1 OR r2 ...)`)
# and FTS5 intersects the lists in its index; beyond it, the join to rooms_message filters
# the rooms, row by row (bench/search.py: in:, from:).
FTS_ROOMS_IN_MATCH = 100


def index_tokens(room_id: int, author_id: int | None) -> tuple[str, str]:
    """The FTS table's room and author columns: one token each ("r12", "a7")."""
    return f"r{room_id}", f"a{author_id}" if author_id else ""


def unindex_messages(messages: QuerySet[Message]) -> None:
    """Take `messages` out of the search index, in the caller's transaction, before a bulk
    change the services do not make message by message empties or deletes them (deleting
    an account: its messages, its private room). On PostgreSQL the text itself is the
    index, so there is nothing to do."""
    if connection.vendor != "sqlite":
        return
    try:
        ids_sql, params = messages.values_list("pk").query.sql_with_params()
    except EmptyResultSet:  # e.g. the messages of no rooms
        return
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM rooms_message_fts WHERE rowid IN ({ids_sql})", params)  # noqa: S608


def fts5_query(
    terms: tuple[Term, ...], room_ids: list[int] | None = None, author_id: int | None = None
) -> str:
    """An FTS5 MATCH expression: each term a quoted phrase in the body column (words are
    letters and digits only, so nothing in them is FTS5 syntax), all of them required;
    with `room_ids` in one of these rooms, with `author_id` by this author."""
    text = " ".join('"' + " ".join(t.words) + '"' + ("*" if t.prefix else "") for t in terms)
    expression = f"body : ({text})"
    if room_ids is not None:
        expression += " AND room : (" + " OR ".join(f"r{int(pk)}" for pk in room_ids) + ")"
    if author_id is not None:
        expression += f" AND author : a{int(author_id)}"
    return expression


def sqlite_matching(scope: Scope, terms: tuple[Term, ...]) -> QuerySet[Message]:
    """The scope's messages joined to the FTS5 table, matching `terms`, newest first, with
    `snippet`.

    Ordered by the FTS table's rowid (the message id): FTS5 walks its index in that order,
    so the first rows that pass the filters end the query, and snippets are made for those
    rows only. The SQL holds no outside text; the match expression is a parameter."""
    rooms = scope.room_ids if len(scope.room_ids) <= FTS_ROOMS_IN_MATCH else None
    rowid = RawSQL("rooms_message_fts.rowid", [])
    return scope.messages.extra(  # noqa: S610
        tables=["rooms_message_fts"],
        where=["rooms_message_fts.rowid = rooms_message.id", "rooms_message_fts MATCH %s"],
        params=[fts5_query(terms, rooms, scope.author_id)],
        select={"snippet": f"snippet(rooms_message_fts, 0, char(2), char(3), '…', {SNIPPET_WORDS:d})"},
    ).order_by(rowid.desc())


def _sqlite_matches(scope: Scope, parsed: ParsedQuery, limit: int) -> list[tuple[int, str]]:
    rows = sqlite_matching(scope, parsed.terms).values_list("pk", "snippet")  # type: ignore[misc]  # an extra() column
    return list(rows[:limit])


# PostgreSQL: the generated tsvector column


def tsquery(terms: tuple[Term, ...]) -> str:
    """A to_tsquery expression: each term's words in order (<->), `:*` for a prefix, all
    of them required. Words are letters and digits only, quoted as lexemes."""
    parts = []
    for term in terms:
        lexemes = [f"'{word}'" for word in term.words]
        if term.prefix:
            lexemes[-1] += ":*"
        parts.append(" <-> ".join(lexemes))
    return " & ".join(parts)


# ts_headline drops what its parser takes for HTML tags ("<b>"): the text goes in with its
# angle brackets swapped for characters that make no tag (private use ones; one typed in a
# message shows as a bracket in its snippet, nothing worse), swapped back in the snippet.
# The highlight markers are taken out of it as well.
_ANGLES_IN, _ANGLES_OUT = "<>" + START + STOP, "\ue000\ue001  "
_ANGLES_BACK = str.maketrans("\ue000\ue001", "<>")


def postgres_query(terms: tuple[Term, ...]) -> SearchQuery:
    return SearchQuery(tsquery(terms), config="simple", search_type="raw")


def postgres_matching(scoped: QuerySet[Message], search: SearchQuery) -> QuerySet[Message]:
    """`scoped` narrowed to the messages whose search_vector matches, newest first."""
    vector = RawSQL("rooms_message.search_vector", [], output_field=SearchVectorField())
    return scoped.annotate(vector=vector).filter(vector=search).order_by("-pk")


def _postgres_matches(scoped: QuerySet[Message], parsed: ParsedQuery, limit: int) -> list[tuple[int, str]]:
    search = postgres_query(parsed.terms)
    ids = list(postgres_matching(scoped, search).values_list("pk", flat=True)[:limit])
    if not ids:
        return []
    # Headlines for this page only, in a second query: ts_headline reads the whole text.
    source = Func("body", Value(_ANGLES_IN), Value(_ANGLES_OUT), function="translate")
    headline = SearchHeadline(
        source,
        search,
        config="simple",
        start_sel=START,
        stop_sel=STOP,
        max_words=SNIPPET_WORDS,
        min_words=SNIPPET_WORDS // 2,
    )
    rows = Message.objects.filter(pk__in=ids).annotate(snippet=headline).values_list("pk", "body", "snippet")
    snippets = {pk: _with_ellipses(body, snippet.translate(_ANGLES_BACK)) for pk, body, snippet in rows}
    return [(pk, snippets.get(pk, "")) for pk in ids]


def _with_ellipses(body: str, snippet: str) -> str:
    """ "…" where the snippet leaves out the start or the end of the text, as FTS5's do."""
    shown = " ".join(snippet.replace(START, "").replace(STOP, "").split())
    text = " ".join(indexed_text(body).split())
    if shown and not text.startswith(shown):
        snippet = "…" + snippet
    if shown and not text.endswith(shown):
        snippet += "…"
    return snippet
