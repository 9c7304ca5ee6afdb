"""The channel layer under a long-open page and a lost Redis connection.

A page may stay open for days, and Redis may restart under it. Neither may leave a socket
open but deaf: group membership lasts as long as the socket, and a socket whose process
may have missed events is closed with 4012 so the page reconnects and resumes.
"""

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer

from calpico.layers import RedisPubSubChannelLayer
from rooms.consumers import CLOSE_RECONNECT
from rooms.live import user_group
from tests.redis_server import own_redis  # noqa: F401 (a fixture)
from tests.sockets import answered, apost, closed_with, connected, delivered, html

pytestmark = pytest.mark.django_db(transaction=True)

DAY = 24 * 60 * 60


@pytest.fixture
def in_memory_layer(settings):
    """The embedded layer, as calpico/settings.py configures it without REDIS_URL."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "calpico.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 60},
        }
    }
    channel_layers.backends.clear()
    yield get_channel_layer()
    channel_layers.backends.clear()


class _Clock:
    """`time` for the layer modules, running `offset` seconds ahead of the real one."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


async def test_an_embedded_socket_still_hears_its_rooms_after_a_day(
    alice, bob, group, in_memory_layer, monkeypatch
):
    """A page left open for more than a day (daphne run without its websocket timeout)
    still gets new messages: joining a room's group does not expire."""
    clock = _Clock()
    monkeypatch.setattr("channels.layers.time", clock)
    monkeypatch.setattr("calpico.layers.time", clock)
    socket = await connected(alice, group)
    await delivered(socket)

    clock.offset = DAY + 60
    await apost(group, bob, "Still there a day later?")
    assert "Still there a day later?" in html(await delivered(socket))
    await socket.disconnect()


async def test_a_layer_reconnection_closes_the_socket_to_resume(alice, group, in_memory_layer):
    """When the layer says it may have lost events, the page is told to reconnect (and so
    to resume from its last sequence number)."""
    socket = await connected(alice, group)
    await delivered(socket)
    (channel,) = in_memory_layer.groups[user_group(alice.pk)]
    await in_memory_layer.send(channel, {"type": "layer.reconnected"})
    await closed_with(socket, CLOSE_RECONNECT)


async def test_resuming_after_that_close_sends_what_was_posted_meanwhile(alice, bob, group, in_memory_layer):
    """The page's answer (static/js/live.js): a new socket and a resume frame with its last seq."""
    socket = await connected(alice, group)
    await delivered(socket)
    start = await sync_to_async(lambda: type(group).objects.get(pk=group.pk).last_seq)()
    (channel,) = in_memory_layer.groups[user_group(alice.pk)]
    await in_memory_layer.send(channel, {"type": "layer.reconnected"})
    await closed_with(socket, CLOSE_RECONNECT)
    await apost(group, bob, "Posted while the page reconnects")

    socket = await connected(alice, group)
    await socket.send_to(text_data=json.dumps({"type": "resume", "room": group.pk, "last_seq": start}))
    assert "Posted while the page reconnects" in html(await answered(socket))
    await socket.disconnect()


async def test_the_redis_layer_tells_its_sockets_when_its_connection_comes_back(own_redis):  # noqa: F811
    """Redis restarts: whatever was published while this process was not subscribed is lost
    to it, so each of its channels gets `layer.reconnected`, once it listens again."""
    layer = RedisPubSubChannelLayer(hosts=[own_redis.url], prefix="calpico_test")
    try:
        channels = [await layer.new_channel() for _ in range(2)]
        for channel in channels:
            await layer.group_add("room.1", channel)
        await layer.group_send("room.1", {"type": "room.fragment", "n": 1})
        for channel in channels:
            assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 1

        await asyncio.to_thread(own_redis.restart)
        for channel in channels:
            assert await asyncio.wait_for(layer.receive(channel), 10) == {"type": "layer.reconnected"}
        await layer.group_send("room.1", {"type": "room.fragment", "n": 2})
        for channel in channels:
            assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 2
    finally:
        await layer.flush()


# The channels' queues (calpico.layers.Mailbox)


async def test_a_mailbox_hands_items_out_in_order_to_whoever_waits():
    from calpico.layers import Mailbox

    box = Mailbox(maxsize=2)
    reader = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    box.put_nowait("first")
    box.put_nowait("second")
    assert await reader == "first"
    box.put_nowait("third")
    with pytest.raises(asyncio.QueueFull):
        box.put_nowait("fourth")
    assert [box.get_nowait(), await box.get()] == ["second", "third"]
    assert box.empty() and box.waiters is None


async def test_an_item_for_a_reader_cancelled_meanwhile_goes_to_the_next():
    from calpico.layers import Mailbox

    box = Mailbox()
    first, second = asyncio.ensure_future(box.get()), asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    box.put_nowait("only")  # wakes the first reader...
    first.cancel()  # ...which is gone before it takes it
    assert await asyncio.wait_for(second, 1) == "only"
    assert first.cancelled() and box.waiters is None


async def test_the_embedded_layer_drops_what_a_full_channel_cannot_hold(in_memory_layer):
    """A socket far behind misses events (it catches up from the database), and an idle
    channel keeps no queue once its reader is gone."""
    channel = await in_memory_layer.new_channel()
    await in_memory_layer.group_add("g", channel)
    for i in range(1005):
        await in_memory_layer.group_send("g", {"type": "x", "i": i})
    assert [(await in_memory_layer.receive(channel))["i"] for _ in range(3)] == [0, 1, 2]
    assert in_memory_layer.channels[channel].qsize() == 997
    while in_memory_layer.channels.get(channel):
        await in_memory_layer.receive(channel)
    reader = asyncio.ensure_future(in_memory_layer.receive(channel))
    await asyncio.sleep(0)
    reader.cancel()
    await asyncio.sleep(0)
    assert channel not in in_memory_layer.channels
