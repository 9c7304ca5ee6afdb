"""Runners waking each other across processes, through the channel layer.

A stopping process hands its running runs back to the queue and wakes every other
process's runner, so one of them claims each run at once instead of at its next poll.
"""

import asyncio
import contextlib
import logging

from channels.layers import get_channel_layer
from django.conf import settings

log = logging.getLogger(__name__)

# The channel-layer group every runner listens on.
RUNNERS_GROUP = "assistant.runners"


async def wake_runners() -> None:
    """Tell every process's runner to look for queued runs now (not at its next poll)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(RUNNERS_GROUP, {"type": "runs.queued"})
    except Exception:
        log.exception("Could not wake the other assistant runners")


async def listen(wake: asyncio.Event) -> None:
    """Set `wake` whenever another process hands runs back (`wake_runners`), so the runner
    looks for them now instead of at its next poll. Runs until cancelled."""
    layer = get_channel_layer()
    if layer is None:
        return
    channel = None
    try:
        while True:
            try:
                if channel is None:
                    channel = await layer.new_channel("assistant-runner.")
                await layer.group_add(RUNNERS_GROUP, channel)
                while True:
                    await layer.receive(channel)
                    wake.set()
            except Exception:
                log.warning("Assistant runner lost the channel layer; polling until it is back")
                await asyncio.sleep(settings.ASSISTANT_POLL_SECONDS)
    finally:
        if channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(layer.group_discard(RUNNERS_GROUP, channel))
