"""Redis down or restarting: signed-in people keep their pages, nothing posted is lost.

Redis holds the cache (sessions' fast copy, rate-limit counters, presence) and the channel
layer. Each test runs a redis-server of its own (tests/redis_server.py) and stops it.
"""

import asyncio
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import reverse
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from calpico.settings import redis_caches
from rooms import services
from rooms.consumers import CLOSE_RECONNECT
from rooms.models import Message, Room
from tests.conftest import client_for, make_user
from tests.redis_server import own_redis  # noqa: F401 (a fixture)
from tests.test_multiprocess import (
    DELIVERY_TIMEOUT,
    STARTUP_TIMEOUT,
    Person,
    Server,
    _database_url,
    _open_socket,
    _post_message,
    _session_for,
    _start,
    _wait_until_serving,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_cache(settings, own_redis):  # noqa: F811
    """The caches as configured with REDIS_URL (sessions, rate limits, presence), on the
    test's own Redis."""
    settings.CACHES = redis_caches(own_redis.url, f"calpico-test-{uuid.uuid4().hex}")
    settings.RATE_MESSAGES_PER_10_SECONDS = 10
    settings.RATE_MESSAGES_PER_HOUR = 300
    return own_redis


def post(client, chat, body):
    return client.post(
        reverse("rooms:post_message", args=[chat.pk]), {"body": body, "client_id": str(uuid.uuid4())}
    )


def test_signed_in_pages_load_while_redis_is_down(alice, group, redis_cache, caplog):
    """Sessions are read from the database when the cache cannot be reached."""
    client = client_for(alice)
    assert client.get(reverse("rooms:room", args=[group.pk])).status_code == 200

    redis_cache.stop()
    with caplog.at_level(logging.WARNING):
        for url in (reverse("rooms:index"), reverse("rooms:room", args=[group.pk]), reverse("rooms:sidebar")):
            response = client.get(url)
            assert response.status_code == 200, url
            assert b"Trip planning" in response.content
    assert "cache" in caplog.text.lower()


def test_posting_works_while_redis_is_down(alice, group, redis_cache, settings):
    """The message rate limits fail open (docs/safety.md): every message is stored, none
    refused, nobody sees a 500."""
    client = client_for(alice)
    redis_cache.stop()
    for i in range(settings.RATE_MESSAGES_PER_10_SECONDS + 2):
        assert post(client, group, f"Sent during the outage {i}").status_code == 302
    assert Message.objects.filter(room=group, body__startswith="Sent during the outage").count() == (
        settings.RATE_MESSAGES_PER_10_SECONDS + 2
    )


def test_signing_out_works_while_redis_is_down(alice, group, redis_cache):
    """The session is removed from the database, so it is gone for good."""
    client = client_for(alice)
    redis_cache.stop()
    assert client.post(reverse("account_logout")).status_code == 302
    assert client.get(reverse("rooms:room", args=[group.pk])).status_code == 302


def test_signing_in_and_up_and_the_password_forms_answer_while_redis_is_down(alice, redis_cache, client):
    """allauth's rate limits keep their counts in the cache; during an outage they let
    everything through, like ours (docs/safety.md)."""
    from tests.conftest import PASSWORD

    alice.email = "alice@example.com"
    alice.save()
    redis_cache.stop()
    response = client.post(reverse("account_login"), {"login": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("rooms:index")).status_code == 200
    new_password = "a brand new passphrase"
    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": new_password, "password2": new_password},
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(new_password)
    assert client.get(reverse("rooms:index")).status_code == 200

    visitor = Client()
    response = visitor.post(reverse("account_reset_password"), {"email": "alice@example.com"})
    assert response.status_code == 302
    response = visitor.post(
        reverse("account_signup"),
        {"username": "newcomer", "password1": new_password, "password2": new_password},
    )
    assert response.status_code == 302
    assert visitor.get(reverse("rooms:index")).status_code == 200


def test_a_sign_out_that_could_not_reach_redis_stays_signed_out_once_it_answers(
    alice, group, redis_cache, settings, monkeypatch
):
    """Redis keeps its data but cannot be reached for a moment, just when someone signs out:
    the session's cached copy could not be deleted. It is deleted as soon as Redis answers
    again, before anything is read from it, so the session does not come back."""
    import redis

    client = client_for(alice)
    assert client.get(reverse("rooms:index")).status_code == 200  # the session is cached
    stolen = Client()
    stolen.cookies["sessionid"] = client.cookies["sessionid"].value

    def unreachable(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Error 111 connecting. Connection refused.")

    with monkeypatch.context() as blip:
        blip.setattr(redis.Redis, "delete", unreachable)
        assert client.post(reverse("account_logout")).status_code == 302
    # Not waiting out the retry delay: the cache is tried again at once.
    monkeypatch.setattr("calpico.cache.RETRY_SECONDS", 0)
    assert stolen.get(reverse("rooms:room", args=[group.pk])).status_code == 302


def test_sessions_come_back_to_the_cache_when_redis_returns(alice, group, redis_cache):
    client = client_for(alice)
    redis_cache.stop()
    assert client.get(reverse("rooms:index")).status_code == 200
    redis_cache.start()
    assert client.get(reverse("rooms:index")).status_code == 200
    assert post(client, group, "After the outage").status_code == 302


# Redis restarting under two server processes


@dataclass
class Page:
    """A room page's socket as static/js/live.js drives it: on 4012 it reconnects and sends
    `resume` with the last sequence number it holds."""

    server: Server
    person: Person
    room: Room
    last_seq: int = 0
    resumed: int = 0
    ws: ClientConnection | None = None

    async def open(self) -> None:
        self.ws = await _open_socket(self.server, self.person, self.room)
        await self.ws.send(json.dumps({"type": "resume", "room": self.room.pk, "last_seq": self.last_seq}))

    async def receive_all(self, texts: list[str], timeout: float) -> None:
        """Until every text has shown on this page, directly or by resuming."""
        missing = set(texts)

        async def wait() -> None:
            while missing:
                try:
                    frame = await self.ws.recv()
                except ConnectionClosed as closed:
                    assert closed.rcvd is not None and closed.rcvd.code == CLOSE_RECONNECT, closed
                    self.resumed += 1
                    await self.open()
                    continue
                if frame.startswith("{"):
                    continue
                self.last_seq = max([self.last_seq, *map(int, re.findall(r'data-seq="(\d+)"', frame))])
                missing.difference_update(text for text in texts if text in frame)

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            pytest.fail(f"{self.person.user} on :{self.server.port} never got {sorted(missing)}")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


@pytest.fixture
def servers_on_own_redis(transactional_db, settings, tmp_path, own_redis):  # noqa: F811
    """Two daphne processes on the test database and a Redis of the test's own."""
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TZ") if os.environ.get(name)}
    env.update(
        DJANGO_SETTINGS_MODULE="calpico.settings",
        CALPICO_VAR_DIR=str(var_dir),
        SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=_database_url(),
        REDIS_URL=own_redis.url,
        ACCOUNT_RATE_LIMITS_ENABLED="false",
        PYTHONUNBUFFERED="1",
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


@pytest.fixture
def chatters(transactional_db) -> dict[str, Person]:
    users = {"alice": make_user("alice", "Alice Liddell"), "bob": make_user("bob", "Bob Builder")}
    return {name: Person(user, _session_for(user)) for name, user in users.items()}


@pytest.fixture
def chat(chatters) -> Room:
    return services.do_create_group(chatters["alice"].user, "Trip planning", [chatters["bob"].user])


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
async def test_every_open_page_gets_what_was_posted_right_after_redis_restarts(
    servers_on_own_redis,
    chatters,
    chat,
    own_redis,  # noqa: F811
):
    """Redis restarts under two processes; messages posted through both right after it is
    back reach every open page, live or because the page was told to resume (4012)."""
    a, b = servers_on_own_redis
    alice, bob = chatters["alice"], chatters["bob"]
    pages = [Page(a, alice, chat), Page(b, bob, chat), Page(b, alice, chat), Page(a, bob, chat)]
    for page in pages:
        await page.open()
    try:
        await asyncio.to_thread(_post_message, a, alice, chat, "Before the restart")
        for page in pages:
            await page.receive_all(["Before the restart"], DELIVERY_TIMEOUT)

        await asyncio.to_thread(own_redis.restart)
        sent = []
        for i, server in enumerate((a, b, a, b)):
            text = f"Right after the restart {i}"
            await asyncio.to_thread(_post_message, server, (alice, bob)[i % 2], chat, text)
            sent.append(text)

        for page in pages:
            await page.receive_all(sent, 3 * DELIVERY_TIMEOUT)
        # Every process lost its subscription for a moment, so every page was told to resume.
        assert [page.resumed for page in pages] == [1, 1, 1, 1]
    finally:
        for page in pages:
            await page.close()
