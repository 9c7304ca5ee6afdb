"""The embedded channel layer: Channels' in-memory layer, made cheap to fan out.

Channels' `InMemoryChannelLayer` sweeps every channel and group for expired messages on
each `receive` and `group_send`, deep-copies each message for every recipient and starts
a task per recipient. With a few hundred open sockets that sweep alone costs a third of
the server's CPU. Here the sweep runs at most once a second, and a group send puts the
same event (our events are never mutated by a receiver) straight into each queue.
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
        if now - self._last_sweep >= self.sweep_interval:
            self._last_sweep = now
            super()._clean_expired()

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
