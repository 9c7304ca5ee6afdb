"""Sessions in the database with a copy in the cache, that keep working when the cache fails.

Django's `cached_db` engine reads a session from the cache (Redis in production) and falls
back to the database, but a cache that cannot be reached on the write back, on `exists`
or on delete turns every signed-in request into a 500. Here each cache call that fails is
logged and treated as a miss: the database, which holds every session anyway, answers.

A session deleted (signing out) while Redis is unreachable may survive in a Redis that
kept its data; its cached copy lives at most `SESSION_CACHE_SECONDS`.
"""

import logging
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends import cached_db

log = logging.getLogger(__name__)


class _CacheThatMayFail:
    """The few cache calls `cached_db` makes, each one allowed to fail."""

    def __init__(self, cache) -> None:
        self._cache = cache

    def _failed(self, action: str, error: Exception) -> None:
        log.warning("Session cache unavailable (%s: %s); using the database", action, error)

    def _timeout(self, timeout: int | None) -> int:
        if timeout is None:
            return settings.SESSION_CACHE_SECONDS
        return min(timeout, settings.SESSION_CACHE_SECONDS)

    def get(self, key: str) -> Any:
        try:
            return self._cache.get(key)
        except Exception as error:
            self._failed("get", error)
            return None

    async def aget(self, key: str) -> Any:
        try:
            return await self._cache.aget(key)
        except Exception as error:
            self._failed("get", error)
            return None

    def set(self, key: str, value: Any, timeout: int | None = None) -> None:
        try:
            self._cache.set(key, value, self._timeout(timeout))
        except Exception as error:
            self._failed("set", error)

    async def aset(self, key: str, value: Any, timeout: int | None = None) -> None:
        try:
            await self._cache.aset(key, value, self._timeout(timeout))
        except Exception as error:
            self._failed("set", error)

    def delete(self, key: str) -> None:
        try:
            self._cache.delete(key)
        except Exception as error:
            self._failed("delete", error)

    async def adelete(self, key: str) -> None:
        try:
            await self._cache.adelete(key)
        except Exception as error:
            self._failed("delete", error)

    def __contains__(self, key: str) -> bool:
        try:
            return key in self._cache
        except Exception as error:
            self._failed("exists", error)
            return False

    def __str__(self) -> str:
        return str(self._cache)


class SessionStore(cached_db.SessionStore):
    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._cache = _CacheThatMayFail(self._cache)  # type: ignore[has-type]  # set by cached_db
