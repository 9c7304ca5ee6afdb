"""The room page's cost in one process, through Django's test client: no daphne, no HTTP.

A benchmark that prints figures, not a test. A fresh SQLite database in a temporary
directory; 50 people in one group, `--messages` messages (written in bulk, three
authors in turn); the room's page (the newest 50) asked as its owner: five times to warm
up, then `--rounds` rounds of `--per` requests, each round's CPU time per page (this
thread's, so other processes on the machine count less than in wall time). Prints the
fastest and the median round, the page's queries and its size. `--tree` runs another
checkout's code (e.g. a worktree of main) with this script, for a before/after in one
sitting; `--profile FILE` writes a cProfile of the rounds instead.

    .venv/bin/python bench/pages_inprocess.py
    .venv/bin/python bench/pages_inprocess.py --tree ../main-worktree --rounds 8 --per 30

docs/performance.md ("Room page") has figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per", type=int, default=30)
    parser.add_argument("--profile", metavar="FILE")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(args.tree).resolve()))
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    var = tempfile.mkdtemp(prefix="calpico-page-")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="calpico.settings",
        CALPICO_VAR_DIR=var,
        SECRET_KEY="bench-" + "x" * 50,
        ROOM_MAX_MEMBERS="51",
    )
    try:
        return run(args)
    finally:
        shutil.rmtree(var, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client

    from accounts.models import User
    from rooms.models import Message, Room
    from rooms.services import do_create_group

    call_command("migrate", verbosity=0)
    User.objects.bulk_create(
        User(username=f"p{i:03d}", display_name=f"Person {i}", password=make_password(None))
        for i in range(50)
    )
    users = list(User.objects.order_by("username"))
    room = do_create_group(users[0], "Fifty", users[1:])
    now = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
    with transaction.atomic():
        start = Room.objects.select_for_update().get(pk=room.pk).last_seq
        Message.objects.bulk_create(
            Message(
                room_id=room.pk,
                seq=start + i + 1,
                author_id=users[i % 3].pk,
                body=f"message {i}: the quick brown fox jumps over the **lazy** dog",
                html=f"<p>message {i}: the quick brown fox jumps over the <strong>lazy</strong> dog</p>",
                created_at=now,
            )
            for i in range(args.messages)
        )
        last = Message.objects.get(room_id=room.pk, seq=start + args.messages)
        Room.objects.filter(pk=room.pk).update(last_seq=last.seq, last_message=last, last_activity_at=now)
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(users[0])
    path = f"/r/{room.pk}/"
    for _ in range(5):
        assert client.get(path).status_code == 200
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        size = len(client.get(path).content)
    if args.profile:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.rounds * args.per):
            client.get(path)
        profile.disable()
        profile.dump_stats(args.profile)
        print(f"profile of {args.rounds * args.per} pages written to {args.profile}")
        return 0
    rounds = []
    for _ in range(args.rounds):
        began = time.thread_time()
        for _ in range(args.per):
            client.get(path)
        rounds.append((time.thread_time() - began) / args.per * 1000)
    print(
        f"{args.tree}: room page, {args.messages} messages, 50 members: CPU ms per page "
        f"min {min(rounds):.2f}, median {statistics.median(rounds):.2f} ({args.rounds} x {args.per}); "
        f"{len(queries)} queries; {size / 1000:.1f} KB; load average {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
