"""One WebSocket per open page: live messages, sidebar, notifications, typing, presence.

The socket joins the group of every room the user is in (for the sidebar and
notifications) and the user's own group (membership changes, logout). What a viewer
receives is decided here from memory: membership, read positions and mutes are loaded on
connect and kept current by events, so delivering a message costs no database query per
recipient. The wire protocol is described in docs/protocol.md.

One class, the socket's protocol, kept whole (over 400 lines): its reads are in
rooms.queries and its writes in rooms.services.
"""

import asyncio
import json
import logging
import time
from datetime import datetime

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone, translation

from accounts.models import User
from accounts.services import block_relations
from calpico import languages, metrics
from calpico.languages import socket_language
from rooms import presence
from rooms.access import parse_id, parse_seq
from rooms.live_groups import room_group, user_group
from rooms.models import Membership
from rooms.opening import RoomState, quick_resume, read_opening, session_key
from rooms.queries import catch_up, room_read_positions
from rooms.services import do_mark_read_in_rooms
from rooms.services.moderation import give_back_notices, mark_notices_seen, take_notices
from rooms.socket_db import on_socket_thread

# Close codes in the 4000s are ours: the page must not retry them as it does 1006.
log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY_FRAMES = 4429
# Events for this socket may have been lost: the page reconnects at once and resumes from
# its last seq. (1012 would say so too, but autobahn lets a server close only with 1000 or
# 3000-4999.)
CLOSE_RECONNECT = 4012

READ_FLUSH_SECONDS = 3.0
TYPING_MIN_INTERVAL = 2.0
NOTICE_TOAST = "rooms/live/notice_toast.html"


class RoomConsumer(AsyncWebsocketConsumer):
    """The page's connection. `?room=<id>` names the room the page shows, if any.

    An idle socket's memory is mostly this object, so what most sockets never change
    stays on the class until one does (thousands of sockets are open at once).
    """

    groups = ()  # joined in connect(), not by Channels
    user_id = 0
    user_name = ""
    blocked: set[int] | frozenset[int] = frozenset()
    # Whose read positions this page is never shown, nor shown to (docs/protocol.md, seen).
    blocked_by: set[int] | frozenset[int] = frozenset()
    read_receipts = False
    current_room: int | None = None
    # In the groups of the user and of every room in `rooms`, after connect().
    joined = False
    frame_times: list[float] | tuple[()] = ()
    last_typing = 0.0
    pending_reads: dict[int, int] | None = None
    read_flush: asyncio.Task | None = None
    counted_online = False
    counted_open = False
    # (was viewing, was the user's last socket here): for the shared cache, once closed.
    release_pending: tuple[bool, bool] | None = None
    # The page is visible and has the focus (a "viewing" frame): notifications when
    # Calpico is closed skip the room it shows (rooms.presence.viewing).
    viewing = False
    # The viewer's language (set in connect(); until then, for the handshake, the default).
    language: str = settings.LANGUAGE_CODE

    async def connect(self) -> None:
        self.rooms: dict[int, RoomState] = {}
        requested = self._requested_room()
        key = session_key(self.scope["headers"])
        # The browser's language, from the handshake's headers, before they are let go; a
        # language chosen in the profile wins once the user is read (calpico.languages).
        self.language = socket_language({"headers": self.scope["headers"]})
        # Daphne's list of the handshake's headers, kept by the scope for the socket's life:
        # nothing reads it after this.
        if isinstance(self.scope["headers"], list):
            self.scope["headers"].clear()
        # Accept first, then close with our code: a refused handshake looks like a network
        # failure (1006) that the browser would retry for ever. Accepting before anything
        # is read also completes the handshake at once when thousands of pages reconnect
        # together, instead of after daphne's --websocket_connect_timeout (they queue here).
        await self.accept()
        metrics.WEBSOCKETS_OPEN.inc()
        self.counted_open = True
        opening = await on_socket_thread(read_opening)(key, requested)
        if opening.user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id, self.user_name = opening.user.pk, opening.user.name
        if opening.user.language in dict(settings.LANGUAGES):
            self.language = opening.user.language  # chosen in the profile: wins over the browser
        # Events carry HTML in the languages in use (rooms.live.localized): this one is.
        await languages.amark_in_use(self.language)
        if not opening.allowed:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.rooms = opening.rooms
        if opening.blocked:
            self.blocked = opening.blocked
        if opening.blocked_by:
            self.blocked_by = opening.blocked_by
        if opening.user.read_receipts:
            self.read_receipts = True  # kept current by user.receipts
        if requested is not None:
            self.current_room = requested
        self.joined = True
        for group in self._groups():
            await self.channel_layer.group_add(group, self.channel_name)
        await self._send_json({"type": "hello", "server_time": timezone.now().isoformat()})
        if opening.notices:
            await self._send_notices(opening.notice_ids, opening.notices)
        self.counted_online = True
        if presence.connection_opened(self.user_id, self.rooms):
            await self._announce_presence(True)

    async def _send_notices(self, ids: list[int], texts: list[str]) -> None:
        """Show the notices kept while the person was away, each on one page: taken first
        (another page opening at once read them too), given back if sending failed (the
        next page shows them)."""
        taken = await on_socket_thread(take_notices)(self.user_id, ids)
        if not taken:
            return
        text_of = dict(zip(ids, texts, strict=True))
        try:
            # Connecting ran under the default language (`dispatch` read it before the
            # handshake's headers were): the heading is in this person's.
            with translation.override(self.language):
                toasts = [render_to_string(NOTICE_TOAST, {"text": text_of[pk]}) for pk in taken]
            for toast in toasts:
                await self.send(text_data=toast)
        except BaseException:
            await on_socket_thread(give_back_notices)(self.user_id, taken)
            raise

    async def dispatch(self, message: dict) -> None:
        # Channels closes stale database connections before every handler, a hop to the
        # sync thread per event per socket. Nothing here uses the database on the event
        # loop: database work goes through on_socket_thread, which manages its connection.
        # Events carry each language's HTML (rooms.live.localized): this viewer's is laid over.
        with translation.override(self.language):
            localized = message.get("i18n")
            if localized and self.language in localized:
                message = {**message, **localized[self.language]}
            await getattr(self, get_handler_name(message))(message)

    def _requested_room(self) -> int | None:
        """The `room` of the query string; 0 (no room's id) when it is there but no id."""
        query = self.scope.get("query_string", b"").decode()
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if name == "room" and value:
                return parse_id(value) or 0
        return None

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # disconnect() never ran (a handler raised), raised, or was cancelled (daphne's
            # application close timeout, its shutdown cancelling every consumer): this
            # process must not keep the person online and "viewing" for its whole life.
            self._release_here()
            if self.release_pending is not None:
                _best_effort(self._release_shared())

    async def disconnect(self, code: int) -> None:
        # This process's own bookkeeping first, before anything that waits and may fail or
        # be cancelled; the shared cache and the channel layer after, best effort.
        self._release_here()
        if self.pending_reads:
            await _logged(self._flush_reads(), "Could not save read positions of a closing socket")
        if self.joined:
            self.joined = False
            for group in self._groups():
                await _logged(
                    self.channel_layer.group_discard(group, self.channel_name), "Could not leave a group"
                )
        await self._release_shared()

    def _release_here(self) -> None:
        """Uncount the socket in this process, once (no await: it cannot be cut short).
        What the shared cache still has to forget waits in `release_pending`."""
        if self.counted_open:
            self.counted_open = False
            metrics.WEBSOCKETS_OPEN.dec()
        if self.read_flush is not None:
            self.read_flush.cancel()
        was_viewing = self.viewing
        if was_viewing:
            self.viewing = False
            presence.page_gone_here(self.user_id, self.channel_name)
        last = False
        if self.counted_online:
            self.counted_online = False
            last = presence.connection_closed(self.user_id, self.rooms)
            if last:
                presence.announce(list(self.rooms), self.user_id, False)
        if was_viewing or last:
            self.release_pending = (was_viewing, last)

    async def _release_shared(self) -> None:
        """The shared cache forgets this page in front of the person and, if it was their
        last socket here, their online key (other processes put it back on their refresh).
        Best effort: both expire after PRESENCE_SECONDS without this process's refresh."""
        if self.release_pending is None:
            return
        (was_viewing, last), self.release_pending = self.release_pending, None
        if was_viewing:
            await _logged(
                on_socket_thread(presence.set_viewing)(self.user_id, self.channel_name, None),
                "Could not forget a closed page's viewing",
            )
        if last:
            await _logged(on_socket_thread(presence.forget)(self.user_id), "Could not forget presence")

    # Frames from the browser

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.joined:
            return
        if bytes_data is not None or text_data is None:
            await self._error("Frames are JSON text.")
            return
        if len(text_data.encode()) > settings.WS_MAX_FRAME_BYTES:
            await self._error(f"Frames are at most {settings.WS_MAX_FRAME_BYTES // 1024} KB.")
            return
        if not self._within_rate():
            await self._error("Too many frames; slow down.")
            if len(self.frame_times) > 2 * settings.WS_FRAMES_PER_10_SECONDS:
                await self.close(code=CLOSE_TOO_MANY_FRAMES)
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self._error("That frame is not valid JSON.")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self._error('Frames are objects with a "type".')
            return
        handler = {
            "resume": self._on_resume,
            "typing": self._on_typing,
            "read": self._on_read,
            "ping": self._on_ping,
            "viewing": self._on_viewing,
        }.get(frame["type"])
        if handler is None:
            await self._error(f"Unknown frame type {frame['type'][:40]!r}.")
            return
        await handler(frame)

    def _within_rate(self) -> bool:
        now = time.monotonic()
        recent = [t for t in self.frame_times if now - t < 10.0]
        recent.append(now)
        self.frame_times = recent
        return len(recent) <= settings.WS_FRAMES_PER_10_SECONDS

    def _frame_room(self, frame: dict) -> int | None:
        room_id = _frame_number(frame, "room", parse_id)
        return room_id if room_id in self.rooms else None

    def _frame_seq(self, frame: dict, name: str) -> int | None:
        return _frame_number(frame, name, parse_seq)

    async def _on_ping(self, frame: dict) -> None:
        await self._send_json({"type": "pong"})

    async def _on_viewing(self, frame: dict) -> None:
        """The page is in front of the person (visible, focused), or no longer."""
        visible = frame.get("visible")
        if not isinstance(visible, bool):
            await self._error("viewing needs visible, true or false.")
            return
        if visible == self.viewing:
            return
        self.viewing = visible
        room = (self.current_room or 0) if visible else None
        await on_socket_thread(presence.set_viewing)(self.user_id, self.channel_name, room)

    async def _on_resume(self, frame: dict) -> None:
        """Send what the page missed after `last_seq`, or ask it to reload."""
        room_id = self._frame_room(frame)
        last_seq = self._frame_seq(frame, "last_seq")
        oldest = self._frame_seq(frame, "oldest_seq") if "oldest_seq" in frame else last_seq
        since = _parse_time(frame.get("since"))
        if room_id is None or room_id != self.current_room or last_seq is None or oldest is None:
            await self._error("resume needs this page's room, a last_seq and an oldest_seq (seqs).")
            return
        if since is None and frame.get("since") is not None:
            await self._error("resume's since is a time with its zone, as the server sent it.")
            return
        oldest = oldest or last_seq
        if since is not None and last_seq - oldest > settings.WS_RESUME_MAX_RANGE:
            # More than a page holds: checking them all for edits would scan the room.
            await self._send_json({"type": "reload", "reason": "too_long"})
            return
        # A page showing an older window (/r/<room>/m/<seq>/) asks for the changes to what
        # it has, not for what came after it.
        detached = frame.get("detached") is True
        # Almost always nothing to catch up: one trip, one compiled query (two with read
        # receipts), and catch_up only when there is something to send.
        reader = self.user_id if self.read_receipts else None
        quick = await on_socket_thread(quick_resume)(
            room_id, last_seq, oldest, since, detached, reader, self.blocked | self.blocked_by
        )
        if quick.nothing:
            if quick.positions is not None:
                await self._send_seen(room_id, quick.positions)
            await self._caught_up(room_id, last_seq)
            return
        missed, changed, newest = await on_socket_thread(catch_up)(
            room_id, last_seq, oldest, since, detached=detached
        )
        if missed is None:
            await self._send_json({"type": "reload", "reason": "too_far_behind"})
            return
        html = render_to_string("rooms/live/catch_up.html", {"messages": missed, "changed": changed})
        if html.strip():
            await self.send(text_data=html)
        if self.read_receipts:
            # Reads are not replayed like messages: the page gets them all again.
            await self._send_read_positions()
        await self._caught_up(room_id, newest)

    async def _caught_up(self, room_id: int, last_seq: int) -> None:
        await self._send_json(
            {
                "type": "caught_up",
                "room": room_id,
                "last_seq": last_seq,
                "server_time": timezone.now().isoformat(),
            }
        )

    async def _on_typing(self, frame: dict) -> None:
        room_id = self._frame_room(frame)
        if room_id is None:
            await self._error("typing needs a room you are in.")
            return
        now = time.monotonic()
        if now - self.last_typing < TYPING_MIN_INTERVAL:
            return
        self.last_typing = now
        await self.channel_layer.group_send(
            room_group(room_id),
            {"type": "room.typing", "room_id": room_id, "user_id": self.user_id, "name": self.user_name},
        )

    async def _on_read(self, frame: dict) -> None:
        room_id = self._frame_room(frame)
        seq = self._frame_seq(frame, "seq")
        if room_id is None or seq is None:
            await self._error("read needs a room you are in and a seq.")
            return
        state = self.rooms[room_id]
        if seq <= state.last_read_seq:
            return
        state.last_read_seq = seq
        if self.pending_reads is None:
            self.pending_reads = {}
        self.pending_reads[room_id] = seq
        # Reads arrive with every message while a room is open; write them in batches.
        if self.read_flush is None or self.read_flush.done():
            self.read_flush = asyncio.create_task(self._flush_reads_later())

    async def _flush_reads_later(self) -> None:
        await asyncio.sleep(READ_FLUSH_SECONDS)
        await self._flush_reads()

    async def _flush_reads(self) -> None:
        reads, self.pending_reads = self.pending_reads, None
        if reads:
            await on_socket_thread(do_mark_read_in_rooms)(self.user_id, reads)

    # Events from the channel layer

    async def room_message(self, event: dict) -> None:
        room_id = event["room_id"]
        state = self.rooms.get(room_id)
        if state is None:
            return  # not (or no longer) a member: nothing from this room
        mine = event["author_id"] == self.user_id
        blocked = event["author_id"] in self.blocked
        parts = []
        if room_id == self.current_room:
            # The page collapses a blocked author's message itself (static/js/viewer.js).
            parts.append(event["message_html"])
        if blocked:
            # Never a notification, a preview or a count from someone I blocked.
            if parts:
                await self.send(text_data="".join(parts))
                self._count_fanout(event)
            return
        parts.append(event["sidebar_html_mine"] if mine else event["sidebar_html"])
        if mine:
            state.last_read_seq = max(state.last_read_seq, event["seq"])
            self.last_typing = 0.0  # a sent message ends the typing; the next one starts anew
        elif not event["system"]:
            mentioned = self.user_id in event["mentions"]
            if mentioned and event["toast_html_mention"]:
                parts.append(event["toast_html_mention"])
            elif not state.muted and event["toast_html"]:
                parts.append(event["toast_html"])
        await self.send(text_data="".join(parts))
        self._count_fanout(event)
        if not mine and room_id != self.current_room:
            # The page showing this room counts what arrives while it is hidden itself.
            count = max(event["seq"] - state.last_read_seq, 0)
            await self._send_json({"type": "unread", "room": room_id, "count": count, "muted": state.muted})

    @staticmethod
    def _count_fanout(event: dict) -> None:
        announced_at = event.get("announced_at")
        if isinstance(announced_at, float):
            metrics.FANOUT_SECONDS.observe(max(time.time() - announced_at, 0.0))

    async def room_message_changed(self, event: dict) -> None:
        room_id = event["room_id"]
        if room_id not in self.rooms:
            return
        parts = []
        if room_id == self.current_room:
            parts.append(event["html"])
        mine = event.get("author_id") == self.user_id
        sidebar = event.get("sidebar_html_mine") if mine else event.get("sidebar_html")
        if sidebar and event.get("author_id") not in self.blocked:
            parts.append(sidebar)
        if parts:
            await self.send(text_data="".join(parts))

    async def room_reactions(self, event: dict) -> None:
        """A message's chips changed: to pages showing the room. The chips hold everyone's
        reactions; the page leaves out those of people I blocked (static/js/reactions.js).
        Never a notification, but a quiet toast to the author of a message in a direct room
        (not for my own reactions, nor from someone I blocked, nor in a muted room)."""
        room_id = event["room_id"]
        state = self.rooms.get(room_id)
        if state is None:
            return
        parts = []
        if room_id == self.current_room:
            parts.append(event["html"])
        actor = event["actor_id"]
        if (
            event["toast_html"]
            and event["author_id"] == self.user_id
            and actor not in (None, self.user_id)
            and actor not in self.blocked
            and not state.muted
        ):
            parts.append(event["toast_html"])
        if parts:
            await self.send(text_data="".join(parts))

    async def room_fragment(self, event: dict) -> None:
        if event["room_id"] == self.current_room and event["room_id"] in self.rooms:
            await self.send(text_data=event["html"])

    async def room_typing(self, event: dict) -> None:
        if event["user_id"] in self.blocked:
            return
        if event["room_id"] == self.current_room and event["user_id"] != self.user_id:
            await self._send_json(
                {
                    "type": "typing",
                    "room": event["room_id"],
                    "user": event["user_id"],
                    "name": event["name"],
                    "seconds": settings.TYPING_SECONDS,
                }
            )

    async def room_read(self, event: dict) -> None:
        """Someone read further (or stopped or started sharing it: seq None, or where they
        are): for the page showing the room, unless this viewer may not see it."""
        room_id, reader = event["room_id"], event["user_id"]
        if room_id != self.current_room or room_id not in self.rooms or reader == self.user_id:
            return
        if not self.read_receipts or reader in self.blocked or reader in self.blocked_by:
            return
        await self._send_json({"type": "seen", "room": room_id, "positions": {str(reader): event["seq"]}})

    async def _send_read_positions(self) -> None:
        """Every read position the page showing a room may see, in place of what it had:
        after this viewer's read receipts or blocks changed."""
        room_id = self.current_room
        if room_id is None or room_id not in self.rooms:
            return
        positions: dict[int, int] = {}
        if self.read_receipts:
            hidden = self.blocked | self.blocked_by
            positions = await on_socket_thread(room_read_positions)(room_id, self.user_id, hidden)
        await self._send_seen(room_id, positions)

    async def _send_seen(self, room_id: int, positions: dict[int, int]) -> None:
        await self._send_json(
            {
                "type": "seen",
                "room": room_id,
                "positions": {str(user_id): seq for user_id, seq in positions.items()},
                "replace": True,
            }
        )

    async def user_receipts(self, event: dict) -> None:
        # I switched read receipts on or off (on any page): off, I am shown no one's.
        self.read_receipts = event["enabled"]
        await self._send_read_positions()

    async def user_blocked_by(self, event: dict) -> None:
        # Someone blocked or unblocked me. Silently: the page is not told, and keeps what it
        # has until it reloads; no more of their positions reach it.
        _, self.blocked_by = await on_socket_thread(block_relations)(User(pk=self.user_id))

    async def user_presence(self, event: dict) -> None:
        # Online dots are shown for the members of the room on screen only.
        if event["room_id"] != self.current_room:
            return
        online = [uid for uid in event["online"] if uid != self.user_id]
        offline = [uid for uid in event["offline"] if uid != self.user_id]
        if online or offline:
            await self._send_json({"type": "presence", "online": online, "offline": offline})

    async def user_fragment(self, event: dict) -> None:
        """Out-of-band HTML for this user alone (a private answer from the assistant), on
        the page showing the room it belongs to."""
        if event["room_id"] == self.current_room and event["room_id"] in self.rooms:
            await self.send(text_data=event["html"])

    async def user_notice(self, event: dict) -> None:
        await self.send(text_data=render_to_string(NOTICE_TOAST, {"text": event["text"]}))
        await on_socket_thread(mark_notices_seen)(User(pk=self.user_id), event.get("id"))

    async def user_blocks(self, event: dict) -> None:
        self.blocked, self.blocked_by = await on_socket_thread(block_relations)(User(pk=self.user_id))
        await self._send_json({"type": "blocked", "users": sorted(self.blocked)})
        await self._send_read_positions()

    async def membership_added(self, event: dict) -> None:
        room_id = event["room_id"]
        if room_id in self.rooms:
            return
        state = await on_socket_thread(_membership_state)(self.user_id, room_id)
        if state is None:
            return
        self.rooms[room_id] = state
        await self.channel_layer.group_add(room_group(room_id), self.channel_name)
        await self.send(text_data=event["entry_html"] + event["toast_html"])

    async def membership_removed(self, event: dict) -> None:
        room_id = event["room_id"]
        if self.rooms.pop(room_id, None) is None:
            return
        await self.channel_layer.group_discard(room_group(room_id), self.channel_name)
        if room_id == self.current_room:
            await self.close(code=CLOSE_FORBIDDEN)
        else:
            await self._send_json({"type": "room_removed", "room": room_id})

    async def membership_updated(self, event: dict) -> None:
        state = self.rooms.get(event["room_id"])
        if state is not None:
            state.muted = event["muted"]

    async def session_ended(self, event: dict) -> None:
        # To reconnect: the page comes back with its browser's cookie, if that still signs in.
        await self.close(code=CLOSE_RECONNECT if event.get("reconnect") else CLOSE_UNAUTHENTICATED)

    async def layer_reconnected(self, event: dict) -> None:
        """The layer lost its connection for a while (calpico/layers.py): events may have
        gone by unheard, so the page reconnects and catches up from the database."""
        await self.close(code=CLOSE_RECONNECT)

    # Helpers

    def _groups(self) -> list[str]:
        return [user_group(self.user_id), *(room_group(r) for r in self.rooms)]

    async def _send_json(self, payload: dict) -> None:
        await self.send(text_data=json.dumps(payload))

    async def _error(self, message: str) -> None:
        await self._send_json({"type": "error", "message": message})

    async def _announce_presence(self, online: bool) -> None:
        presence.announce(list(self.rooms), self.user_id, online)


_cleanups: set[asyncio.Task] = set()


async def _logged(step, what: str) -> None:
    """Await one step of a socket's closing; a failure is logged and the rest goes on."""
    try:
        await step
    except Exception:
        log.warning(what, exc_info=True)


def _best_effort(coro) -> None:
    """Run a closing socket's shared-cache cleanup in the background, from a `finally`
    where awaiting may no longer be possible (the consumer was cancelled)."""
    try:
        task = asyncio.get_running_loop().create_task(coro)
    except RuntimeError:  # no loop any more: the keys expire on their own
        coro.close()
        return
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)


def _frame_number(frame: dict, name: str, parse) -> int | None:
    """A JSON number in a frame, read by `parse` (rooms.access): "12" or 12.0 are not one."""
    value = frame.get(name)
    return parse(value) if isinstance(value, int) else None


def _parse_time(value) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _membership_state(user_id: int, room_id: int) -> RoomState | None:
    row = (
        Membership.objects.filter(
            user_id=user_id, room_id=room_id, room__archived_at__isnull=True, request=Membership.Request.NONE
        )
        .values_list("last_read_seq", "muted")
        .first()
    )
    return RoomState(*row) if row else None
