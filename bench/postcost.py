"""What one posted message costs the server apart from its fan-out, in one process.

A benchmark that prints figures, not a test. It sets up a fresh SQLite database (a
temporary var/ directory, the in-memory channel layer and cache), a group room of
`--members` people, and posts `--posts` messages as one of them through Django's test
client, as the composer does (an htmx request; the message rate limits off). It prints the
CPU per post of each of `--rounds` rounds and their minimum (the machine is shared: the
minimum is the figure least disturbed by others), and the queries one post runs.

    .venv/bin/python bench/postcost.py
    .venv/bin/python bench/postcost.py --source ../other-checkout   # measure that code
    .venv/bin/python bench/postcost.py --profile post.svg           # under py-spy (installed)
    .venv/bin/python bench/postcost.py --jobs     # and the notification jobs each post queues

docs/performance.md ("Post cost") has the latest figures.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=HERE, help="the checkout whose code to measure")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--posts", type=int, default=50, help="posts per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--jobs",
        action="store_true",
        help="also run the jobs the posts queued (notifications) each round: their CPU per post",
    )
    parser.add_argument("--verbose", action="store_true", help="print the queries of one post")
    parser.add_argument("--profile", metavar="FILE", help="record the rounds with py-spy into FILE")
    args = parser.parse_args()

    if args.profile:
        # py-spy runs this same script (without --profile) as its child.
        argv = [a for a in sys.argv[1:] if a not in {"--profile", args.profile}]
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        form = ["-f", "raw"] if args.profile.endswith(".txt") else []
        command = [py_spy, "record", "-o", args.profile, "-r", "200", *form, "--"]
        command += [sys.executable, __file__, *argv]
        raise SystemExit(subprocess.call(command))

    source = args.source.resolve()
    sys.path.insert(0, str(source))
    var_dir = Path(tempfile.mkdtemp(prefix="calpico-postcost-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="calpico.settings",
        CALPICO_VAR_DIR=str(var_dir),
        SECRET_KEY=secrets.token_urlsafe(50),
        RATE_MESSAGES_PER_10_SECONDS="0",
        RATE_MESSAGES_PER_HOUR="0",
        ACCOUNT_RATE_LIMITS_ENABLED="false",
    )
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    try:
        run(source, args)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


def run(source: Path, args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from accounts.models import User
    from rooms.services import do_create_group

    assert Path(settings.BASE_DIR).resolve() == source, (settings.BASE_DIR, source)
    setup_test_environment()
    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    people = [
        User.objects.create(username=f"p{i:03d}", display_name=f"Person {i}") for i in range(args.members)
    ]
    room = do_create_group(people[0], "Bench room", people[1:])
    # As the composer sends: htmx, and it resets itself (the answer is the message alone).
    client = Client(HTTP_HX_REQUEST="true", HTTP_CALPICO_COMPOSER="resets")
    client.force_login(people[1])
    url = reverse("rooms:post_message", args=[room.pk])
    count = 0

    def post() -> None:
        nonlocal count
        count += 1
        body = f"message {count}: the quick brown fox jumps over the **lazy** dog"
        response = client.post(url, {"body": body})
        assert response.status_code == 200, (response.status_code, response.content[:500])

    for _ in range(10):  # warm: templates loaded, connection open
        post()
    if args.jobs:
        from jobs import runner

        runner.run_pending()
    # Counted as they run: Django empties its own query log when a request starts.
    queries: list[str] = []

    def count_query(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_query):
        post()
    if args.jobs:
        runner.run_pending()
    per_round = []
    jobs_per_round = []
    for _ in range(args.rounds):
        start = time.process_time()
        for _ in range(args.posts):
            post()
        per_round.append((time.process_time() - start) * 1000 / args.posts)
        if args.jobs:
            start = time.process_time()
            runner.run_pending()
            jobs_per_round.append((time.process_time() - start) * 1000 / args.posts)
    print(f"source: {source}")
    print(f"room of {args.members}, {args.rounds} rounds of {args.posts} posts, SQLite, in one process")
    print("CPU per post, ms: " + ", ".join(f"{ms:.2f}" for ms in per_round))
    print(f"min: {min(per_round):.2f} ms; queries per post: {len(queries)}")
    if args.jobs:
        print("CPU of the jobs per post, ms: " + ", ".join(f"{ms:.2f}" for ms in jobs_per_round))
        print(f"min: {min(jobs_per_round):.2f} ms (nobody subscribed a device or turned on email)")
    if args.verbose:
        print("\n".join(queries))


if __name__ == "__main__":
    main()
