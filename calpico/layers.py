"""The embedded channel layer: Channels' in-memory layer, made cheap to fan out.

Channels' `InMemoryChannelLayer` sweeps every channel and group for expired messages on
each `receive` and `group_send`, deep-copies each message for every recipient and starts
a task per recipient. With a few hundred open sockets that sweep alone costs a third of
the server's CPU. Here the sweep runs at most once a second, and a group send puts the
same event (our events are never mutated by a receiver) straight into each queue.

Group membership never expires here: Channels drops a channel from its groups a day
(`group_expiry`) after it joined, which silenced a page open for longer. A socket leaves
its groups when it disconnects (rooms/consumers.py), and a channel whose consumer died
without leaving is dropped from every group as soon as a message to it expires unread.
"""

import asyncio
import contextlib
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer


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
            while not queue.empty() and queue._queue[0][0] < wall:
                queue.get_nowait()
                self._remove_from_groups(channel)
                if queue.empty():
                    self.channels.pop(channel, None)

    async def send(self, channel: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        queue = self.channels.setdefault(channel, asyncio.Queue(maxsize=self.get_capacity(channel)))
        try:
            queue.put_nowait((time.time() + self.expiry, dict(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, {})):
            # A full queue means that socket is far behind; it catches up from the database.
            with contextlib.suppress(ChannelFull):
                await self.send(channel, message)
