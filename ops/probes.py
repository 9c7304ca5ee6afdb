"""/healthz, /readyz and /metrics: answered before anything else a request goes through.

`ProbesMiddleware` sits right after the trusted-proxy middleware, so a probe costs no
session, no host check and no redirect to HTTPS: a proxy or Prometheus may ask a daphne
port directly, by any name, every few seconds.

- /healthz: the process answers (no database, no Redis). For liveness.
- /readyz: the database answers (503 if not); the channel layer's and the cache's Redis
  are checked too but only reported as `degraded` (a Redis outage hits every process
  alike and pages work without it), unless `?strict` makes them count. For a proxy's
  health checks and a rolling restart. 503 `stopping` while the process drains before it
  stops (calpico/shutdown.py).
- /metrics: the Prometheus text format, to `METRICS_ALLOWED_ADDRESSES` (addresses or
  networks, as the trusted-proxy middleware resolved the client) or to a request carrying
  `Authorization: Bearer <METRICS_TOKEN>`; 403 to anyone else.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hmac
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import redis
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from assistant.models import AssistantRun
from calpico import shutdown
from jobs.models import Job

log = logging.getLogger(__name__)

PROBE_PATHS = ("/healthz", "/readyz", "/metrics")
REDIS_TIMEOUT = 1.0


class ProbesMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.allowed = [
            ipaddress.ip_network(entry, strict=False) for entry in settings.METRICS_ALLOWED_ADDRESSES
        ]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info.rstrip("/")
        if path not in PROBE_PATHS:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = HttpResponse("Only GET.\n", status=405, content_type="text/plain")
            response["Allow"] = "GET, HEAD"
            return response
        if path == "/healthz":
            response = HttpResponse("ok\n", content_type="text/plain")
        elif path == "/readyz":
            if shutdown.draining():
                response = stopping()
                shutdown.readiness_asked()
            else:
                response = readiness(strict="strict" in request.GET)
        else:
            response = metrics(request, self.allowed)
        response["Cache-Control"] = "no-store"
        return response


# Readiness


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


_redis_clients: dict[str, redis.Redis] = {}


def _ping(url: str) -> None:
    client = _redis_clients.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT)
        _redis_clients[url] = client
    client.ping()


def check_channel_layer() -> None:
    """The layer's Redis answers (the in-memory layer always does)."""
    layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
    for host in layer.get("CONFIG", {}).get("hosts", []):
        _ping(host if isinstance(host, str) else host["address"])


def check_cache() -> None:
    """The cache's Redis answers. Asked directly: the fail-soft cache (calpico/cache.py)
    would answer a read as a miss while Redis is down."""
    cache: Any = caches["default"]
    client = getattr(cache, "_cache", None)
    if client is not None and hasattr(client, "get_client"):
        client.get_client(write=True).ping()


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "channel_layer": check_channel_layer,
    "cache": check_cache,
}


# What a process needs to serve pages: without the database it cannot, so the proxy must
# leave it out. Redis (live updates, the cache's rate limits) is shared by every process:
# when it fails, it fails for all of them, and pages keep working without it (calpico/cache.py
# fails soft, pages reload instead of updating live), so it only makes the process degraded.
ESSENTIAL = frozenset({"database"})


def stopping() -> HttpResponse:
    """/readyz while the process drains before it stops (calpico/shutdown.py): the proxy
    takes it out of rotation; it still serves what is sent meanwhile."""
    return JsonResponse({"ready": False, "stopping": True}, status=503)


def readiness(strict: bool = False) -> HttpResponse:
    """200 when this process can serve: the database answers. A Redis that does not answer
    is listed under `degraded` (a 503 with `strict`, for a deploy script that wants all)."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            log.warning("Readiness: %s failed: %s", name, type(exc).__name__)
            results[name] = "failed"
    broken = [name for name, result in results.items() if result != "ok"]
    failed = broken if strict else [name for name in broken if name in ESSENTIAL]
    degraded = [name for name in broken if name not in failed]
    return JsonResponse(
        {"ready": not failed, "checks": results, "failed": failed, "degraded": degraded},
        status=503 if failed else 200,
    )


# Metrics


def metrics_allowed(request: HttpRequest, allowed: list[Any]) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in allowed)


class DatabaseCollector(Collector):
    """What waits in the database, read once per scrape (the same from every process)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runs = GaugeMetricFamily(
            "calpico_assistant_runs",
            "Assistant runs queued or running now, by kind.",
            labels=["kind", "status"],
        )
        waiting = (
            AssistantRun.objects.filter(status__in=[AssistantRun.Status.QUEUED, AssistantRun.Status.RUNNING])
            .values_list("kind", "status")
            .annotate(count=Count("id"))
        )
        for kind, status, count in waiting:
            runs.add_metric([kind, status], count)
        yield runs
        depth = GaugeMetricFamily(
            "calpico_queue_depth",
            "Work waiting to be claimed: queued assistant runs, and durable jobs due now by kind.",
            labels=["queue"],
        )
        depth.add_metric(
            ["assistant"], AssistantRun.objects.filter(status=AssistantRun.Status.QUEUED).count()
        )
        jobs = Job.objects.filter(status=Job.Status.QUEUED).values_list("kind").annotate(count=Count("id"))
        for kind, count in jobs:
            depth.add_metric([f"jobs:{kind}"], count)
        yield depth
        running = GaugeMetricFamily(
            "calpico_jobs_running", "Durable jobs running now, by kind.", labels=["kind"]
        )
        for kind, count in (
            Job.objects.filter(status=Job.Status.RUNNING).values_list("kind").annotate(count=Count("id"))
        ):
            running.add_metric([kind], count)
        yield running


_PID_FILE = re.compile(r"^(counter|histogram|summary|gauge_\w+?)_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def sweep_dead_processes(directory: str) -> None:
    """Fold the files of processes that died into one archive file per type, so a scrape
    reads a bounded number of files however often processes restart.

    Counters, histograms and summaries: a dead process's values are added to
    `<type>_archive.db` (the totals stay the same) and its file removed. Gauges of a dead
    process (open sockets, `live*`) are simply removed. A lock in the directory keeps two
    scrapes from folding the same file twice, or one from reading a file another is
    folding (`metrics_lock`, held by the caller across the sweep and the collection)."""
    for path in sorted(glob.glob(os.path.join(directory, "*_*.db"))):
        match = _PID_FILE.match(os.path.basename(path))
        if match is None or _alive(int(match.group(2))):
            continue
        kind, pid = match.group(1), int(match.group(2))
        if kind.startswith("gauge_"):
            if kind.startswith("gauge_live"):
                mark_process_dead(pid, directory)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            continue
        try:
            values = list(MmapedDict.read_all_values_from_file(path))
        except FileNotFoundError:
            continue
        except (OSError, RuntimeError):
            log.warning("Metrics: dropping an unreadable file %s", path)
            values = []
        if values:
            archive = MmapedDict(os.path.join(directory, f"{kind}_archive.db"))
            try:
                for key, value, timestamp, _ in values:
                    total, _ = archive.read_value(key)
                    archive.write_value(key, total + value, timestamp)
            finally:
                archive.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def metrics_lock(directory: str) -> Iterator[None]:
    """One scrape at a time per host: a sweep removes files another scrape may be reading."""
    with open(os.path.join(directory, "sweep.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def metrics(request: HttpRequest, allowed: list[Any]) -> HttpResponse:
    if not metrics_allowed(request, allowed):
        return HttpResponse(
            "Metrics are not served to this address.\n", status=403, content_type="text/plain"
        )
    directory = settings.PROMETHEUS_MULTIPROC_DIR
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        with metrics_lock(directory):
            sweep_dead_processes(directory)
            output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    try:
        database = CollectorRegistry()
        database.register(DatabaseCollector())
        output += generate_latest(database)
    except Exception:
        log.exception("Metrics: could not read the database")
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)
