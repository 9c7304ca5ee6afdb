"""What a socket reads when it opens, in one call on the sockets' database thread
(rooms/socket_db.py): who it is, from the session cookie; the rooms it listens to; whom
the person blocked and who blocked them; notices not shown yet; and their presence key.

This used to be four calls (Channels' AuthMiddleware, then the consumer's), each crossing
to the thread and back and opening a new database connection, and six ORM queries. The
queries here are plain SQL, made once from the models' tables and columns: building an
ORM query cost 0.2–0.5 ms each, twenty to forty times running it, and every page that
opens pays it, all at once after a deploy. So each query is built by the ORM once and its
SQL run again with the next user's id (`_Compiled`).
"""

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.contrib.auth.backends import ModelBackend
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.db.models import Max, Q, QuerySet
from django.http import parse_cookie
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.dateparse import parse_datetime

from accounts.models import Block, User
from rooms import presence
from rooms.models import Membership, Message, Notice
from rooms.queries import ASSISTANT_REPLY_WINDOW

# The notices a socket shows when it opens, oldest first.
NOTICES_AT_ONCE = 10
# What a socket keeps of its user; the rest of the row is never read there.
USER_FIELDS = ("id", "password", "is_active", "username", "display_name", "read_receipts", "language")


@dataclass(slots=True)
class RoomState:
    last_read_seq: int
    muted: bool


@dataclass(slots=True)
class Opening:
    """`user` None: not signed in (or no longer active). `allowed` False: the room the page
    shows is not one the user is in (nothing else was read)."""

    user: User | None
    allowed: bool = True
    rooms: dict[int, RoomState] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    blocked_by: set[int] = field(default_factory=set)
    notices: list[str] = field(default_factory=list)
    notice_ids: list[int] = field(default_factory=list)


def session_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The session cookie of a WebSocket handshake's headers."""
    for name, value in headers:
        if name == b"cookie":
            key = parse_cookie(value.decode("latin1")).get(settings.SESSION_COOKIE_NAME)
            if key:
                return key
    return None


def session_user(key: str | None) -> User | None:
    """The signed-in user of the session `key`, as Channels' AuthMiddleware finds them
    (channels.auth.get_user): a backend named in AUTHENTICATION_BACKENDS that still has
    the user, and the session's hash of the password still matching, or the session is
    flushed. The user holds USER_FIELDS only."""
    if not key:
        return None
    session = _session_store()(key)
    try:
        user_id = User._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    backend = load_backend(backend_path)
    if type(backend).get_user is ModelBackend.get_user and isinstance(user_id, int):
        # What ModelBackend.get_user does, with the columns the socket needs.
        user = _user(user_id)
        if user is not None and not backend.user_can_authenticate(user):  # type: ignore[attr-defined]
            user = None
    else:
        user = backend.get_user(user_id)
    if user is None:
        return None
    session_hash = session.get(HASH_SESSION_KEY)
    if not (session_hash and constant_time_compare(session_hash, user.get_session_auth_hash())):
        session.flush()
        return None
    return user


def read_opening(key: str | None, requested_room: int | None) -> Opening:
    """Everything a socket needs before it says hello. Message requests (pending or
    declined) are not listened to: they notify nothing. A pending request's page may
    connect (for presence) but hears nothing from that room."""
    user = session_user(key)
    if user is None or not user.is_active:
        return Opening(None)
    queries = _queries()
    with connection.cursor() as cursor:
        rows = queries.rooms.run(cursor, user=user.pk)
        rooms = {room_id: RoomState(last_read, bool(muted)) for room_id, last_read, muted in rows}
        if (
            requested_room is not None
            and requested_room not in rooms
            and not queries.request.run(cursor, user=user.pk, room=requested_room)
        ):
            return Opening(user, allowed=False)
        blocked, blocked_by = set(), set()  # as accounts.services.block_relations reads them
        for blocker_id, blocked_id in queries.blocks.run(cursor, user=user.pk):
            if blocker_id == user.pk:
                blocked.add(blocked_id)
            else:
                blocked_by.add(blocker_id)
        notices = queries.notices.run(cursor, user=user.pk)
    presence.refresh(user.pk)
    # Taken by the socket as it sends them (rooms.services.moderation.take_notices): a
    # socket that fails first leaves them for the next page, and of two opening at once
    # only one shows them.
    return Opening(
        user,
        rooms=rooms,
        blocked=blocked,
        blocked_by=blocked_by,
        notices=[t for _, t in notices],
        notice_ids=[pk for pk, _ in notices],
    )


@dataclass(slots=True)
class QuickResume:
    """`nothing`: the resume has nothing to catch up; then `positions`, the room's read
    positions this reader may see, when asked for (None: not asked)."""

    nothing: bool
    positions: dict[int, int] | None = None


def quick_resume(
    room_id: int,
    last_seq: int,
    oldest: int,
    since: dt.datetime | None,
    detached: bool,
    reader_id: int | None,
    hidden: Collection[int],
) -> QuickResume:
    """A page's resume, when it has nothing to catch up (almost always): whether that is
    so and, for a reader with read receipts, the read positions it may see (what
    rooms.queries.room_read_positions reads) in the same trip."""
    if not nothing_to_catch_up(room_id, last_seq, oldest, since, detached=detached):
        return QuickResume(False)
    if reader_id is None:
        return QuickResume(True)
    with connection.cursor() as cursor:
        rows = _queries().read_positions.run(cursor, room=room_id, user=reader_id)
    return QuickResume(True, {user_id: seq for user_id, seq in rows if user_id not in hidden})


def nothing_to_catch_up(
    room_id: int, last_seq: int, oldest: int, since: dt.datetime | None, *, detached: bool = False
) -> bool:
    """True when a page's resume has nothing to send: no message after `last_seq` (unless
    `detached`: the page shows an older window), and none from `oldest` to `last_seq`
    edited, deleted, reacted to, or by the assistant, since `since` (what
    rooms.queries.catch_up would read). One compiled query: every room page resumes when
    its socket opens, and is almost always up to date, while catch_up's two ORM queries
    cost more than opening the socket itself. Otherwise catch_up reads them."""
    if oldest > last_seq:
        return False  # a page's odd range: catch_up makes sense of it
    with connection.cursor() as cursor:
        rows = _queries().changes.run(cursor, room=room_id, oldest=oldest, last=last_seq)
    if not rows:
        return True
    newest, edited, deleted, reacted, assistant = rows[0]
    if newest > last_seq and not detached:
        return False
    if since is None:
        return True
    replies_since = since - ASSISTANT_REPLY_WINDOW
    return not (
        _at_or_after(edited, since)
        or _at_or_after(deleted, since)
        or _at_or_after(reacted, since)
        or _at_or_after(assistant, replies_since)
    )


def _at_or_after(value: dt.datetime | str | None, moment: dt.datetime) -> bool:
    """A column's greatest time, as the database gave it (SQLite: text in UTC), against
    an aware `moment`."""
    if value is None:
        return False
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            return True  # unreadable: let catch_up look
        value = parsed
    if timezone.is_naive(value):
        value = value.replace(tzinfo=dt.UTC)
    return value >= moment


def _user(user_id: int) -> User | None:
    with connection.cursor() as cursor:
        rows = _queries().user.run(cursor, user=user_id)
    if not rows:
        return None
    row = rows[0]
    # SQLite may give booleans as numbers.
    values = [bool(v) if name in _BOOLEAN_FIELDS else v for name, v in zip(USER_FIELDS, row, strict=True)]
    return User.from_db(connection.alias, list(USER_FIELDS), values)


_BOOLEAN_FIELDS = {"is_active", "read_receipts"}


@cache
def _session_store() -> type[SessionBase]:
    """The configured session engine's store; when it keeps sessions in Django's Session
    table (db, cached_db), reading a session the cache does not have (every one, after a
    restart without Redis) with a compiled query."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if not (issubclass(store, DBStore) and store.get_model_class() is Session):
        return store

    class CompiledReadStore(store):  # type: ignore[valid-type,misc]
        @property
        def key_salt(self) -> str:
            return "django.contrib.sessions." + store.__qualname__  # the engine's own, to decode

        def _get_session_from_db(self) -> Session | None:
            with connection.cursor() as cursor:
                rows = _queries().session.run(cursor, key=self.session_key)
            if rows:
                data, expires = rows[0]
                if timezone.is_naive(expires):  # SQLite's column, in UTC
                    expires = expires.replace(tzinfo=dt.UTC)
                if expires > timezone.now():
                    return Session(session_key=self.session_key, session_data=data, expire_date=expires)
            self._session_key = None
            return None

    return CompiledReadStore


class _Compiled:
    """An ORM query compiled once and run again with other values, for plain rows.

    `slots` names the values that change from one run to the next, each given in the
    query as an unlikely sentinel; every other parameter stays as compiled.
    """

    def __init__(self, queryset: QuerySet, **slots: int | str) -> None:
        self.sql, params = queryset.query.sql_with_params()
        names = {sentinel: name for name, sentinel in slots.items()}
        self.params = [(names.get(p) if isinstance(p, int | str) else None, p) for p in params]
        missing = set(slots) - {name for name, _ in self.params}
        assert not missing, f"sentinels not found in the compiled query: {missing}"

    def run(self, cursor, **values: int | str) -> list[tuple]:
        cursor.execute(self.sql, [values[name] if name else p for name, p in self.params])
        return cursor.fetchall()


@dataclass(frozen=True, slots=True)
class _Queries:
    changes: _Compiled
    read_positions: _Compiled
    session: _Compiled
    user: _Compiled
    rooms: _Compiled
    request: _Compiled
    blocks: _Compiled
    notices: _Compiled


# Sentinels for the values a query is compiled with: never an id (ids are positive) or a
# session key (letters and digits); seqs must be positive (a lookup below a field's range is
# left out of the SQL), so theirs are far beyond any room's.
_USER, _ROOM, _KEY = -7_000_001, -7_000_002, "<session key>"
_OLDEST, _LAST = 9_000_000_000_000_000_003, 9_000_000_000_000_000_004


@cache
def _queries() -> _Queries:
    memberships = Membership.objects.filter(user_id=_USER)
    in_page = Q(seq__lte=_LAST)
    return _Queries(
        changes=_Compiled(
            Message.objects.filter(room_id=_ROOM, seq__gte=_OLDEST)
            .values("room_id")
            .annotate(
                newest=Max("seq"),
                edited=Max("edited_at", filter=in_page),
                deleted=Max("deleted_at", filter=in_page),
                reacted=Max("reactions_changed_at", filter=in_page),
                assistant=Max("created_at", filter=in_page & Q(kind=Message.Kind.ASSISTANT)),
            )
            .values_list("newest", "edited", "deleted", "reacted", "assistant"),
            room=_ROOM,
            oldest=_OLDEST,
            last=_LAST,
        ),
        read_positions=_Compiled(
            Membership.objects.filter(room_id=_ROOM, request=Membership.Request.NONE)
            .filter(user__read_receipts=True)
            .exclude(user_id=_USER)
            .values_list("user_id", "last_read_seq"),
            room=_ROOM,
            user=_USER,
        ),
        session=_Compiled(
            Session.objects.filter(session_key=_KEY).values_list("session_data", "expire_date"), key=_KEY
        ),
        user=_Compiled(User.objects.filter(pk=_USER).values_list(*USER_FIELDS), user=_USER),
        rooms=_Compiled(
            memberships.filter(room__archived_at__isnull=True, request=Membership.Request.NONE).values_list(
                "room_id", "last_read_seq", "muted"
            ),
            user=_USER,
        ),
        request=_Compiled(
            memberships.filter(room_id=_ROOM, request=Membership.Request.PENDING).values_list("pk")[:1],
            user=_USER,
            room=_ROOM,
        ),
        blocks=_Compiled(
            Block.objects.filter(Q(blocker_id=_USER) | Q(blocked_id=_USER)).values_list(
                "blocker_id", "blocked_id"
            ),
            user=_USER,
        ),
        notices=_Compiled(
            Notice.objects.filter(user_id=_USER, seen_at__isnull=True)
            .order_by("created_at")
            .values_list("id", "text")[:NOTICES_AT_ONCE],
            user=_USER,
        ),
    )
