"""What opening a room costs the server: its page with the newest 50 messages.

A benchmark that prints figures, not a test. It starts one daphne process serving Calpico
(fresh var/ directory; SQLite, or PostgreSQL with `--database postgres`), fills two rooms
of 50 members with `--sizes` messages each (written in bulk with the ORM), and asks for
each room's page as one signed-in member, one request at a time: the first request (no
message rendered yet), then `--requests` more. It prints, per room, the server's CPU per
page (from the process's own accounting), the time to the last byte at p50 and p99, the
queries the page ran and the HTML's size.

    .venv/bin/python bench/pages.py                      # rooms of 100 and 100,000 messages
    .venv/bin/python bench/pages.py --priority -10       # on a shared machine (root)

docs/performance.md has the latest figures.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import server
from bench.fanout import calpico_server_env, create_people, migrate


def fill_room(room_id: int, author_id: int, count: int) -> None:
    """`count` messages of ordinary length with markdown, numbered as the service does."""
    from django.db import transaction
    from django.utils import timezone

    from rooms.models import Message, Room

    now = timezone.now()
    batch = 5000
    with transaction.atomic():
        room = Room.objects.select_for_update().get(pk=room_id)
        start = room.last_seq
        for first in range(0, count, batch):
            Message.objects.bulk_create(
                Message(
                    room_id=room_id,
                    seq=start + i + 1,
                    author_id=author_id,
                    body=f"message {i}: the quick brown fox jumps over the **lazy** dog",
                    html=f"<p>message {i}: the quick brown fox jumps over the <strong>lazy</strong> dog</p>",
                    created_at=now,
                )
                for i in range(first, min(count, first + batch))
            )
        last = Message.objects.get(room_id=room_id, seq=start + count)
        Room.objects.filter(pk=room_id).update(last_seq=last.seq, last_message=last, last_activity_at=now)


def get(conn: http.client.HTTPConnection, path: str, cookie: str) -> tuple[float, int, int]:
    """(seconds to the last byte, status, body bytes)."""
    start = time.perf_counter()
    conn.request("GET", path, headers={"Cookie": cookie})
    response = conn.getresponse()
    body = response.read()
    return time.perf_counter() - start, response.status, len(body)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def count_queries(env: dict[str, str], room_id: int, user_id: int) -> int:
    """The page's queries, counted in this process with Django's test client."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.models import User

    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(User.objects.get(pk=user_id))
    client.get(f"/r/{room_id}/")
    with CaptureQueriesContext(connection) as queries:
        client.get(f"/r/{room_id}/")
    return len(queries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,100000", help="messages in each room (default 100,100000)")
    parser.add_argument("--requests", type=int, default=60, help="page views per room after the first")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--priority", type=int, default=0, metavar="NICE", help="nice value (e.g. -10)")
    args = parser.parse_args(argv)
    if args.priority:
        os.setpriority(os.PRIO_PROCESS, 0, args.priority)
    sizes = [int(s) for s in args.sizes.split(",")]
    work_dir = Path(tempfile.mkdtemp(prefix="calpico-pages-"))
    try:
        with ExitStack() as stack:
            on_postgres = args.database == "postgres"
            database_url = stack.enter_context(
                server.throwaway_postgres(args.postgres_url) if on_postgres else nullcontext("")
            )
            env = calpico_server_env(work_dir, database_url, "", 51)
            print(f"migrating a fresh {'PostgreSQL' if database_url else 'SQLite'} database ...", flush=True)
            migrate(env)
            setup = create_people(env, 50 * len(sizes), 50)
            rooms = []
            for index, size in enumerate(sizes):
                member = setup.members[index * 50]
                print(f"writing {size:,} messages ...", flush=True)
                fill_room(member.room_id, member.user_id, size)
                rooms.append((size, member))
            srv = server.Daphne("calpico", "calpico.asgi:application", env, work_dir / "daphne.log")
            results = []
            for size, member in rooms:
                conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
                cookie = f"sessionid={member.session_key}"
                path = f"/r/{member.room_id}/"
                cpu0 = srv.cpu_seconds() or 0.0
                first, status, _ = get(conn, path, cookie)
                first_cpu = (srv.cpu_seconds() or 0.0) - cpu0
                if status != 200:
                    raise RuntimeError(f"the room page answered {status}")
                times = []
                cpu0 = srv.cpu_seconds() or 0.0
                for _ in range(args.requests):
                    seconds, status, size_bytes = get(conn, path, cookie)
                    if status != 200:
                        raise RuntimeError(f"the room page answered {status}")
                    times.append(seconds)
                cpu = ((srv.cpu_seconds() or 0.0) - cpu0) / args.requests
                conn.close()
                results.append((size, first, first_cpu, times, cpu, size_bytes, member))
            srv.stop()
            print()
            print(
                f"Room page, newest 50 messages, rooms of 50 members, {args.database}; "
                f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
                f"nice {os.getpriority(os.PRIO_PROCESS, 0)}, load average {os.getloadavg()[0]:.1f}"
            )
            print(
                f"  {'messages in room':>16} {'first: ms':>10} {'first: CPU ms':>14} {'CPU ms/page':>12}"
                f" {'p50 ms':>8} {'p99 ms':>8} {'queries':>8} {'HTML KB':>8}"
            )
            met = True
            for size, first, first_cpu, times, cpu, size_bytes, member in results:
                queries = count_queries(env, member.room_id, member.user_id)
                print(
                    f"  {size:>16,} {first * 1000:>10.1f} {first_cpu * 1000:>14.1f} {cpu * 1000:>12.1f}"
                    f" {statistics.median(times) * 1000:>8.1f} {percentile(times, 0.99) * 1000:>8.1f}"
                    f" {queries:>8} {size_bytes / 1000:>8.1f}"
                )
                met = met and cpu <= 0.020
            print()
            print(f"Target: server CPU per page at most 20 ms ... {'met' if met else 'MISSED'}")
            return 0 if met else 1
    finally:
        server.stop_all()
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
