"""Two server processes behind one Redis: what happens in one reaches sockets on the other.

Production runs several daphne processes; a socket is served by whichever process accepted
it, so every announcement must travel through the channel layer (Redis pub/sub), never
through a process's memory. These tests start two real daphne processes on pytest-django's
test database and talk to them as a browser would: a session cookie, a WebSocket, a form
post with a CSRF token.
"""

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from accounts.models import User
from rooms import services
from rooms.consumers import CLOSE_FORBIDDEN
from rooms.models import Room
from tests.conftest import make_user

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

PROJECT_DIR = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 30.0
HOURLY_LIMIT = 6
# How long a live event may take to cross from one process to a socket on the other.
DELIVERY_TIMEOUT = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    """pytest-django's test database, as the servers must see it (the data is committed)."""
    db = connection.settings_dict
    user = quote(db["USER"] or "postgres", safe="")
    if db["PASSWORD"]:
        user += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'])}"


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def _start(env: dict[str, str], var_dir: Path, name: str) -> Server:
    port = _free_port()
    log = var_dir / f"daphne-{name}.log"
    daphne = Path(sys.executable).parent / "daphne"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [str(daphne), "-b", "127.0.0.1", "-p", str(port), "calpico.asgi:application"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(port, process, log)


def _wait_until_serving(server: Server, deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"daphne exited before serving:\n{server.log.read_text()}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{server.origin}/", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    pytest.fail(f"daphne did not answer within {STARTUP_TIMEOUT:.0f} s:\n{server.log.read_text()}")


@pytest.fixture
def servers(transactional_db, settings, tmp_path) -> Iterator[tuple[Server, Server]]:
    """Two daphne processes sharing the test database, Redis and a channel-layer prefix
    unique to this test; the test process announces under the same prefix."""
    prefix = f"calpico_mp_{uuid.uuid4().hex[:12]}"
    layer = settings.CHANNEL_LAYERS["default"]
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "prefix": prefix}}}
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TZ") if os.environ.get(name)}
    env.update(
        DJANGO_SETTINGS_MODULE="calpico.settings",
        CALPICO_VAR_DIR=str(var_dir),
        # Sessions made here carry a hash keyed by the secret: the servers must share it.
        SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=_database_url(),
        REDIS_URL=settings.REDIS_URL,
        CHANNEL_LAYER_PREFIX=prefix,
        CACHE_KEY_PREFIX=prefix,
        ACCOUNT_RATE_LIMITS_ENABLED="false",
        PYTHONUNBUFFERED="1",
        # Small enough for a test to reach; the burst limit is left out (its 10 s window
        # could roll over mid-test).
        RATE_MESSAGES_PER_HOUR=str(HOURLY_LIMIT),
        RATE_MESSAGES_PER_10_SECONDS="0",
    )
    started = [_start(env, var_dir, "a"), _start(env, var_dir, "b")]
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        for server in started:
            _wait_until_serving(server, deadline)
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


def _session_for(user: User) -> str:
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.save()
    return session.session_key


@dataclass
class Person:
    user: User
    session_key: str


@pytest.fixture
def people(transactional_db) -> dict[str, Person]:
    users = {"alice": make_user("alice", "Alice Liddell"), "bob": make_user("bob", "Bob Builder")}
    return {name: Person(user, _session_for(user)) for name, user in users.items()}


@pytest.fixture
def room(people) -> Room:
    return services.do_create_group(people["alice"].user, "Trip planning", [people["bob"].user])


async def _open_socket(server: Server, person: Person, room: Room) -> ClientConnection:
    """A page's socket on this server; returns once the server said hello (groups joined)."""
    ws = await connect(
        f"ws://127.0.0.1:{server.port}/ws/?room={room.pk}",
        origin=server.origin,
        additional_headers={"Cookie": f"sessionid={person.session_key}"},
        open_timeout=DELIVERY_TIMEOUT,
    )
    hello = json.loads(await asyncio.wait_for(ws.recv(), DELIVERY_TIMEOUT))
    assert hello["type"] == "hello", hello
    return ws


async def _html_frame_containing(ws: ClientConnection, text: str) -> str:
    """The first HTML frame with `text`, skipping JSON frames (presence, unread)."""

    async def wait() -> str:
        while True:
            frame = await ws.recv()
            if isinstance(frame, str) and not frame.startswith("{") and text in frame:
                return frame

    return await asyncio.wait_for(wait(), DELIVERY_TIMEOUT)


async def _close_code(ws: ClientConnection) -> int:
    """The code the server closed this socket with, skipping whatever frames come first."""

    async def wait() -> int:
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "the server dropped the socket without a close frame"
            return closed.rcvd.code

    return await asyncio.wait_for(wait(), DELIVERY_TIMEOUT)


def _post_message(server: Server, person: Person, room: Room, body: str, expect: int = 302) -> str:
    """Send a message through this server the way the no-JS composer does; the page."""
    cookies = {"sessionid": person.session_key}
    page = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    page.request("GET", f"/r/{room.pk}/", headers={"Cookie": f"sessionid={person.session_key}"})
    response = page.getresponse()
    response.read()
    assert response.status == 200, response.status
    for header in response.headers.get_all("Set-Cookie") or []:
        cookies.update({name: morsel.value for name, morsel in SimpleCookie(header).items()})
    token = cookies["csrftoken"]
    page.request(
        "POST",
        f"/r/{room.pk}/messages/",
        body=urlencode({"body": body, "client_id": str(uuid.uuid4())}),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items()),
            "X-CSRFToken": token,
            "Origin": server.origin,
            "Referer": f"{server.origin}/r/{room.pk}/",
        },
    )
    response = page.getresponse()
    content = response.read().decode()
    page.close()
    # A successful no-JS send redirects to the message.
    assert response.status == expect, f"{response.status}: {server.log.read_text()[-2000:]}"
    return content


@sync_to_async
def _remove_member(actor: User, room: Room, user: User) -> None:
    try:
        services.do_remove_member(actor, room, user)
    finally:
        connection.close()  # this runs in a worker thread; leave no connection behind


async def test_a_message_posted_through_one_process_reaches_sockets_on_both(servers, people, room):
    """Alice posts through A: Bob's socket on B gets it, and so does Alice's on A; and back."""
    a, b = servers
    alice_ws = await _open_socket(a, people["alice"], room)
    bob_ws = await _open_socket(b, people["bob"], room)
    try:
        await asyncio.to_thread(_post_message, a, people["alice"], room, "Posted through A")
        frame = await _html_frame_containing(bob_ws, "Posted through A")
        assert 'hx-swap-oob="beforeend:#messages"' in frame
        await _html_frame_containing(alice_ws, "Posted through A")

        await asyncio.to_thread(_post_message, b, people["bob"], room, "Posted through B")
        await _html_frame_containing(alice_ws, "Posted through B")
        await _html_frame_containing(bob_ws, "Posted through B")
    finally:
        await alice_ws.close()
        await bob_ws.close()


async def test_removing_a_member_closes_their_socket_on_another_process(servers, people, room):
    """The owner removes Bob (here, in a third process): Bob's socket on B closes with 4403."""
    a, b = servers
    alice_ws = await _open_socket(a, people["alice"], room)
    bob_ws = await _open_socket(b, people["bob"], room)
    try:
        await _remove_member(people["alice"].user, room, people["bob"].user)
        assert await _close_code(bob_ws) == CLOSE_FORBIDDEN
        await _html_frame_containing(alice_ws, "removed Bob Builder")
    finally:
        await alice_ws.close()
        await bob_ws.close()


async def test_the_message_rate_limit_counts_across_processes(servers, people, room):
    """Alternating between two processes does not double anyone's allowance."""
    a, b = servers
    if time.time() % 3600 > 3570:  # the hourly window is about to roll over
        await asyncio.sleep(3601 - time.time() % 3600)
    for i in range(HOURLY_LIMIT):
        await asyncio.to_thread(_post_message, (a, b)[i % 2], people["alice"], room, f"message {i}")
    page = await asyncio.to_thread(_post_message, b, people["alice"], room, "one more", 422)
    assert "You are sending messages too often. Try again in" in unescape(page)
    page = await asyncio.to_thread(_post_message, a, people["alice"], room, "and via A", 422)
    assert "and via A" in page  # the refused text stays in the composer
    await asyncio.to_thread(_post_message, a, people["bob"], room, "bob is unaffected")
