"""Redis down or restarting: signed-in people keep their pages, nothing posted is lost.

Redis holds the cache (sessions' fast copy, rate-limit counters, presence) and the channel
layer. Each test runs a redis-server of its own (tests/redis_server.py) and stops it.
"""

import logging
import uuid

import pytest
from django.urls import reverse

from rooms.models import Message
from tests.conftest import client_for
from tests.redis_server import own_redis  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_cache(settings, own_redis):  # noqa: F811
    """The cache (and so the cached sessions and the rate limits) on the test's own Redis."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": own_redis.url,
            "KEY_PREFIX": f"calpico-test-{uuid.uuid4().hex}",
        }
    }
    settings.RATE_MESSAGES_PER_10_SECONDS = 10
    settings.RATE_MESSAGES_PER_HOUR = 300
    return own_redis


def post(client, room, body):
    return client.post(
        reverse("rooms:post_message", args=[room.pk]), {"body": body, "client_id": str(uuid.uuid4())}
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


def test_sessions_come_back_to_the_cache_when_redis_returns(alice, group, redis_cache):
    client = client_for(alice)
    redis_cache.stop()
    assert client.get(reverse("rooms:index")).status_code == 200
    redis_cache.start()
    assert client.get(reverse("rooms:index")).status_code == 200
    assert post(client, group, "After the outage").status_code == 302
