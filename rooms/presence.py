"""Who has an open connection, for the online dots.

Each process counts its own sockets per user; the shared cache (Redis in production)
holds a key per online user, so a process that dies leaves no one "online" for longer
than PRESENCE_SECONDS. One timer per process (not one per socket) refreshes the keys of
everyone with a socket in it every PRESENCE_SECONDS / 2, in one call to the cache.
"""

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from rooms.live_groups import room_group
from rooms.socket_db import on_socket_thread

log = logging.getLogger(__name__)

# user id -> the rooms of each of their sockets in this process (the consumers' own
# dicts, which membership events keep current), for announcing a reappearance.
_local: dict[int, list[Mapping[int, Any]]] = {}
_refresher: asyncio.Task | None = None


def _key(user_id: int) -> str:
    return f"presence:{user_id}"


def connection_opened(user_id: int, rooms: Mapping[int, Any]) -> bool:
    """Count a socket (`rooms`: the rooms it listens to); True when it is this process's
    first for the user. Must run on the server's event loop."""
    sockets = _local.setdefault(user_id, [])
    sockets.append(rooms)
    _ensure_refresher()
    return len(sockets) == 1


def connection_closed(user_id: int, rooms: Mapping[int, Any]) -> bool:
    """Uncount a socket; True when the user has no socket left in this process."""
    sockets = _local.get(user_id)
    if sockets is None:
        return True
    for i, each in enumerate(sockets):
        if each is rooms:
            del sockets[i]
            break
    if not sockets:
        del _local[user_id]
        return True
    return False


def refresh(user_id: int) -> bool:
    """Keep the user online for another PRESENCE_SECONDS; True if they were not before."""
    appeared = cache.add(_key(user_id), 1, settings.PRESENCE_SECONDS)
    if not appeared:
        cache.touch(_key(user_id), settings.PRESENCE_SECONDS)
    return appeared


def refresh_many(user_ids: Iterable[int]) -> list[int]:
    """`refresh` for each of these users, at once where the cache can (Redis: one
    pipeline); returns those who were not online before."""
    user_ids = list(user_ids)
    refresh_keys = getattr(cache, "add_or_touch_many", None)
    if refresh_keys is not None:
        added = refresh_keys([_key(uid) for uid in user_ids], 1, settings.PRESENCE_SECONDS)
        return [uid for uid, appeared in zip(user_ids, added, strict=True) if appeared]
    return [uid for uid in user_ids if refresh(uid)]


def forget(user_id: int) -> None:
    """The last local socket closed. Sockets in other processes put the key back on their
    next refresh."""
    cache.delete(_key(user_id))


def online_user_ids(user_ids: Iterable[int]) -> set[int]:
    """Who of these is online; nobody while the cache cannot be reached (it answers as an
    empty one: the page still shows, without its online dots)."""
    keys = {_key(uid): uid for uid in user_ids}
    found = cache.get_many(list(keys))
    return {keys[key] for key in found}


# The refresh timer: one task per process (per event loop), running while it has sockets.


def _ensure_refresher() -> None:
    global _refresher
    loop = asyncio.get_running_loop()
    if _refresher is None or _refresher.done() or _refresher.get_loop() is not loop:
        _refresher = loop.create_task(_refresh_local())


async def _refresh_local() -> None:
    while _local:
        await asyncio.sleep(settings.PRESENCE_SECONDS / 2)
        if not _local:
            break
        try:
            appeared = await on_socket_thread(refresh_many)(list(_local))
            if _viewing_here:
                await on_socket_thread(refresh_viewing)()
        except Exception:
            log.exception("Could not refresh presence")
            continue
        # Back after the key expired or another process forgot it (its last socket of the
        # user closed): say so again in their rooms.
        for user_id in appeared:
            sockets = _local.get(user_id)
            if sockets:
                announce(list(sockets[0]), user_id, True)


# Announcing changes. A room whose members all arrive at once (a morning, a restart) would
# otherwise cost one event per member per arrival: quadratic. Changes are gathered per room
# and sent as one event per room at most every PRESENCE_BATCH_SECONDS.
_pending: dict[int, dict[int, bool]] = {}
_flusher: asyncio.Task | None = None


def announce(room_ids: Iterable[int], user_id: int, online: bool) -> None:
    """Queue a presence change for these rooms; must run on the server's event loop."""
    global _flusher
    for room_id in room_ids:
        _pending.setdefault(room_id, {})[user_id] = online
    loop = asyncio.get_running_loop()
    if _flusher is None or _flusher.done() or _flusher.get_loop() is not loop:
        _flusher = loop.create_task(_flush_later())


async def _flush_later() -> None:
    global _pending
    await asyncio.sleep(settings.PRESENCE_BATCH_SECONDS)
    batch, _pending = _pending, {}
    layer = get_channel_layer()
    for room_id, changes in batch.items():
        await layer.group_send(
            room_group(room_id),
            {
                "type": "user.presence",
                "room_id": room_id,
                "online": [uid for uid, online in changes.items() if online],
                "offline": [uid for uid, online in changes.items() if not online],
            },
        )


# Which room each person is looking at: a page that is visible and has the focus tells its
# socket (docs/protocol.md, viewing), so notifications when Calpico is closed skip what it
# already shows. One key per person: the pages (sockets) looking, each with the room it
# shows (0: a page without one) and when its process last said so. Each process re-stamps
# only its own pages with presence; readers ignore a page not stamped for PRESENCE_SECONDS,
# so the pages of a process that died are forgotten even while another process keeps the
# key alive.


def _viewing_key(user_id: int) -> str:
    return f"viewing:{user_id}"


def _now() -> float:
    """Wall-clock seconds, shared by every process (stamps are compared across them)."""
    return time.time()


# This process's pages in front of someone: stamped again with presence.
_viewing_here: dict[int, dict[str, int]] = {}


def _fresh(pages: object, now: float) -> dict[str, tuple[int, float]]:
    """The entries of a stored viewing dict still stamped within PRESENCE_SECONDS (an entry
    in another shape, or stale, is dropped)."""
    if not isinstance(pages, dict):
        return {}
    fresh = {}
    for page, entry in pages.items():
        if isinstance(entry, tuple) and len(entry) == 2 and now - entry[1] < settings.PRESENCE_SECONDS:
            fresh[page] = entry
    return fresh


def page_gone_here(user_id: int, page: str) -> None:
    """Forget `page` in this process's own list, at once and without the cache (a closing
    socket, before anything can fail or be cancelled): the timer no longer stamps it."""
    here = _viewing_here.get(user_id)
    if here is not None:
        here.pop(page, None)
        if not here:
            del _viewing_here[user_id]


def set_viewing(user_id: int, page: str, room_id: int | None) -> None:
    """`page` (a socket's channel name) shows `room_id` in front of the person, or, with
    None, no longer does (hidden, without focus, closed)."""
    if room_id is None:
        page_gone_here(user_id, page)
    else:
        _viewing_here.setdefault(user_id, {})[page] = room_id
    key = _viewing_key(user_id)
    now = _now()
    stored = cache.get(key)
    pages = _fresh(stored, now)
    if room_id is None:
        if not stored or page not in stored:
            return
        pages.pop(page, None)
    else:
        pages[page] = (room_id, now)
    if pages:
        cache.set(key, pages, settings.PRESENCE_SECONDS)
    else:
        cache.delete(key)


def refresh_viewing() -> None:
    """Stamp this process's pages in front of their people again (only its own: another
    process's pages age out unless that process stamps them)."""
    now = _now()
    for user_id, here in list(_viewing_here.items()):
        key = _viewing_key(user_id)
        pages = _fresh(cache.get(key), now)
        pages.update({page: (room_id, now) for page, room_id in list(here.items())})
        cache.set(key, pages, settings.PRESENCE_SECONDS)


def viewing(user_ids: Iterable[int]) -> dict[int, set[int]]:
    """The rooms each of these people has in front of them now (0: a page without a room)."""
    keys = {_viewing_key(uid): uid for uid in user_ids}
    found = cache.get_many(list(keys))
    now = _now()
    looking = {}
    for key, pages in found.items():
        rooms = {room_id for room_id, _ in _fresh(pages, now).values()}
        if rooms:
            looking[keys[key]] = rooms
    return looking
