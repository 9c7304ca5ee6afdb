"""The cache on Redis answers as an empty cache while Redis cannot be reached
(calpico/cache.py), without costing a timeout per call."""

import logging
import socket
import time
import uuid
from types import SimpleNamespace

import pytest
from django.core.cache import caches

from calpico import cache as fail_soft
from calpico.settings import redis_caches
from tests.redis_server import own_redis  # noqa: F401 (a fixture)

TIMEOUT = 0.3


@pytest.fixture
def hung_redis():
    """A port that takes connections and never answers, like a Redis that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(100)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def configure(settings, url):
    settings.CACHES = redis_caches(url, f"calpico-test-{uuid.uuid4().hex}")
    for conf in settings.CACHES.values():
        conf["OPTIONS"] = {"socket_connect_timeout": TIMEOUT, "socket_timeout": TIMEOUT}
    return caches["default"]


def test_a_hung_redis_costs_one_timeout_a_second_not_one_per_call(settings, hung_redis, caplog):
    cache = configure(settings, hung_redis)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger="calpico.cache"):
        for i in range(20):
            assert cache.get(f"session-key-{i}") is None
            cache.set(f"session-key-{i}", "secret message body")
            assert cache.add("lock", True) is True  # allauth's lock: taken, so it lets through
            with pytest.raises(ValueError):
                cache.incr("counter")
            assert cache.get_many(["a", "b"]) == {}
    elapsed = time.monotonic() - started
    assert elapsed < fail_soft.RETRY_SECONDS, elapsed  # one failed call, 99 answered at once
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "secret message body" not in caplog.text and "session-key" not in caplog.text


def test_it_tries_again_after_the_retry_delay(settings, own_redis, monkeypatch):  # noqa: F811
    clock = [1000.0]
    monkeypatch.setattr(fail_soft, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    cache = configure(settings, own_redis.url)
    cache.set("kept", "value")
    own_redis.stop()
    assert cache.get("kept") is None
    own_redis.start()  # empty: nothing on disk
    cache.set("kept", "again")  # not tried yet
    assert cache.get("kept", "missing") == "missing"
    clock[0] += fail_soft.RETRY_SECONDS
    cache.set("kept", "again")
    assert cache.get("kept") == "again"


def test_sessions_are_cached_for_minutes_not_for_their_whole_life(settings, own_redis):  # noqa: F811
    configure(settings, own_redis.url)
    sessions = caches[settings.SESSION_CACHE_ALIAS]
    sessions.set("session", "data", 30 * 24 * 3600)
    sessions.set("forever", "data", None)
    import redis

    raw = redis.Redis.from_url(own_redis.url)
    ttls = [raw.ttl(key) for key in raw.keys("*")]
    assert len(ttls) == 2 and all(0 < ttl <= settings.SESSION_CACHE_SECONDS for ttl in ttls)
