"""How fast message search answers, at 100k and 1M messages, on SQLite (FTS5) and PostgreSQL
(tsvector + GIN), and what keeping the index costs a post.

A benchmark that prints figures, not a test. For each backend and corpus size it makes a
fresh database (a SQLite file in a temporary directory, or a throwaway PostgreSQL database
that is dropped afterwards), migrates it, writes the corpus in bulk (executemany on SQLite,
COPY on PostgreSQL, the search index built once after the rows), then times
`rooms.services.search.search_messages` (the service the results page calls: the searcher's
rooms, the matches with their snippets, the messages) for a set of searches, and
`do_post_message` with the index kept up to date and without it.

    .venv/bin/python bench/search.py                               # both backends, 100k and 1M
    .venv/bin/python bench/search.py --backends sqlite --sizes 100000
    .venv/bin/python bench/search.py --explain                     # print each backend's plans

The corpus: 1,000 groups of 200 people, messages spread evenly over the rooms, a year of
timestamps in id order, 4 to 20 words each drawn from a Zipf distribution over 30,000
words (the most common are English ones), so word frequencies look like a chat's. The
searcher is a member of 50 of the rooms (5% of the messages). docs/performance.md has the
latest figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import server

ROOMS = 1000
PEOPLE = 200
SEARCHER_ROOMS = 50
VOCABULARY = 30_000
COMMON_WORDS = (
    "the to and you a i it of is in that for on we have be this at will with can are "
    "just so but not what do my me if all was get about up out there your time one like "
    "go see how when now know think about good new day train lunch meeting plan trip"
)
SYLLABLE_LIST = "ka lo mi ra ne to su pa vi do re fa li mo na ze ti bu cho tra gle ver san dor pel"
COMMON, SYLLABLES = COMMON_WORDS.split(), SYLLABLE_LIST.split()


def words(seed: int) -> list[str]:
    """The vocabulary, most frequent first: common English words, then made-up ones."""
    rng = random.Random(seed)
    vocab = list(dict.fromkeys(COMMON))
    seen = set(vocab)
    while len(vocab) < VOCABULARY:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            vocab.append(word)
    return vocab


# The searches timed, as a person would type them; {rare} etc. are filled from the corpus.
SEARCHES = [
    ("very common word", "the"),
    ("common word", "lunch"),
    ("medium word", "{medium}"),
    ("rare word", "{rare}"),
    ("two words", "{medium} {medium2}"),
    ("prefix, 3 letters", "tra"),
    ("phrase", '"see you"'),
    ("from: + word", "from:{author} train"),
    ("in: + word", 'in:"Room 7" meeting'),
    ("no match", "qqqzzzx"),
]


# The worker: one backend, one size, in a process of its own (Django reads DATABASE_URL once).


def worker(size: int, repeat: int, posts: int, explain: bool, rooms_in_match: int | None) -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import User
    from rooms import services
    from rooms.models import Membership, Message, Room
    from rooms.services import search

    if rooms_in_match is not None:
        search.FTS_ROOMS_IN_MATCH = rooms_in_match
    load_before = os.getloadavg()[0]
    phases: dict[str, float] = {}
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    phases["migrate"] = time.perf_counter() - started

    # People and rooms, with the ORM in bulk.
    started = time.perf_counter()
    people = User.objects.bulk_create(
        [User(username=f"person{i}", display_name=f"Person {i}") for i in range(PEOPLE)]
    )
    searcher = people[0]
    now = timezone.now()
    rooms = Room.objects.bulk_create(
        [Room(kind=Room.Kind.GROUP, title=f"Room {i}", owner=people[1]) for i in range(ROOMS)]
    )
    rng = random.Random(size)
    memberships = [Membership(room=room, user=people[1]) for room in rooms]
    memberships += [Membership(room=room, user=searcher) for room in rooms[:SEARCHER_ROOMS]]
    Membership.objects.bulk_create(memberships)

    # The messages: rows in id order, round-robin over the rooms.
    vocab = words(7)
    weights = [1 / (rank + 1) ** 1.07 for rank in range(len(vocab))]
    lengths = [rng.randint(4, 20) for _ in range(size)]
    drawn = iter(rng.choices(vocab, weights=weights, k=sum(lengths)))
    start_time = now - dt.timedelta(days=365)
    step = dt.timedelta(days=365) / size
    seqs = [0] * ROOMS
    columns = [f for f in Message._meta.concrete_fields if f.name != "id"]
    names = [f.column for f in columns]
    # Every other column as a new message has it (files, reactions, whatever comes next).
    defaults = {f.column: f.get_default() for f in columns}
    rows = []
    for i, length in enumerate(lengths):
        room_index = i % ROOMS
        seqs[room_index] += 1
        body = " ".join(next(drawn) for _ in range(length))
        values = {
            "room_id": rooms[room_index].pk,
            "seq": seqs[room_index],
            "kind": "text",
            "author_id": people[1 + i % (PEOPLE - 1)].pk,
            "body": body,
            "html": f"<p>{body}</p>",
            "mentioned_user_ids": "[]",
            "reply_to_id": None,
            "persona": "",
            "state": "done",
            "note": "",
            "image": "",
            "image_width": None,
            "image_height": None,
            "client_id": None,
            "created_at": start_time + step * i,
            "edited_at": None,
            "deleted_at": None,
            "removed_by": "",
        }
        rows.append(tuple(values[c] if c in values else defaults[c] for c in names))
    phases["generate"] = time.perf_counter() - started

    started = time.perf_counter()
    vendor = connection.vendor
    if vendor == "sqlite":
        adapt = connection.ops.adapt_datetimefield_value
        at = names.index("created_at")
        # Column names from the model, values as parameters.
        sql = f"INSERT INTO rooms_message ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})"  # noqa: S608
        with transaction.atomic(), connection.cursor() as cursor:
            for chunk in range(0, len(rows), 50_000):
                batch = [(*row[:at], adapt(row[at]), *row[at + 1 :]) for row in rows[chunk : chunk + 50_000]]
                cursor.executemany(sql, batch)
        phases["insert"] = time.perf_counter() - started
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            # As migration 0007 fills it for messages stored before it.
            cursor.execute(
                "INSERT INTO rooms_message_fts (rowid, body, room, author)"
                " SELECT id, body, 'r' || room_id, coalesce('a' || author_id, '') FROM rooms_message"
                " WHERE kind <> 'system' AND deleted_at IS NULL AND body <> ''"
            )
            cursor.execute("INSERT INTO rooms_message_fts (rooms_message_fts) VALUES ('optimize')")
        phases["index"] = time.perf_counter() - started
    else:
        raw = connection.connection
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX rooms_message_search")
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY rooms_message ({', '.join(names)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        raw.commit()
        phases["insert"] = time.perf_counter() - started
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("CREATE INDEX rooms_message_search ON rooms_message USING gin (search_vector)")
            cursor.execute("ANALYZE")
        phases["index"] = time.perf_counter() - started
    for room, last in zip(rooms, seqs, strict=True):
        room.last_seq = last
    Room.objects.bulk_update(rooms, ["last_seq"], batch_size=500)
    del rows

    # What the searches find, and how long they take.
    rank = {word: i for i, word in enumerate(vocab)}
    fill = {
        "medium": vocab[1000],
        "medium2": vocab[1001],
        "rare": vocab[25_000],
        "author": people[7].username,
    }
    assert rank[fill["rare"]] == 25_000
    results = []
    for label, template in SEARCHES:
        text = template.format(**fill)
        found = search.search_messages(searcher, text)  # warm: caches, plans
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            search.search_messages(searcher, text)
            times.append((time.perf_counter() - t0) * 1000)
        plan = ""
        parsed = search.parse_query(text)
        if explain and parsed.terms:
            scope = search._scoped(searcher, parsed)
            if vendor == "sqlite":
                plan = search.sqlite_matching(scope, parsed.terms)[:21].explain()
            else:
                query = search.postgres_query(parsed.terms)
                plan = search.postgres_matching(scope.messages, query)[:21].explain()
        results.append(
            {
                "label": label,
                "text": text,
                "hits": len(found.hits),
                "times": times,
                "plan": plan,
            }
        )

    # The post path: posting with the index kept, and without it.
    room = services.do_create_group(searcher, "Bench posts", [people[2], people[3]])
    member = Membership.objects.select_related("room", "user").get(room=room, user=searcher)
    body = " ".join(rng.choices(vocab, weights=weights, k=12))

    def post_times(count: int) -> list[float]:
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            services.do_post_message(member, body)
            times.append((time.perf_counter() - t0) * 1000)
        return times

    post_times(20)  # warm
    with_index: list[float] = []
    without_index: list[float] = []
    if vendor == "sqlite":
        # Alternating blocks, so drift (the WAL growing, the machine's load) hits both alike.
        keep = search.index_message
        for _ in range(5):
            with_index += post_times(posts // 5)
            search.index_message = lambda message, new=False: None
            without_index += post_times(posts // 5)
            search.index_message = keep
    else:
        with_index = post_times(posts)
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE rooms_message DROP COLUMN search_vector")
        post_times(20)
        without_index = post_times(posts)
    return {
        "load": [load_before, os.getloadavg()[0]],
        "backend": vendor,
        "size": size,
        "phases": phases,
        "searches": results,
        "post_with_index": with_index,
        "post_without_index": without_index,
    }


# The parent: a worker per backend and size, then the table.


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def run_worker(backend: str, size: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="calpico-bench-search-") as var_dir:
        env = server.base_env()
        env.update(
            DJANGO_SETTINGS_MODULE="calpico.settings",
            CALPICO_VAR_DIR=var_dir,
            SECRET_KEY="bench-search-" + "x" * 40,
            RATE_MESSAGES_PER_10_SECONDS="0",
            RATE_MESSAGES_PER_HOUR="0",
        )
        command = [
            sys.executable,
            __file__,
            "--worker",
            "--sizes",
            str(size),
            "--repeat",
            str(args.repeat),
            "--posts",
            str(args.posts),
        ]
        if args.explain:
            command.append("--explain")
        if args.rooms_in_match is not None:
            command += ["--rooms-in-match", str(args.rooms_in_match)]

        def launch(database_url: str) -> dict:
            if database_url:
                env["DATABASE_URL"] = database_url
            done = subprocess.run(
                command, env=env, cwd=server.PROJECT_DIR, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise SystemExit(f"{backend} {size:,}: the worker failed\n{done.stdout}\n{done.stderr}")
            return json.loads(done.stdout.strip().splitlines()[-1])

        if backend == "sqlite":
            return launch("")
        with server.throwaway_postgres(args.postgres) as url:
            return launch(url)


def report(result: dict, explain: bool) -> None:
    name = "SQLite (FTS5)" if result["backend"] == "sqlite" else "PostgreSQL (tsvector, GIN)"
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in result["phases"].items())
    load = "load average {:.1f} at the start, {:.1f} at the end".format(*result["load"])
    print(f"\n{name}, {result['size']:,} messages ({phases}; {load})")
    print(f"  {'search':<20} {'typed':<32} {'hits':>5} {'p50 ms':>8} {'p99 ms':>8}")
    every = []
    for row in result["searches"]:
        every += row["times"]
        print(
            f"  {row['label']:<20} {row['text']:<32} {row['hits']:>5} "
            f"{percentile(row['times'], 50):>8.1f} {percentile(row['times'], 99):>8.1f}"
        )
        if explain and row["plan"]:
            print("      " + row["plan"].replace("\n", "\n      "))
    print(
        f"  {'all searches':<20} {'':<32} {'':>5} {percentile(every, 50):>8.1f} {percentile(every, 99):>8.1f}"
    )
    with_index, without = result["post_with_index"], result["post_without_index"]
    print(
        f"  posting (do_post_message): p50 {statistics.median(with_index):.2f} ms with the index, "
        f"{statistics.median(without):.2f} ms without "
        f"(+{statistics.median(with_index) - statistics.median(without):.2f} ms); "
        f"p99 {percentile(with_index, 99):.2f} / {percentile(without, 99):.2f} ms; "
        f"{len(with_index)} posts each"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--repeat", type=int, default=30, help="timed runs of each search (default 30)")
    parser.add_argument("--posts", type=int, default=200, help="timed posts with and without the index")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--explain", action="store_true", help="print each search's query plan")
    parser.add_argument(
        "--rooms-in-match",
        type=int,
        help="SQLite: name the rooms inside the FTS5 query up to this many (default: the service's)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.worker:
        print(json.dumps(worker(sizes[0], args.repeat, args.posts, args.explain, args.rooms_in_match)))
        return
    for backend in args.backends.split(","):
        for size in sizes:
            started = time.perf_counter()
            result = run_worker(backend, size, args)
            report(result, args.explain)
            print(f"  (this run: {time.perf_counter() - started:.0f} s)")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
