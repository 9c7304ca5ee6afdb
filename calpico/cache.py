"""The cache on Redis, as a fast path that may fail without failing the request.

Everything Calpico keeps in the cache can be done without: sessions are in the database
too, rate limits (ours and allauth's) let everything through, presence shows nobody
online. So while Redis cannot be reached, this backend answers as an empty cache that
accepts every write: reads miss, `add` succeeds, `incr` finds no key, writes do nothing.
The failure is logged (the operation and the error, never a key or a value: keys hold
session ids).

A Redis that is down costs one connection timeout; after a failure the backend does not try
again for `RETRY_SECONDS`, so a dead Redis costs at most one timeout per second per process,
not one per call.

A Redis that was only unreachable may still hold what could not be changed meanwhile: a
signed-out session's cached copy, say. Every key written or deleted in vain is deleted once
Redis answers again, before anything else is asked of it (by this process; the cap on
cached sessions, `MAX_TIMEOUT`, bounds what a process that stopped meanwhile leaves behind).
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

UNREACHABLE = (RedisConnectionError, RedisTimeoutError)
RETRY_SECONDS = 1.0
# Keys to delete once Redis answers again; beyond this many, the oldest are given up.
MAX_FORGOTTEN_KEYS = 10_000

T = TypeVar("T")
_NOT_FOUND = object()


class _Outage:
    """What the processes' caches on one Redis know about it being unreachable."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failing = False
        self.retry_at = 0.0
        self.to_delete: dict[str, None] = {}  # ordered, for giving up the oldest


_outages: dict[str, _Outage] = {}
_outages_lock = threading.Lock()


class FailSoftRedisCache(RedisCache):
    """Django's Redis cache, answering as an empty cache while Redis cannot be reached.

    `MAX_TIMEOUT` (seconds, beside `TIMEOUT` in CACHES) caps every entry's lifetime.
    """

    # Set by RedisCache (not in django-stubs): the server URLs and the Redis client.
    _servers: list[str]
    _cache: Any

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self.max_timeout: int | None = params.get("MAX_TIMEOUT")
        with _outages_lock:
            self._outage = _outages.setdefault(",".join(self._servers), _Outage())

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> float | None:
        seconds = super().get_backend_timeout(timeout)
        if self.max_timeout is not None and (seconds is None or seconds > self.max_timeout):
            return self.max_timeout
        return seconds

    @property
    def unreachable(self) -> bool:
        """Whether Redis failed to answer and is not being asked again yet: reads miss."""
        outage = self._outage
        return outage.failing and time.monotonic() < outage.retry_at

    def _try(self, action: str, call: Callable[[], T], fallback: T, written: Iterable[str] = ()) -> T:
        outage = self._outage
        if outage.failing and time.monotonic() < outage.retry_at:
            self._forget_later(written)
            return fallback
        if outage.to_delete and not self._delete_forgotten():
            self._forget_later(written)
            return fallback
        try:
            result = call()
        except UNREACHABLE as error:
            self._failed(action, error)
            self._forget_later(written)
            return fallback
        if outage.failing:
            outage.failing = False
            log.info("Cache reachable again")
        return result

    def _failed(self, action: str, error: Exception) -> None:
        outage = self._outage
        if not outage.failing:
            log.warning(
                "Cache unreachable (%s: %s: %s); answering as a miss, trying again in %s s",
                action,
                type(error).__name__,
                error,
                RETRY_SECONDS,
            )
        outage.failing = True
        outage.retry_at = time.monotonic() + RETRY_SECONDS

    def _forget_later(self, keys: Iterable[str]) -> None:
        outage = self._outage
        with outage.lock:
            for key in keys:
                outage.to_delete[key] = None
            while len(outage.to_delete) > MAX_FORGOTTEN_KEYS:
                del outage.to_delete[next(iter(outage.to_delete))]

    def _delete_forgotten(self) -> bool:
        """Delete what could not be changed during the outage; False if still unreachable."""
        outage = self._outage
        with outage.lock:
            keys, outage.to_delete = list(outage.to_delete), {}
        try:
            if keys:
                self._cache.delete_many(keys)
        except UNREACHABLE as error:
            self._forget_later(keys)
            self._failed("delete", error)
            return False
        return True

    # Django's RedisCache methods, each answering as an empty cache while Redis is away.

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._try(
            "add", lambda: self._cache.add(key, value, self.get_backend_timeout(timeout)), True, [key]
        )

    def add_or_touch_many(
        self, keys: Iterable[Any], value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[bool]:
        """For each key, `add` it, or `touch` it when it is there, all in one round trip
        (presence: rooms/presence.py). Which were added; all of them while Redis is away,
        as `add` answers then."""
        safe = [self.make_and_validate_key(key, version=version) for key in keys]
        seconds = self.get_backend_timeout(timeout)

        def call() -> list[bool]:
            if seconds == 0:  # expired at once, as Django's add would have it
                self._cache.delete_many(safe)
                return [True] * len(safe)
            pipeline = self._cache.get_client(write=True).pipeline(transaction=False)
            stored = self._cache._serializer.dumps(value)
            for key in safe:
                pipeline.set(key, stored, ex=seconds, nx=True)
                if seconds is not None:
                    pipeline.expire(key, seconds)
            results = pipeline.execute()
            return [bool(added) for added in results[:: 1 if seconds is None else 2]]

        if not safe:
            return []
        return self._try("add_or_touch_many", call, [True] * len(safe), safe)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        return self._try("get", lambda: self._cache.get(key, default), default)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        key = self.make_and_validate_key(key, version=version)
        self._try("set", lambda: self._cache.set(key, value, self.get_backend_timeout(timeout)), None, [key])

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._try("touch", lambda: self._cache.touch(key, self.get_backend_timeout(timeout)), False)

    def delete(self, key: Any, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._try("delete", lambda: self._cache.delete(key), False, [key])

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return self._try("get_many", lambda: super(FailSoftRedisCache, self).get_many(keys, version), {})

    def has_key(self, key: Any, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._try("has_key", lambda: self._cache.has_key(key), False)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        key = self.make_and_validate_key(key, version=version)
        result: Any = self._try("incr", lambda: self._cache.incr(key, delta), _NOT_FOUND, [key])
        if result is _NOT_FOUND:
            raise ValueError("Key not found (the cache is unreachable).")
        return int(result)

    def set_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list:
        safe = {self.make_and_validate_key(key, version=version): value for key, value in data.items()}
        if safe:
            self._try(
                "set_many", lambda: self._cache.set_many(safe, self.get_backend_timeout(timeout)), None, safe
            )
        return []

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        safe = [self.make_and_validate_key(key, version=version) for key in keys]
        if safe:
            self._try("delete_many", lambda: self._cache.delete_many(safe), None, safe)

    def clear(self) -> None:
        self._try("clear", lambda: self._cache.clear(), None)
