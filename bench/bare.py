"""The baseline for bench/fanout.py: the least a Channels server can do to fan a message out.

Every socket joins one group; a text frame from any socket is sent to the group through
the same kind of channel layer Calpico uses, and each consumer forwards it as it came. No
authentication, no database, no rendering, no per-viewer decisions. Served by its own
daphne process:

    BARE_CHANNEL_LAYER=redis BARE_REDIS_URL=redis://127.0.0.1:6379/9 daphne bench.bare:application

Configuration comes from the environment because daphne imports this module by name.
"""

import os

import django
from django.conf import settings

GROUP = "bare"

if not settings.configured:
    if os.environ.get("BARE_CHANNEL_LAYER", "memory") == "redis":
        layer = {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [os.environ["BARE_REDIS_URL"]],
                "prefix": os.environ.get("BARE_CHANNEL_LAYER_PREFIX", "bare"),
            },
        }
    else:
        # The same capacity and expiry as Calpico's in-memory layer (calpico/settings.py).
        layer = {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 60},
        }
    settings.configure(
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={"default": layer},
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    )
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class RelayConsumer(AsyncWebsocketConsumer):
    groups = [GROUP]  # joined by Channels before connect()

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data='{"type": "hello"}')

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.channel_layer.group_send(GROUP, {"type": "relay", "text": text_data})

    async def relay(self, event: dict) -> None:
        await self.send(text_data=event["text"])


async def ok(scope, receive, send) -> None:
    """Any HTTP request: 200, so the benchmark can tell the server is up."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok\n"})


application = ProtocolTypeRouter(
    {
        "http": ok,
        "websocket": URLRouter([path("ws/", RelayConsumer.as_asgi())]),
    }
)
