"""Notifications when closed, under load: what Web Push costs a busy room.

A benchmark that prints figures, not a test. Like `bench/fanout.py` it starts a daphne
process serving Calpico (fresh var/, SQLite, or PostgreSQL and Redis with `--layer redis`),
puts `--clients` people (50) in one room with one open socket each, and posts `--messages`
at `--rate` per second (10) through the composer's endpoint, timing each message's arrival
at each socket. It does this twice, on a fresh server each time: first with no device
subscribed, then with every member's device subscribed to tests/fake_push.py (a push
service on 127.0.0.1 that checks VAPID and decrypts every push, as a real one would). The
job runner in the same daphne process sends the pushes (JOBS_RUNNER_IN_SERVER, the
default), so their cost shows in live delivery. It prints both phases' live delivery
latency, the pushes sent per second, how many a burst collapsed, and how long after the
last message the last push went out.

    .venv/bin/python bench/push.py                 # 50 people, 100 messages at 10/s, memory layer
    .venv/bin/python bench/push.py --layer redis   # PostgreSQL + Redis

docs/performance.md has the latest figures.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import fanout, server
from bench.fanout import Figures, ms, num0, num2, row


async def phase(
    bench: fanout.Bench, args: argparse.Namespace, drain_timeout: float
) -> tuple[Figures, float | None, float]:
    """The messages, then until the server has done every notification job they queued."""
    target = await bench.open_target("calpico")
    try:
        figures = await bench.run_phase(target, args.rate, args.messages)
        ended = time.monotonic()  # every live delivery is in (or the grace period is over)
        drained = await asyncio.to_thread(wait_for_jobs, drain_timeout)
        return figures, drained, ended
    finally:
        await target.close()


def subscribe_everyone(service) -> int:
    """A device for every person of the run (the ORM is set up by fanout.create_people)."""
    from accounts.models import User
    from notifications.models import PushSubscription

    rows = []
    for user in User.objects.filter(username__startswith="b"):
        subscription = service.subscription()
        rows.append(
            PushSubscription(
                user=user,
                endpoint=subscription["endpoint"],
                p256dh=subscription["keys"]["p256dh"],
                auth=subscription["keys"]["auth"],
                user_agent="bench",
            )
        )
    PushSubscription.objects.bulk_create(rows)
    return len(rows)


def wait_for_jobs(timeout: float) -> float | None:
    """Until no push job is queued or running; the seconds it took (None: still busy)."""
    from django.db import connections

    from jobs.models import Job

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        busy = Job.objects.filter(kind__startswith="notifications.").exclude(
            status__in=[Job.Status.DONE, Job.Status.FAILED]
        )
        if not busy.exists():
            connections.close_all()
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--layer", choices=["memory", "redis"], default="memory")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    ours = parser.parse_args(argv)
    args = fanout.parse_args(
        [
            "--clients",
            str(ours.clients),
            "--messages",
            str(ours.messages),
            "--rate",
            str(ours.rate),
            "--layer",
            ours.layer,
            "--postgres-url",
            ours.postgres_url,
            "--redis-url",
            ours.redis_url,
        ]
    )
    args.settle_limit = 15.0
    fanout.raise_open_file_limit()
    atexit.register(server.stop_all)
    work_dir = Path(tempfile.mkdtemp(prefix="calpico-bench-push-"))
    redis_url = ours.redis_url if ours.layer == "redis" else ""
    from tests.fake_push import FakePushService

    try:
        with ExitStack() as stack:
            service = stack.enter_context(FakePushService())
            database = server.throwaway_postgres(ours.postgres_url) if redis_url else nullcontext("")
            database_url = stack.enter_context(database)
            env = fanout.calpico_server_env(work_dir, database_url, redis_url, ours.clients + 1)
            env["PUSH_SERVICE_HOSTS"] = "127.0.0.1"
            print("migrating ...", flush=True)
            fanout.migrate(env)
            setup = fanout.create_people(env, ours.clients, ours.clients)
            bench = fanout.Bench(args, setup, work_dir, env)
            print("phase 1: no device subscribed", flush=True)
            without, _, _ = asyncio.run(phase(bench, args, ours.drain_timeout))
            devices = subscribe_everyone(service)
            print(f"phase 2: {devices} devices subscribed", flush=True)
            service.reset()
            with_push, drained, ended = asyncio.run(phase(bench, args, ours.drain_timeout))
            deliveries = list(service.deliveries)
            first = min((d.received_at for d in deliveries), default=None)
            last = max((d.received_at for d in deliveries), default=None)
            sending = (last - first) if first is not None and last is not None else None
            offered = (ours.clients - 1) * ours.messages
            print()
            print(
                f"Web Push under load: {ours.clients} people in one room, {ours.messages} messages at "
                f"{ours.rate:g}/s, {ours.layer} layer, one daphne process sending the pushes"
            )
            print(f"  {fanout.machine_notes()}")
            print()

            def latency(label: str, fraction: float):
                return row(label, with_push.pct(fraction), without.pct(fraction), ms, compare=True)

            print(f"  {'':<38} {'with push':>10} {'without':>10} {'ratio':>7}")
            for label, with_value, without_value, ratio in (
                latency("live delivery p50 (ms)", 0.5),
                latency("live delivery p95 (ms)", 0.95),
                latency("live delivery p99 (ms)", 0.99),
                row("live deliveries lost", with_push.lost, without.lost),
                row("server CPU s during the messages", with_push.server_cpu, without.server_cpu, num2),
            ):
                print(f"  {label:<38} {with_value:>10} {without_value:>10} {ratio:>7}")
            print()
            print(f"  notifications due (readers × messages) ...... {offered}")
            print(f"  pushes sent (bursts collapsed per device) .... {len(deliveries)}")
            print(f"  pushes refused by the push service ........... {len(service.rejected)}")
            per_second = len(deliveries) / sending if sending else None
            print(f"  pushes per second while sending .............. {num0(per_second)}")
            tail = (last - ended) if last is not None else None
            print(f"  last push after live delivery ended (s) ...... {num2(tail)}")
            print(f"  queue drained after the phase (s) ............ {num2(drained)}")
        return 0
    finally:
        server.stop_all()
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
