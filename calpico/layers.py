"""Our channel layers: Channels' in-memory layer made cheap to fan out (embedded), and
channels-redis' pub/sub layer that tells its sockets when Redis may have lost them events.

The in-memory layer:

Channels' `InMemoryChannelLayer` sweeps every channel and group for expired messages on
each `receive` and `group_send`, deep-copies each message for every recipient and starts
a task per recipient. With a few hundred open sockets that sweep alone costs a third of
the server's CPU. Here the sweep runs at most once a second, and a group send puts the
same event (our events are never mutated by a receiver) straight into each queue.

Each channel's queue is a `Mailbox`, not an asyncio.Queue: every idle socket holds one,
and an asyncio.Queue with its Event and four deques is 2.4 KB, against a hundred bytes
(Channels also built a new asyncio.Queue on every receive, used or not). The pub/sub layer
uses it too.

Group membership never expires here: Channels drops a channel from its groups a day
(`group_expiry`) after it joined, which silenced a page open for longer. A socket leaves
its groups when it disconnects (rooms/consumers.py), and a channel whose consumer died
without leaving is dropped from every group as soon as a message to it expires unread.
"""

import asyncio
import contextlib
import logging
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer as ChannelsRedisPubSubChannelLayer
from channels_redis.pubsub import RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)

# Put on every local channel when events may have been lost; consumers close with 4012.
RECONNECTED_EVENT = {"type": "layer.reconnected"}


class Mailbox:
    """What asyncio.Queue does for a channel's few readers (one: its consumer), at a
    fraction of the memory: a list of items and the futures of the readers waiting."""

    __slots__ = ("items", "maxsize", "waiters")

    def __init__(self, maxsize: int = 0) -> None:
        self.items: list = []
        self.maxsize = maxsize
        self.waiters: list[asyncio.Future] | None = None

    def empty(self) -> bool:
        return not self.items

    def qsize(self) -> int:
        return len(self.items)

    def put_nowait(self, item) -> None:
        if self.maxsize > 0 and len(self.items) >= self.maxsize:
            raise asyncio.QueueFull
        self.items.append(item)
        self._wake()

    def get_nowait(self):
        if not self.items:
            raise asyncio.QueueEmpty
        return self.items.pop(0)

    async def get(self):
        while not self.items:
            waiter = asyncio.get_running_loop().create_future()
            if self.waiters is None:
                self.waiters = []
            self.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                self._forget(waiter)
                if self.items:
                    self._wake()  # it may have been woken for an item it will not take
                raise
            self._forget(waiter)
        return self.items.pop(0)

    def _wake(self) -> None:
        for waiter in self.waiters or ():
            if not waiter.done():
                waiter.set_result(None)
                return

    def _forget(self, waiter: asyncio.Future) -> None:
        assert self.waiters is not None
        self.waiters.remove(waiter)
        if not self.waiters:
            self.waiters = None


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    sweep_interval = 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_sweep = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < self.sweep_interval:
            return
        self._last_sweep = now
        # Channels' sweep without its group expiry: only unread messages expire.
        wall = time.time()
        for channel, queue in list(self.channels.items()):
            while queue.items and queue.items[0][0] < wall:
                queue.get_nowait()
                self._remove_from_groups(channel)
                if queue.empty():
                    self.channels.pop(channel, None)

    async def send(self, channel: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = Mailbox(self.get_capacity(channel))
        try:
            queue.put_nowait((time.time() + self.expiry, dict(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def receive(self, channel: str) -> dict:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = Mailbox(self.get_capacity(channel))
        try:
            _, message = await queue.get()
        finally:
            if queue.empty() and self.channels.get(channel) is queue:
                del self.channels[channel]
        return message

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, {})):
            # A full queue means that socket is far behind; it catches up from the database.
            with contextlib.suppress(ChannelFull):
                await self.send(channel, message)


class RedisPubSubChannelLayer(ChannelsRedisPubSubChannelLayer):
    """channels-redis' pub/sub layer, and a `layer.reconnected` event for every channel of
    this process whenever its subscribing connection to Redis is made again.

    Pub/sub keeps nothing: while a process is not subscribed (Redis restarting, a network
    cut, and the second channels-redis waits before it tries again) everything published
    is lost to its sockets, and nothing else would tell them. redis-py re-subscribes when
    it reconnects; right after that, each socket hears that it may have missed events, and
    the page catches up from the database (rooms/consumers.py closes its socket with 4012).
    """

    def _get_layer(self):
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]  # type: ignore[has-type]

    async def _subscribe_to_channel(self, channel: str) -> None:
        self.channels[channel] = Mailbox()
        await self._get_shard(channel).subscribe(channel)


class _Shard(RedisSingleShardConnection):
    async def publish(self, channel: str, message: bytes) -> None:
        try:
            await super().publish(channel, message)
        except RedisConnectionError:
            # A pooled connection that Redis closed (it restarted) fails once; the pool
            # makes a new one. Failing again means Redis is down: the caller logs it.
            await super().publish(channel, message)

    def _ensure_redis(self) -> None:
        if self._redis is None:
            super()._ensure_redis()
            assert self._redis is not None
            self._pubsub = _PubSub(self._redis.connection_pool, on_reconnect=self._reconnected)

    def _reconnected(self) -> None:
        local = self.channel_layer.channels
        log.warning("Subscribed to Redis again; %d local channels told to resume", len(local))
        event = self.channel_layer.channel_layer.serialize(RECONNECTED_EVENT)
        for queue in local.values():
            queue.put_nowait(event)


class _PubSub(PubSub):
    """redis-py calls `on_connect` each time the connection is made *again* (it registers
    the callback after the first), and re-subscribes there; then we speak."""

    def __init__(self, *args, on_reconnect, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_reconnect = on_reconnect

    async def on_connect(self, connection) -> None:
        await super().on_connect(connection)
        self._on_reconnect()
