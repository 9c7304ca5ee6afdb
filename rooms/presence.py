"""Who has an open connection, for the online dots.

Each process counts its own sockets per user; the shared cache (Redis in production)
holds a key per online user that every open socket refreshes, so a process that dies
leaves no one "online" for longer than PRESENCE_SECONDS.
"""

import asyncio
from collections import Counter
from collections.abc import Iterable

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from rooms.live_groups import room_group

_local_sockets: Counter[int] = Counter()


def _key(user_id: int) -> str:
    return f"presence:{user_id}"


def connection_opened(user_id: int) -> bool:
    """Count a socket; True when it is this process's first for the user."""
    _local_sockets[user_id] += 1
    return _local_sockets[user_id] == 1


def connection_closed(user_id: int) -> bool:
    """Uncount a socket; True when the user has no socket left in this process."""
    _local_sockets[user_id] -= 1
    if _local_sockets[user_id] <= 0:
        del _local_sockets[user_id]
        return True
    return False


def refresh(user_id: int) -> bool:
    """Keep the user online for another PRESENCE_SECONDS; True if they were not before."""
    appeared = cache.add(_key(user_id), 1, settings.PRESENCE_SECONDS)
    if not appeared:
        cache.touch(_key(user_id), settings.PRESENCE_SECONDS)
    return appeared


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
    if _flusher is None or _flusher.done():
        _flusher = asyncio.get_running_loop().create_task(_flush_later())


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
