"""Talking to the page's WebSocket from a test: connect as someone, read what arrives.

Reading without waiting for quiet: `delivered(socket)` sends a barrier event through the
channel layer to the socket's own user group and reads until the socket answers it. A
channel's events are handled one at a time in the order they were sent, so everything the
test caused through the layer before the barrier (a post, a rename, a block) has been
delivered by then. `answered(socket)` does the same for frames the test sent itself, with a
ping: the socket answers its frames in order. `frames()` still waits for quiet, for what a
timer sends (presence batches, an assistant streaming).
"""

import itertools
import json

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from calpico.asgi import application
from rooms import services
from rooms.live_groups import user_group
from tests.conftest import membership

ORIGIN = (b"origin", b"http://127.0.0.1")
BARRIER = "test.barrier"
_barrier_ids = itertools.count(1)


async def answer_barrier(consumer, event: dict) -> None:
    """Installed on the consumer as `user_test_barrier` (tests/conftest.py)."""
    await consumer.send(text_data=json.dumps({"type": BARRIER, "id": event["id"]}))


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def connect(user=None, room=None, origin=ORIGIN) -> WebsocketCommunicator:
    headers = [origin] if origin else []
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    path = "/ws/" + (f"?room={room.pk}" if room is not None else "")
    socket = WebsocketCommunicator(application, path, headers=headers)
    socket.user = user
    return socket


async def connected(user, room=None) -> WebsocketCommunicator:
    """A connected socket that has received its hello."""
    socket = await connect(user, room)
    ok, _ = await socket.connect()
    assert ok
    hello = json.loads(await socket.receive_from(timeout=5))
    assert hello["type"] == "hello"
    return socket


async def delivered(socket, timeout: float = 5.0) -> list[str]:
    """Every frame the socket was sent for what happened through the channel layer so far."""
    barrier = next(_barrier_ids)
    event = {"type": "user.test_barrier", "id": barrier}
    await get_channel_layer().group_send(user_group(socket.user.pk), event)
    return await _until(socket, lambda frame: frame == {"type": BARRIER, "id": barrier}, timeout)


async def answered(socket, timeout: float = 5.0) -> list[str]:
    """Every frame the socket sent in answer to the frames the test sent it so far."""
    await socket.send_to(text_data='{"type": "ping"}')
    return await _until(socket, lambda frame: frame.get("type") == "pong", timeout)


async def _until(socket, is_last, timeout: float) -> list[str]:
    frames_before = []
    while True:
        frame = await socket.receive_from(timeout=timeout)
        parsed = json.loads(frame) if frame.startswith("{") else {}
        if is_last(parsed):
            return frames_before
        if parsed.get("type") != BARRIER:  # another socket's barrier to the same user
            frames_before.append(frame)


async def frames(socket, timeout=0.25) -> list[str]:
    """Everything the socket receives until it has been quiet for `timeout` seconds."""
    frames_received = []
    # receive_nothing polls without cancelling the app (a receive_from timeout would).
    while not await socket.receive_nothing(timeout=timeout, interval=0.02):
        frames_received.append(await socket.receive_from(timeout=1))
    return frames_received


def json_frames(frames_received: list[str], kind: str | None = None) -> list[dict]:
    parsed = [json.loads(f) for f in frames_received if f.startswith("{")]
    return [f for f in parsed if kind is None or f["type"] == kind]


def html(frames_received: list[str]) -> str:
    return "".join(f for f in frames_received if not f.startswith("{"))


async def closed_with(socket, code: int) -> None:
    output = await socket.receive_output(timeout=5)
    while output["type"] == "websocket.send":
        output = await socket.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": code}


async def apost(room, user, body: str, **kwargs):
    """Post as `user` through the service, as the post view does, from async test code."""
    return await sync_to_async(lambda: services.do_post_message(membership(room, user), body, **kwargs))()
