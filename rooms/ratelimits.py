"""Rate limits that hold across processes: counters in the cache (Redis in production).

Each limit counts hits per key (a user, an IP address) in fixed windows: `cache.add` opens
the window's counter and `cache.incr` is atomic on Redis and on the local-memory cache, so
several processes share one count. A fixed window may let through up to twice the limit
around a window's edge; for spam that is close enough, and it costs one round trip.

While the cache cannot be reached (Redis down), limits fail open: the cache answers as an
empty one (calpico/cache.py logs it), so nothing is counted and everything is let through;
allauth's limits on signing in, signing up and password resets do the same. An outage of
a few minutes should not stop a chat; the limits are there against spam, not for anyone's
safety (invite tokens are unguessable without the failed-joins limit). docs/safety.md says
the same.
"""

import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError


@dataclass(frozen=True)
class Limit:
    name: str
    count: int
    seconds: int
    # What the person is doing too often, for the message: "sending messages".
    doing: str


class RateLimited(ValidationError):
    def __init__(self, limit: Limit, retry_after: int) -> None:
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(
            f"You are {limit.doing} too often. Try again in {describe_wait(retry_after)}.",
            code="rate_limited",
        )


def describe_wait(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if seconds < 3600:
        minutes = math.ceil(seconds / 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = math.ceil(seconds / 3600)
    return f"{hours} hour{'s' if hours != 1 else ''}"


def hit(limit: Limit, key: str | int, *, amount: int = 1) -> None:
    """Count one more (or `amount` more: bytes), or raise RateLimited saying when to try again."""
    if limit.count <= 0:
        return  # a limit of 0 is switched off
    now = time.time()
    window = int(now // limit.seconds)
    cache_key = f"ratelimit:{limit.name}:{key}:{window}"
    cache.add(cache_key, 0, timeout=limit.seconds + 5)
    try:
        count = cache.incr(cache_key, amount)
    except ValueError:  # evicted between add and incr, or the cache is unreachable
        cache.set(cache_key, amount, timeout=limit.seconds + 5)
        count = amount
    if count > limit.count:
        retry_after = max(1, math.ceil((window + 1) * limit.seconds - now))
        raise RateLimited(limit, retry_after)


def peek(limit: Limit, key: str | int) -> bool:
    """True if the next hit would be refused (for failed-join counting before the work)."""
    if limit.count <= 0:
        return False
    window = int(time.time() // limit.seconds)
    count = cache.get(f"ratelimit:{limit.name}:{key}:{window}") or 0
    return count >= limit.count


def messages_burst() -> Limit:
    return Limit("messages-burst", settings.RATE_MESSAGES_PER_10_SECONDS, 10, "sending messages")


def messages_sustained() -> Limit:
    return Limit("messages-hour", settings.RATE_MESSAGES_PER_HOUR, 3600, "sending messages")


def attachment_bytes() -> Limit:
    """Bytes of images and files one person attaches per day (counted per file as stored)."""
    return Limit(
        "attachment-bytes-day", settings.RATE_ATTACHMENT_MB_PER_DAY * 1024 * 1024, 86400, "sending files"
    )


def invites_created() -> Limit:
    return Limit("invites-hour", settings.RATE_INVITES_PER_HOUR, 3600, "creating invite links")


def strangers_messaged() -> Limit:
    return Limit("strangers-day", settings.RATE_STRANGERS_PER_DAY, 86400, "messaging people you don't know")


def failed_joins() -> Limit:
    return Limit("failed-joins-hour", settings.RATE_FAILED_JOINS_PER_HOUR, 3600, "trying invite links")


def reactions_burst() -> Limit:
    return Limit("reactions-burst", settings.RATE_REACTIONS_PER_10_SECONDS, 10, "reacting")


def reactions_sustained() -> Limit:
    return Limit("reactions-hour", settings.RATE_REACTIONS_PER_HOUR, 3600, "reacting")
