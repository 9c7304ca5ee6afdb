"""How fast Calpico fans a message out to everyone in a room, next to a bare Channels relay.

A benchmark that prints figures, not a test. It starts one daphne process serving Calpico
(fresh var/ directory; SQLite, or PostgreSQL and Redis with `--layer redis`), creates the
people, the room and their sessions with the ORM, opens one real WebSocket per person,
posts messages through the composer's HTTP endpoint at a fixed rate, and times when each
message reaches each socket. Then it does the same against `bench/bare.py`, a Channels app
that only relays text through the same kind of channel layer, in a second daphne process,
and prints the two side by side.

    .venv/bin/python bench/fanout.py                    # 200 clients, 10 messages/s, memory layer
    .venv/bin/python bench/fanout.py --layer redis      # PostgreSQL + Redis pub/sub layer
    .venv/bin/python bench/fanout.py --idle 2000        # memory per idle connection
    .venv/bin/python bench/fanout.py --find-max         # highest rate with p99 < 250 ms

docs/performance.md has the latest figures and what they mean.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    # Run as `python bench/fanout.py`: make `bench` and the project importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import load, sampling, server
from bench.load import Client, HttpPoster, Phase

P99_LIMIT = 0.250
# A find-max step during which other processes used more than this (% of one core) is run again.
OTHER_CPU_LIMIT = 25.0
FIND_MAX_RATES = "0.5,1,2,5,10,20,40,80,160,320"
BODY = "the quick brown fox jumps over the lazy dog"
# One person posts every message, faster than the product lets anyone post: the message
# rate limits are off for the benchmark's server (and printed with its figures), and a
# refused post fails the run.
BENCH_LIMITS = {
    "RATE_MESSAGES_PER_10_SECONDS": "0",
    "RATE_MESSAGES_PER_HOUR": "0",
    "ACCOUNT_RATE_LIMITS_ENABLED": "false",
}
# With --processes N, N processes' highest rate is to be at least this many times one's (issue 11).
PROCESSES_FACTOR = 1.6
# The targets of --idle (issue 11): per socket opened, per idle socket, all sockets idle.
CONNECT_CPU_MS = 3.0
IDLE_KIB = 25.0
IDLE_CPU_PERCENT = 2.0


# Setting up: environment, database, people, room, sessions


@dataclass
class Member:
    user_id: int
    room_id: int
    session_key: str


@dataclass
class Setup:
    members: list[Member]
    csrf_token: str

    def cookies(self) -> list[str]:
        return [f"sessionid={m.session_key}" for m in self.members]


def calpico_server_env(
    var_dir: Path, database_url: str, redis_url: str, room_max_members: int
) -> dict[str, str]:
    env = server.base_env()
    env.update(
        DJANGO_SETTINGS_MODULE="calpico.settings",
        CALPICO_VAR_DIR=str(var_dir),
        SECRET_KEY=secrets.token_urlsafe(50),
        ROOM_MAX_MEMBERS=str(room_max_members),
        **BENCH_LIMITS,
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        prefix = f"calpico_bench_{secrets.token_hex(4)}"
        env.update(REDIS_URL=redis_url, CACHE_KEY_PREFIX=prefix, CHANNEL_LAYER_PREFIX=prefix)
    return env


def migrate(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=server.PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py migrate failed:\n{result.stdout}\n{result.stderr}")


def create_people(env: dict[str, str], people: int, room_size: int) -> Setup:
    """`people` users in groups of `room_size` (the first of each group owns it), and one
    signed-in session each, written with the ORM in this process."""
    # This process only writes rows; it needs the server's database and secret key, not
    # its cache or channel layer.
    os.environ.update({k: v for k, v in env.items() if k not in {"REDIS_URL", "PATH", "HOME"}})
    import django

    django.setup()
    from datetime import timedelta

    from django.conf import settings
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.backends.base import VALID_KEY_CHARS
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.db import connections, transaction
    from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    from accounts.models import User
    from rooms.services import do_create_group

    tag = secrets.token_hex(3)
    with transaction.atomic():
        User.objects.bulk_create(
            User(username=f"b{tag}_{i:05d}", display_name=f"Bench {i}", password=make_password(None))
            for i in range(people)
        )
    users = list(User.objects.filter(username__startswith=f"b{tag}_").order_by("username"))

    room_of: dict[int, int] = {}
    for start in range(0, people, room_size):
        group = users[start : start + room_size]
        room = do_create_group(group[0], f"Bench room {start // room_size + 1}", group[1:])
        room_of.update((u.pk, room.pk) for u in group)

    # What django.contrib.auth.login() stores in the session.
    store = SessionStore()
    expires = timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE)
    keys = {u.pk: get_random_string(32, VALID_KEY_CHARS) for u in users}
    Session.objects.bulk_create(
        (
            Session(
                session_key=keys[u.pk],
                session_data=store.encode(
                    {
                        "_auth_user_id": str(u.pk),
                        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
                        "_auth_user_hash": u.get_session_auth_hash(),
                    }
                ),
                expire_date=expires,
            )
            for u in users
        ),
        batch_size=500,
    )
    connections.close_all()
    members = [Member(u.pk, room_of[u.pk], keys[u.pk]) for u in users]
    return Setup(members, get_random_string(CSRF_SECRET_LENGTH, CSRF_ALLOWED_CHARS))


def cleanup_redis(redis_url: str, env: dict[str, str]) -> None:
    """Drop this run's cache keys (presence); the pub/sub layer leaves nothing behind."""
    prefix = env.get("CACHE_KEY_PREFIX")
    if not prefix:
        return
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# Measuring


def cpu_now() -> float:
    """CPU seconds of this process: the load generator."""
    times = os.times()
    return times.user + times.system


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle and iowait
    return (sum(values) - idle) / server.CLOCK_TICKS


# The database and Redis servers, whoever their clients are (other people's tests use them too).
SERVICES = ("postgres", "redis-server")


def services_cpu_seconds() -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL and Redis process on the machine, by pid."""
    seconds = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process has ended
            continue
        name, _, rest = text.partition("(")[2].rpartition(")")
        if name in SERVICES:
            fields = rest.split()
            seconds[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / server.CLOCK_TICKS
    return seconds


def services_cpu_since(before: dict[int, float]) -> float:
    """CPU seconds the PostgreSQL and Redis processes used since `before` (a process that
    ended in between is not counted, one that started is counted whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in services_cpu_seconds().items())


def background_cpu_percent(seconds: float = 1.0) -> float:
    """How busy the machine is without us, in % of one core, over `seconds`."""
    machine0, own0 = machine_busy_seconds(), cpu_now()
    time.sleep(seconds)
    return 100 * ((machine_busy_seconds() - machine0) - (cpu_now() - own0)) / seconds


def wait_for_quiet(limit: float, threshold: float = 25.0, sustain: int = 5) -> float:
    """Wait up to `limit` s until other processes have used less than `threshold` % of a
    core for `sustain` seconds in a row; returns the last one-second reading."""
    deadline = time.monotonic() + limit
    quiet = 0
    busy = background_cpu_percent()
    while time.monotonic() < deadline:
        quiet = quiet + 1 if busy < threshold else 0
        if quiet >= sustain:
            break
        busy = background_cpu_percent()
    return busy


@dataclass
class Figures:
    """What one phase of messages showed, for one server."""

    clients: int
    messages: int
    rate: float
    latencies: list[float]
    expected: int
    received: int
    duplicates: int
    post_errors: list[str]
    closed_clients: int
    close_codes: dict[int, int]
    window: float
    server_cpu: float | None
    # Each server process's share of server_cpu, in the order they were started.
    process_cpu: list[float | None]
    generator_cpu: float
    other_cpu: float | None
    # PostgreSQL and Redis (part of other_cpu), with --layer redis.
    services_cpu: float | None
    elapsed: float
    send_lag: float
    response_p50: float | None
    response_p99: float | None
    slowest_per_message: list[float | None]

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def pct(self, fraction: float) -> float:
        return load.percentile(self.latencies, fraction)

    @property
    def deliveries_per_second(self) -> float:
        return self.received / self.window if self.window else 0.0

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and not self.post_errors and not self.closed_clients

    def meets(self, limit: float) -> bool:
        return self.clean and bool(self.latencies) and self.pct(0.99) < limit

    def percent(self, cpu: float | None) -> float | None:
        return None if cpu is None else 100 * cpu / self.elapsed


@dataclass
class Connected:
    """What opening the sockets cost the server."""

    clients: int
    failures: list[str]
    seconds: float
    settle_seconds: float
    rss_before_kib: int | None
    rss_after_kib: int | None
    server_cpu: float | None
    open_files_limit: str

    @property
    def kib_per_connection(self) -> float | None:
        if self.rss_before_kib is None or self.rss_after_kib is None or not self.clients:
            return None
        return (self.rss_after_kib - self.rss_before_kib) / self.clients


def total(values: list[float | None]) -> float | None:
    """The sum, or None when any part is unknown."""
    known = [v for v in values if v is not None]
    return sum(known) if len(known) == len(values) else None


class Target:
    """A server under load (one process, or with --processes several on the same database
    and Redis), its open sockets, and how a message gets posted to it."""

    kind = ""

    def __init__(self, servers: list[server.Server], clients: list[Client], connected: Connected) -> None:
        self.servers = servers
        self.server = servers[0]
        self.clients = clients
        self.connected = connected

    @property
    def label(self) -> str:
        return self.kind if len(self.servers) == 1 else f"{self.kind}×{len(self.servers)}"

    def cpu_by_process(self) -> list[float | None]:
        return [srv.cpu_seconds() for srv in self.servers]

    def rss_kib(self) -> int | None:
        rss = [srv.rss_kib() for srv in self.servers]
        return None if None in rss else sum(r for r in rss if r is not None)

    async def send(self, phase: Phase, index: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        # Stop the servers first: closing 200 sockets one by one would make Calpico announce
        # each departure to the room, which costs time and measures nothing.
        try:
            for srv in self.servers:
                srv.stop()
        finally:
            await load.close_clients(self.clients)


class CalpicoTarget(Target):
    """Messages go in as the composer posts them: HTTP, as the room's first member (to each
    process in turn when there are several)."""

    kind = "calpico"

    def __init__(
        self,
        servers: list[server.Server],
        clients: list[Client],
        connected: Connected,
        posters: list[HttpPoster],
    ):
        super().__init__(servers, clients, connected)
        self.posters = posters

    async def send(self, phase: Phase, index: int) -> None:
        poster = self.posters[index % len(self.posters)]
        try:
            sent, status, content = await asyncio.wait_for(
                poster.post(f"{load.marker(phase.id, index)} {BODY}"), 30
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            phase.post_errors.append(f"{type(exc).__name__}: {exc}")
            return
        phase.sent[index] = sent
        phase.response_times.append(time.monotonic() - sent)
        if status != 200:
            phase.post_errors.append(f"HTTP {status}: {content[:200]!r}")

    async def close(self) -> None:
        for poster in self.posters:
            await poster.close()
        await super().close()


class BareTarget(Target):
    """Messages go in as a text frame on the first client's own socket (with several
    processes, on the first socket of each process in turn)."""

    kind = "bare"

    def __init__(
        self,
        servers: list[server.Server],
        clients: list[Client],
        connected: Connected,
        frame_bytes: int,
        senders: list[Client],
    ):
        super().__init__(servers, clients, connected)
        self.frame_bytes = frame_bytes
        self.senders = senders

    async def send(self, phase: Phase, index: int) -> None:
        text = f"<p>{load.marker(phase.id, index)} {BODY}</p>"
        text += " " * max(0, self.frame_bytes - len(text))
        phase.sent[index] = time.monotonic()
        try:
            await self.senders[index % len(self.senders)].ws.send(text)
        except Exception as exc:
            phase.post_errors.append(f"{type(exc).__name__}: {exc}")


class Bench:
    """What every mode needs: the options, the people, and how to start each server."""

    def __init__(self, args: argparse.Namespace, setup: Setup, work_dir: Path, env: dict[str, str]) -> None:
        self.args = args
        self.setup = setup
        self.work_dir = work_dir
        self.env = env
        # Shared by every bare relay process of the run, as Calpico's processes share theirs.
        self.bare_prefix = f"bare_bench_{secrets.token_hex(4)}"
        self.profile_dir: Path | None = args.profile
        if self.profile_dir:
            self.profile_dir.mkdir(parents=True, exist_ok=True)

    def start_server(self, kind: str, name: str | None = None) -> server.Server:
        name = name or kind
        if kind == "calpico":
            if self.args.url:
                return server.Server(name, self.args.url, self.args.server_pid)
            return server.Daphne(
                name, "calpico.asgi:application", self.env, self.work_dir / f"{name}-daphne.log"
            )
        bare_env = server.base_env()
        if self.args.layer == "redis":
            bare_env.update(
                BARE_CHANNEL_LAYER="redis",
                BARE_REDIS_URL=self.args.redis_url,
                BARE_CHANNEL_LAYER_PREFIX=self.bare_prefix,
            )
        return server.Daphne(name, "bench.bare:application", bare_env, self.work_dir / f"{name}-daphne.log")

    def start_servers(self, kind: str, processes: int) -> list[server.Server]:
        """One server, or `processes` daphne processes on the same database and Redis."""
        if processes == 1:
            return [self.start_server(kind)]
        servers: list[server.Server] = []
        try:
            for number in range(1, processes + 1):
                servers.append(self.start_server(kind, f"{kind}-{number}"))
        except BaseException:
            for srv in servers:
                srv.stop()
            raise
        return servers

    @contextmanager
    def sampled(self, servers: list[server.Server], stage: str) -> Iterator[None]:
        """With --profile: py-spy samples each server for the duration of the block."""
        if not self.profile_dir:
            yield
            return
        samplers = []
        for srv in servers:
            if srv.pid:
                path = self.profile_dir / f"{srv.name}-{stage}.txt"
                samplers.append(
                    (
                        srv,
                        path,
                        sampling.Sampler(self.args.py_spy, srv.pid, path, rate=self.args.profile_rate),
                    )
                )
        try:
            yield
        finally:
            for srv, path, sampler in samplers:
                sampler.stop()
                print(f"  py-spy samples of {srv.name} ({stage}) in {path}", flush=True)

    async def open_target(
        self, kind: str, *, frame_bytes: int = 0, sockets: int | None = None, processes: int = 1
    ) -> Target:
        """Start the server (or `processes` of them), warm it up, open one socket per person
        (or only the first `sockets`) and wait for quiet."""
        servers = self.start_servers(kind, processes)
        try:
            members = self.setup.members[:sockets]
            if kind == "calpico":
                first = members[0]
                posters = [
                    HttpPoster(srv.host, srv.port, first.room_id, first.session_key, self.setup.csrf_token)
                    for srv in servers
                ]
                for srv, poster in zip(servers, posters, strict=True):
                    await warm_up_calpico(srv, first, poster)
                cookies: list[str | None] = list(self.setup.cookies())
                rooms: list[int | None] = [m.room_id for m in members]
                shares, connected = await self.connect(
                    servers, cookies, rooms, self.args.read_frames, await self.resume_seqs()
                )
                return CalpicoTarget(servers, [c for share in shares for c in share], connected, posters)
            for srv in servers:
                await warm_up_bare(srv)
            shares, connected = await self.connect(
                servers, [None] * len(members), [None] * len(members), False
            )
            senders = [share[0] for share in shares if share]
            return BareTarget(
                servers, [c for share in shares for c in share], connected, frame_bytes, senders
            )
        except BaseException:
            for srv in servers:
                srv.stop()
            raise

    async def resume_seqs(self) -> dict[int, int] | None:
        """With --resume: each room's last seq now (pages loaded just before), from which its
        pages resume."""
        if not self.args.resume:
            return None

        def read() -> dict[int, int]:
            from django.db import connections

            from rooms.models import Room

            rooms = {m.room_id for m in self.setup.members}
            seqs = dict(Room.objects.filter(pk__in=rooms).values_list("pk", "last_seq"))
            connections.close_all()
            return seqs

        return await asyncio.to_thread(read)

    async def connect(
        self,
        servers: list[server.Server],
        cookies: list[str | None],
        rooms: list[int | None],
        read_frames: bool,
        resume_seqs: dict[int, int] | None = None,
    ) -> tuple[list[list[Client]], Connected]:
        """Socket i goes to server i % N. Returns each server's open sockets (numbered across
        all of them, in that order) and what opening them cost."""
        await load.settle(0.3, 5)
        count = len(servers)
        rss0, cpu0 = [srv.rss_kib() for srv in servers], [srv.cpu_seconds() for srv in servers]
        start = time.monotonic()
        shares: list[list[Client]] = []
        failures: list[str] = []
        with self.sampled(servers, "connect"):
            for number, srv in enumerate(servers):
                opened, failed = await open_sockets(
                    srv,
                    cookies[number::count],
                    rooms[number::count],
                    read_frames,
                    concurrency=self.args.connect_concurrency,
                    limit=self.args.connect_limit,
                    resume_seqs=resume_seqs,
                )
                shares.append(opened)
                failures.extend(failed)
            for position, client in enumerate(c for share in shares for c in share):
                client.index = position  # the row it records into
            seconds = time.monotonic() - start
            # Calpico announces each arrival to the arriver's rooms (presence); let that die down.
            settle_seconds = await load.settle(0.5, self.args.settle_limit)
        rss1, cpu1 = [srv.rss_kib() for srv in servers], [srv.cpu_seconds() for srv in servers]
        connected = Connected(
            clients=sum(len(share) for share in shares),
            failures=failures,
            seconds=seconds,
            settle_seconds=settle_seconds,
            rss_before_kib=None if None in rss0 else sum(r for r in rss0 if r is not None),
            rss_after_kib=None if None in rss1 else sum(r for r in rss1 if r is not None),
            server_cpu=total(
                [None if a is None or b is None else b - a for a, b in zip(cpu0, cpu1, strict=True)]
            ),
            open_files_limit=servers[0].open_files_limit(),
        )
        return shares, connected

    async def run_phase(self, target: Target, rate: float, count: int) -> Figures:
        """Send `count` messages `1/rate` s apart, then wait up to --grace s after the last
        send for every socket to have every message."""
        open_clients = [c for c in target.clients if c.closed_code is None]
        phase = Phase(count=count, clients=len(target.clients))
        load.active_phases[phase.id] = phase
        server_cpu0, generator_cpu0, machine0 = target.cpu_by_process(), cpu_now(), machine_busy_seconds()
        services0 = services_cpu_seconds() if self.args.layer == "redis" else None
        start = time.monotonic()
        with self.sampled(target.servers, f"messages-{rate:g}"):
            tasks = []
            first = start + 0.05
            for index in range(count):
                phase.scheduled[index] = first + index / rate
                delay = phase.scheduled[index] - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(target.send(phase, index)))
            await asyncio.gather(*tasks)
            expected = count * len(open_clients)
            deadline = time.monotonic() + self.args.grace
            while phase.received < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            # A duplicate would come after the first copy; give it a moment to show.
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - start
        server_cpu1, generator_cpu1, machine1 = target.cpu_by_process(), cpu_now(), machine_busy_seconds()
        services_cpu = None if services0 is None else services_cpu_since(services0)
        del load.active_phases[phase.id]
        process_cpu = [
            None if a is None or b is None else b - a for a, b in zip(server_cpu0, server_cpu1, strict=True)
        ]
        server_cpu = total(process_cpu)
        generator_cpu = generator_cpu1 - generator_cpu0
        responses = sorted(phase.response_times)
        return Figures(
            clients=len(open_clients),
            messages=count,
            rate=rate,
            latencies=sorted(phase.latencies()),
            expected=expected,
            received=phase.received,
            duplicates=phase.duplicates,
            post_errors=phase.post_errors,
            closed_clients=sum(1 for c in open_clients if c.closed_code is not None),
            close_codes=dict(Counter(c.closed_code for c in open_clients if c.closed_code is not None)),
            window=phase.window(),
            server_cpu=server_cpu,
            process_cpu=process_cpu,
            generator_cpu=generator_cpu,
            other_cpu=None if server_cpu is None else machine1 - machine0 - server_cpu - generator_cpu,
            services_cpu=services_cpu,
            elapsed=elapsed,
            send_lag=phase.send_lag(),
            response_p50=load.percentile(responses, 0.5) if responses else None,
            response_p99=load.percentile(responses, 0.99) if responses else None,
            slowest_per_message=phase.slowest_per_message(),
        )


async def open_sockets(
    srv: server.Server,
    cookies: list[str | None],
    rooms: list[int | None],
    read_frames: bool,
    *,
    concurrency: int = 50,
    limit: float = 120.0,
    at_once: bool = False,
    resume_seqs: dict[int, int] | None = None,
) -> tuple[list[Client], list[str]]:
    """One socket per cookie; rooms[i] is the `?room=` of socket i (None: no room, for the
    bare relay). Returns the sockets that opened, in the order of `cookies`, and why the
    others did not. Room after room, `concurrency` handshakes at a time; `at_once`: every
    socket at the same moment, as pages do when their server restarts. `resume_seqs` (room id:
    its last seq): each socket resumes from there, as a room page does, and counts as open at
    `caught_up`."""
    deadline = time.monotonic() + limit
    indexes_by_room: dict[int | None, list[int]] = {}
    for i, room_id in enumerate(rooms):
        indexes_by_room.setdefault(room_id, []).append(i)
    clients: list[Client | None] = [None] * len(cookies)
    failures: list[str] = []

    async def open_room(room_id: int | None, indexes: list[int]) -> None:
        url = f"{srv.ws_url}/ws/" + (f"?room={room_id}" if room_id is not None else "")
        opened, failed = await load.open_clients(
            url,
            srv.url,
            [cookies[i] for i in indexes],
            room_id=room_id,
            deadline=deadline,
            read_frames=read_frames,
            concurrency=len(indexes) if at_once else concurrency,
            timeout=limit if at_once else 30.0,
            resume_seq=None if resume_seqs is None or room_id is None else resume_seqs.get(room_id, 0),
        )
        failures.extend(failed)
        for i, client in zip(indexes, opened, strict=True):
            clients[i] = client

    if at_once:
        await asyncio.gather(*(open_room(r, indexes) for r, indexes in indexes_by_room.items()))
    else:
        for room_id, indexes in indexes_by_room.items():
            await open_room(room_id, indexes)
    opened_in_order = [c for c in clients if c is not None]
    for position, client in enumerate(opened_in_order):
        client.index = position  # the row it records into
    return opened_in_order, failures


async def warm_up_calpico(srv: server.Server, member: Member, poster: HttpPoster) -> None:
    """Run every code path once (templates, the consumer, a post) so what they load is not
    counted against the connections."""
    opened, failures = await open_sockets(srv, [f"sessionid={member.session_key}"], [member.room_id], False)
    if failures:
        raise RuntimeError(f"could not open a socket to warm up: {failures[0]}")
    _, status, content = await poster.post("warming up")
    if status != 200:
        raise RuntimeError(f"posting a message failed with HTTP {status}: {content!r}")
    await load.settle(0.3, 5)
    await load.close_clients(opened)
    await load.settle(0.5, 5)


async def warm_up_bare(srv: server.Server) -> None:
    opened, failures = await open_sockets(srv, [None], [None], False)
    if failures:
        raise RuntimeError(f"could not open a socket to warm up: {failures[0]}")
    await opened[0].ws.send("<p>warming up</p>")
    await load.settle(0.3, 5)
    await load.close_clients(opened)
    await load.settle(0.3, 5)


def html_frame_size(clients: list[Client]) -> int:
    """Mean size of the HTML frames the people other than the poster received."""
    frames = sum(c.html_frames for c in clients[1:])
    return round(sum(c.html_bytes for c in clients[1:]) / frames) if frames else 0


def frames_of_type(clients: list[Client], kind: str) -> int:
    return sum(c.json_types.get(kind, 0) for c in clients)


# Printing


def ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value * 1000:.1f}"


def num(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def ratio(ours: float | None, bare: float | None) -> str:
    if not ours or not bare:
        return "-"
    return f"{ours / bare:.2f}"


def closed(figures: Figures) -> str:
    """How many sockets the server closed, with the close codes: "20 (4429×20)"."""
    if not figures.closed_clients:
        return "0"
    codes = ", ".join(f"{code}×{n}" for code, n in sorted(figures.close_codes.items()))
    return f"{figures.closed_clients} ({codes})"


def failed(connected: Connected) -> str:
    """How many sockets did not open, and the commonest reason."""
    if not connected.failures:
        return "0"
    reason, n = Counter(connected.failures).most_common(1)[0]
    return f"{len(connected.failures)} ({n}: {reason[:60]})"


def num0(value: float | int | None) -> str:
    return num(value, 0)


def num2(value: float | int | None) -> str:
    return num(value, 2)


Row = tuple[str, str, str, str]


def row(label: str, ours, bare, show=num, *, compare: bool = False) -> Row:
    """A table line: our figure, the bare relay's, and their ratio when it means something."""
    return (label, show(ours), show(bare), ratio(ours, bare) if compare else "")


def per_delivery_us(figures: Figures) -> float | None:
    if figures.server_cpu is None or not figures.received:
        return None
    return 1e6 * figures.server_cpu / figures.received


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    print(f"  {'':<38} {'calpico':>14} {'bare':>10} {'ratio':>7}")
    for label, ours, bare, r in rows:
        print(f"  {label:<38} {ours:>14} {bare:>10} {r:>7}")


def limits_note(args: argparse.Namespace) -> str:
    if args.url:
        return "rate limits: those of the server at --url (posts it refuses fail the run)"
    return "rate limits for this run: " + ", ".join(f"{k}={v}" for k, v in BENCH_LIMITS.items())


def refused_posts(label: str, figures: Figures) -> bool:
    """Say loudly that posts were refused: the figures then measure refusals, not messages."""
    if not figures.post_errors:
        return False
    print(
        f"  !!! {label}: {len(figures.post_errors)} of {figures.messages} posts were refused or failed; "
        "these figures do not measure what they say"
    )
    for error in figures.post_errors[:3]:
        print(f"      {error}")
    return True


def machine_notes() -> str:
    return (
        f"{os.cpu_count()} CPUs; load generator and server on the same machine; "
        f"Python {sys.version.split()[0]}; nice {os.getpriority(os.PRIO_PROCESS, 0)}; "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )


# Modes


async def fanout_mode(bench: Bench) -> dict:
    """The default: the same messages at the same rate to each server, one after the other."""
    args = bench.args
    results: dict[str, dict] = {}
    frame_bytes = 0
    for kind in ("calpico", "bare"):
        target = await bench.open_target(kind, frame_bytes=frame_bytes, processes=args.processes)
        try:
            before = [(c.html_frames, c.html_bytes) for c in target.clients]
            figures = await bench.run_phase(target, args.rate, args.messages)
            if kind == "calpico":
                pairs = list(zip(target.clients[1:], before[1:], strict=True))
                frames = sum(c.html_frames - f for c, (f, _) in pairs)
                size = sum(c.html_bytes - b for c, (_, b) in pairs)
                frame_bytes = round(size / frames) if frames else 0
            results[kind] = {
                "figures": figures,
                "connected": target.connected,
                "error_frames": frames_of_type(target.clients, "error"),
                "unread_frames": frames_of_type(target.clients, "unread"),
                "presence_frames": frames_of_type(target.clients, "presence"),
                "frame_bytes": frame_bytes,
                "rss_end_kib": target.rss_kib(),
            }
        finally:
            await target.close()
    return results


def print_fanout(args: argparse.Namespace, results: dict) -> bool:
    ours, bare = results["calpico"], results["bare"]
    fo: Figures = ours["figures"]
    fb: Figures = bare["figures"]
    co: Connected = ours["connected"]
    cb: Connected = bare["connected"]
    print()
    print(
        f"Fan-out: {fo.clients} clients in one room, {fo.messages} messages at {fo.rate:g}/s "
        f"({fo.clients * fo.rate:,.0f} deliveries/s offered), {args.layer} layer"
        + ("; clients send read frames like a visible page" if args.read_frames else "")
    )
    print(f"  {machine_notes()}")
    print(f"  daphne open-file limit: {co.open_files_limit}")
    print(f"  {limits_note(args)}")
    if args.processes > 1:
        print(
            f"  each server is {args.processes} daphne processes (figures summed; CPU per process: "
            f"calpico {process_percents(fo)}, bare {process_percents(fb)} % of one core)"
        )
    print()

    def latency(label: str, fraction: float) -> Row:
        return row(label, fo.pct(fraction), fb.pct(fraction), ms, compare=True)

    rows = [
        latency("delivery latency p50 (ms)", 0.5),
        latency("delivery latency p95 (ms)", 0.95),
        latency("delivery latency p99 (ms)", 0.99),
        latency("delivery latency max (ms)", 1.0),
        row("deliveries per second", fo.deliveries_per_second, fb.deliveries_per_second, num0),
        row("deliveries expected", fo.expected, fb.expected),
        row(f"lost (not there {args.grace:g} s after the last send)", fo.lost, fb.lost),
        row("duplicated", fo.duplicates, fb.duplicates),
        row("post errors", len(fo.post_errors), len(fb.post_errors)),
        ("sockets closed during the run", closed(fo), closed(fb), ""),
        row("error frames received", ours["error_frames"], None),
        ("post response p50 / p99 (ms)", f"{ms(fo.response_p50)} / {ms(fo.response_p99)}", "-", ""),
        row("worst send lag behind schedule (ms)", fo.send_lag, fb.send_lag, ms),
        ("message frame size (bytes)", num(ours["frame_bytes"]), num(ours["frame_bytes"]) + "*", ""),
        row("server CPU s during the messages", fo.server_cpu, fb.server_cpu, num2, compare=True),
        row("server CPU, % of one core", fo.percent(fo.server_cpu), fb.percent(fb.server_cpu), num0),
        row("server CPU per delivery (µs)", per_delivery_us(fo), per_delivery_us(fb), num0),
        row(
            "load generator CPU, % of one core",
            fo.percent(fo.generator_cpu),
            fb.percent(fb.generator_cpu),
            num0,
        ),
        row("other processes' CPU, % of one core", fo.percent(fo.other_cpu), fb.percent(fb.other_cpu), num0),
        row(
            "... of which PostgreSQL and Redis",
            fo.percent(fo.services_cpu),
            fb.percent(fb.services_cpu),
            num0,
        ),
        row("RSS before connecting (MiB)", co.rss_before_kib, cb.rss_before_kib, mib),
        row("RSS with all connected (MiB)", co.rss_after_kib, cb.rss_after_kib, mib),
        row("RSS per connection (KiB)", co.kib_per_connection, cb.kib_per_connection, compare=True),
        row("RSS after the messages (MiB)", ours["rss_end_kib"], bare["rss_end_kib"], mib),
        row(f"opening {co.clients} sockets (s)", co.seconds, cb.seconds, num2),
        ("sockets that failed to open", failed(co), failed(cb), ""),
        row("... then until quiet (s)", co.settle_seconds, cb.settle_seconds, num2),
        row("server CPU s for connecting", co.server_cpu, cb.server_cpu, num2, compare=True),
        row("presence frames received", ours["presence_frames"], None),
    ]
    print_table(rows)
    print("  * bare frames are padded to the size of Calpico's message frames")
    if co.settle_seconds >= args.settle_limit - 0.1:
        print(
            f"  ! Calpico was still sending presence frames {args.settle_limit:g} s after the last socket"
            " opened; the first messages competed with them"
        )
    refused = [refused_posts(label, figures) for label, figures in (("calpico", fo), ("bare", fb))]
    print()
    clean = fo.clean and fb.clean and not any(refused)
    within = bool(fo.latencies and fb.latencies and fo.pct(0.99) <= 2 * fb.pct(0.99))
    print("Targets")
    print(f"  nothing lost or duplicated ............. {'met' if clean else 'MISSED'}")
    print(
        f"  p99 at most twice the bare relay's ..... {'met' if within else 'MISSED'}"
        f" ({ms(fo.pct(0.99))} ms vs 2 × {ms(fb.pct(0.99))} ms)"
    )
    return clean and within


async def idle_mode(bench: Bench) -> dict:
    results = {}
    for kind in ("calpico", "bare"):
        target = await bench.open_target(kind)
        try:
            srv = target.server
            cpu0, start = srv.cpu_seconds(), time.monotonic()
            with bench.sampled([srv], "idle"):
                await asyncio.sleep(bench.args.hold)
            held = time.monotonic() - start
            results[kind] = {
                "connected": target.connected,
                "rss_held_kib": srv.rss_kib(),
                "idle_cpu_percent": None if cpu0 is None else 100 * (srv.cpu_seconds() - cpu0) / held,
                "still_open": sum(1 for c in target.clients if c.closed_code is None),
                "presence_frames": frames_of_type(target.clients, "presence"),
                "held": held,
            }
            if bench.args.storm:
                results[kind]["storm"] = await reconnect_storm(bench, target)
        finally:
            await target.close()
    return results


async def reconnect_storm(bench: Bench, target: Target) -> dict:
    """A deploy with everyone online: the server is stopped as a deploy stops it (SIGTERM;
    Calpico closes its sockets with 1012) and a new process started on the same port; once
    it answers, every page opens its socket again at the same moment. Reports how long until
    the last hello, and every socket that was refused or got no hello."""
    srv = target.server
    if not isinstance(srv, server.Daphne):
        return {}
    members = bench.setup.members
    if target.kind == "calpico":
        cookies: list[str | None] = list(bench.setup.cookies())
        rooms: list[int | None] = [m.room_id for m in members]
    else:
        cookies, rooms = [None] * len(members), [None] * len(members)
    srv.restart()
    await load.close_clients(target.clients)
    target.clients = []
    await load.settle(0.3, 5)
    rss0, cpu0 = srv.rss_kib(), srv.cpu_seconds()
    machine0, generator0 = machine_busy_seconds(), cpu_now()
    start = time.monotonic()
    with bench.sampled([srv], "storm"):
        clients, failures = await open_sockets(
            srv,
            cookies,
            rooms,
            False,
            limit=bench.args.storm_limit,
            at_once=True,
            resume_seqs=await bench.resume_seqs() if target.kind == "calpico" else None,
        )
        seconds = time.monotonic() - start
        settle_seconds = await load.settle(0.5, bench.args.settle_limit)
    cpu = srv.cpu_seconds() - cpu0
    elapsed = time.monotonic() - start
    other = machine_busy_seconds() - machine0 - cpu - (cpu_now() - generator0)
    target.clients = clients
    hellos = sorted(c.hello_at - start for c in clients if c.hello_at is not None)
    return {
        "sockets": len(cookies),
        "opened": len(clients),
        "failures": failures,
        "seconds": seconds,
        "hello_p50": load.percentile(hellos, 0.5) if hellos else None,
        "hello_p99": load.percentile(hellos, 0.99) if hellos else None,
        "settle_seconds": settle_seconds,
        "server_cpu": cpu,
        "rss_before_kib": rss0,
        "rss_after_kib": srv.rss_kib(),
        "other_cpu_percent": 100 * other / elapsed,
    }


def print_idle(args: argparse.Namespace, results: dict) -> bool:
    ours, bare = results["calpico"], results["bare"]
    co: Connected = ours["connected"]
    cb: Connected = bare["connected"]
    rooms = -(-args.idle // args.room_size)
    print()
    print(
        f"Idle connections: {args.idle:,} sockets, one person each, in {rooms} rooms of "
        f"{min(args.room_size, args.idle)}, {args.layer} layer, held {ours['held']:.0f} s"
        + ("; Calpico's sockets resume as a room page does" if args.resume else "")
    )
    print(f"  {machine_notes()}")
    print(f"  daphne open-file limit: {co.open_files_limit}")
    print()

    def held_per_connection(result: dict, connected: Connected) -> float | None:
        if connected.rss_before_kib is None or result["rss_held_kib"] is None:
            return None
        return (result["rss_held_kib"] - connected.rss_before_kib) / connected.clients

    def per_socket_ms(connected: Connected) -> float | None:
        if connected.server_cpu is None or not connected.clients:
            return None
        return 1000 * connected.server_cpu / connected.clients

    held_o, held_b = held_per_connection(ours, co), held_per_connection(bare, cb)
    rows = [
        row("sockets open at the end", ours["still_open"], bare["still_open"]),
        row("RSS before connecting (MiB)", co.rss_before_kib, cb.rss_before_kib, mib),
        row("RSS with all connected (MiB)", co.rss_after_kib, cb.rss_after_kib, mib),
        row("RSS after holding (MiB)", ours["rss_held_kib"], bare["rss_held_kib"], mib),
        row("RSS per connection (KiB)", co.kib_per_connection, cb.kib_per_connection, compare=True),
        row("RSS per connection after holding (KiB)", held_o, held_b, compare=True),
        row("opening the sockets (s)", co.seconds, cb.seconds, num2),
        ("sockets that failed to open", failed(co), failed(cb), ""),
        row("... then until quiet (s)", co.settle_seconds, cb.settle_seconds, num2),
        row("server CPU s for connecting", co.server_cpu, cb.server_cpu, num2, compare=True),
        row("server CPU per socket opened (ms)", per_socket_ms(co), per_socket_ms(cb), num2, compare=True),
        row("presence frames received", ours["presence_frames"], None),
        row("server CPU while idle, % of one core", ours["idle_cpu_percent"], bare["idle_cpu_percent"]),
    ]
    so, sb = ours.get("storm"), bare.get("storm")
    if so and sb:

        def storm_failed(storm: dict) -> str:
            if not storm["failures"]:
                return "0"
            reason, n = Counter(storm["failures"]).most_common(1)[0]
            return f"{len(storm['failures'])} ({n}: {reason[:60]})"

        rows += [
            ("reconnect storm: sockets at once", num(so["sockets"]), num(sb["sockets"]), ""),
            ("... refused or without hello", storm_failed(so), storm_failed(sb), ""),
            row("... until the last hello (s)", so["seconds"], sb["seconds"], num2),
            row("... time to hello p50 (s)", so["hello_p50"], sb["hello_p50"], num2),
            row("... time to hello p99 (s)", so["hello_p99"], sb["hello_p99"], num2),
            row("... then until quiet (s)", so["settle_seconds"], sb["settle_seconds"], num2),
            row("... server CPU s", so["server_cpu"], sb["server_cpu"], num2, compare=True),
            row("... RSS after (MiB)", so["rss_after_kib"], sb["rss_after_kib"], mib),
            row("... other processes, % of one core", so["other_cpu_percent"], sb["other_cpu_percent"], num0),
        ]
    print_table(rows)
    print()
    for label, connected in (("calpico", co), ("bare", cb)):
        for reason, n in Counter(connected.failures).most_common(3):
            print(f"  {label}: {n} sockets failed to open: {reason}")
    for label, storm in (("calpico", so), ("bare", sb)):
        for reason, n in Counter((storm or {}).get("failures", [])).most_common(3):
            print(f"  {label}: {n} sockets failed to open in the storm: {reason}")
    held = ours["still_open"] == args.idle
    cpu_ms = per_socket_ms(co)
    kib = co.kib_per_connection
    idle = ours["idle_cpu_percent"]
    print("Targets")
    print(
        f"  {args.idle:,} idle connections held ........ {'met' if held else 'MISSED'} ({num(kib)} KiB each)"
    )
    checks = [
        held,
        report_target(
            f"server CPU per socket opened at most {CONNECT_CPU_MS:g} ms", cpu_ms, CONNECT_CPU_MS, "ms"
        ),
        report_target(f"RSS per idle socket at most {IDLE_KIB:g} KiB", kib, IDLE_KIB, "KiB"),
        report_target(f"idle CPU at most {IDLE_CPU_PERCENT:g}% of a core", idle, IDLE_CPU_PERCENT, "%"),
    ]
    if so:
        ok = so["opened"] == so["sockets"] and not so["failures"]
        print(
            f"  reconnect storm of {so['sockets']:,}: none refused ... {'met' if ok else 'MISSED'}"
            f" ({len(so['failures'])} refused or without hello; the last hello after {so['seconds']:.1f} s)"
        )
        checks.append(ok)
    return all(checks)


def report_target(label: str, value: float | None, limit: float, unit: str) -> bool:
    ok = value is not None and value <= limit
    print(f"  {label} ... {'met' if ok else 'MISSED'} ({num(value, 2)} {unit})")
    return ok


def find_max_runs(processes: int) -> list[tuple[str, int]]:
    """Which servers --find-max measures, in order: with --processes N, each with one
    process and then with N, in the same sitting."""
    if processes == 1:
        return [("calpico", 1), ("bare", 1)]
    return [("calpico", 1), ("calpico", processes), ("bare", 1), ("bare", processes)]


def run_label(kind: str, processes: int) -> str:
    return kind if processes == 1 else f"{kind}×{processes}"


async def find_max_mode(bench: Bench) -> dict:
    """Step the rate up until p99 reaches the limit (or anything is lost), then bisect."""
    args = bench.args
    rates = [float(r) for r in args.rates.split(",")]
    results: dict = {}
    frame_bytes = 0
    for kind, processes in find_max_runs(args.processes):
        label = run_label(kind, processes)
        target = await bench.open_target(kind, frame_bytes=frame_bytes, processes=processes)
        steps: list[Figures] = []
        try:
            passed, failed = None, None
            for rate in rates:
                figures = await find_max_step(bench, target, rate, steps)
                if not figures.meets(P99_LIMIT):
                    failed = rate
                    break
                passed = rate
            for _ in range(args.refine):
                if passed is None or failed is None or failed - passed < max(2, passed * 0.1):
                    break
                middle = round((passed + failed) / 2)
                if (await find_max_step(bench, target, middle, steps)).meets(P99_LIMIT):
                    passed = middle
                else:
                    failed = middle
            if kind == "calpico" and not frame_bytes:
                frame_bytes = html_frame_size(target.clients)
            results[label] = steps
            results[f"{label}_max"] = passed
            results[f"{label}_first_over"] = failed
            results[f"{label}_error_frames"] = frames_of_type(target.clients, "error")
        finally:
            await target.close()
    return results


async def post_cost_mode(bench: Bench) -> dict:
    """What a posted message costs the server, not counting its fan-out: the room has
    --clients members but only the poster's own socket is open; the relay sends the same
    number of frames through one socket."""
    args = bench.args
    results: dict[str, Figures] = {}
    for kind in ("calpico", "bare"):
        target = await bench.open_target(kind, sockets=1)
        try:
            # Warm up (first queries, templates, code paths), then measure.
            await bench.run_phase(target, args.rate, 20)
            results[kind] = await bench.run_phase(target, args.rate, args.messages)
        finally:
            await target.close()
        await load.settle(0.5, 10)
    return results


def print_post_cost(args: argparse.Namespace, results: dict) -> bool:
    fo: Figures = results["calpico"]
    fb: Figures = results["bare"]

    def per_message(figures: Figures) -> float | None:
        return None if figures.server_cpu is None else 1000 * figures.server_cpu / figures.messages

    print()
    print(
        f"Post cost: {fo.messages} messages at {fo.rate:g}/s into a room of {args.clients} members, "
        f"one socket open (the poster's), {args.layer} layer"
    )
    print(f"  {machine_notes()}")
    print(f"  {limits_note(args)}")
    print()
    rows = [
        row("server CPU per message (ms)", per_message(fo), per_message(fb), num2, compare=True),
        ("post response p50 / p99 (ms)", f"{ms(fo.response_p50)} / {ms(fo.response_p99)}", "-", ""),
        row("delivery latency p50 (ms)", fo.pct(0.5), fb.pct(0.5), ms, compare=True),
        row("other processes' CPU, % of one core", fo.percent(fo.other_cpu), fb.percent(fb.other_cpu), num0),
    ]
    print_table(rows)
    refused = [refused_posts(label, figures) for label, figures in (("calpico", fo), ("bare", fb))]
    cost = per_message(fo)
    met = cost is not None and cost <= 4.0
    print()
    print("Targets")
    print(f"  server CPU per posted message at most 4 ms ... {'met' if met else 'MISSED'} ({num2(cost)} ms)")
    return met and fo.clean and not any(refused)


async def find_max_step(bench: Bench, target: Target, rate: float, steps: list[Figures]) -> Figures:
    count = max(10, round(rate * bench.args.step_seconds))
    for attempt in range(1 + bench.args.retries):
        if attempt:
            # Another process took the CPUs during the step: its figures say nothing about us.
            busy = await asyncio.to_thread(wait_for_quiet, bench.args.retry_wait)
            print(f"  {target.label:<10} {rate:>6g}/s  again: other processes were busy (now {busy:.0f}%)")
        figures = await bench.run_phase(target, rate, count)
        if (figures.percent(figures.other_cpu) or 0) <= OTHER_CPU_LIMIT:
            break
        if bench.args.retry_missed_only and figures.meets(P99_LIMIT):
            break  # met even with the others busy
    steps.append(figures)
    server_cpu = num(figures.percent(figures.server_cpu), 0)
    if len(figures.process_cpu) > 1:
        server_cpu += f" ({process_percents(figures)})"
    print(
        f"  {target.label:<10} {rate:>6g}/s  p50 {ms(figures.pct(0.5)):>8} ms"
        f"  p99 {ms(figures.pct(0.99)):>8} ms  max {ms(figures.pct(1.0)):>8} ms"
        f"  lost {figures.lost:>6}  dup {figures.duplicates}"
        f"  closed {closed(figures)}  CPU: server {server_cpu:>3}%"
        f" generator {figures.percent(figures.generator_cpu):3.0f}%"
        f" other {num(figures.percent(figures.other_cpu), 0):>3}%"
        + (
            f" (PostgreSQL and Redis {num(figures.percent(figures.services_cpu), 0)}%)"
            if figures.services_cpu is not None
            else ""
        )
        + f"  {'ok' if figures.meets(P99_LIMIT) else 'over'}",
        flush=True,
    )
    refused_posts(target.label, figures)
    await load.settle(0.5, 10)
    return figures


def process_percents(figures: Figures) -> str:
    """Each server process's CPU in % of one core: "48+45"."""
    return "+".join(num(figures.percent(cpu), 0) for cpu in figures.process_cpu)


def print_find_max(args: argparse.Namespace, results: dict) -> bool:
    ours, bare = results["calpico_max"], results["bare_max"]
    print()
    print(
        f"Highest rate with p99 < {P99_LIMIT * 1000:.0f} ms and nothing lost: {args.clients} clients "
        f"in one room, {args.layer} layer, {args.step_seconds:g} s per step"
        + ("; clients send read frames" if args.read_frames else "")
    )
    print(f"  {machine_notes()}")
    print(f"  {limits_note(args)}")
    if args.processes > 1:
        print(
            f"  ×{args.processes}: {args.processes} daphne processes on the same database and Redis, "
            "the sockets split between them, messages posted to each in turn"
        )
    refused = False
    for kind, processes in find_max_runs(args.processes):
        label = run_label(kind, processes)
        first_over = results[f"{label}_first_over"]
        top = results[f"{label}_max"]
        generator = max((f.percent(f.generator_cpu) or 0 for f in results[label]), default=0)
        print(
            f"  {label:<10} {f'{top:g}' if top else 'none':>6} messages/s"
            f" ({num(top * args.clients, 0) if top else '-'} deliveries/s);"
            f" first rate over: {f'{first_over:g}' if first_over else 'none tried'};"
            f" load generator peaked at {generator:.0f}% of a core"
        )
        at_top = [f for f in results[label] if f.rate == top][-1:]
        for figures in at_top:
            print(
                f"  {'':<10} at {top:g}/s, % of one core:"
                f" server {num(figures.percent(figures.server_cpu), 0)}"
                + (f" ({process_percents(figures)})" if processes > 1 else "")
                + f", load generator {num(figures.percent(figures.generator_cpu), 0)}"
                f", other processes {num(figures.percent(figures.other_cpu), 0)}"
                + (
                    f" (PostgreSQL and Redis {num(figures.percent(figures.services_cpu), 0)})"
                    if figures.services_cpu is not None
                    else ""
                )
            )
        refused = any([refused_posts(label, f) for f in results[label]]) or refused
    ok = bool(ours and bare and ours >= bare)
    print()
    print("Targets")
    print(
        f"  our highest rate at least the bare relay's ... {'met' if ok else 'MISSED'}"
        f" ({f'{ours:g}' if ours else 'none'} vs {f'{bare:g}' if bare else 'none'})"
    )
    if args.processes > 1:
        label = run_label("calpico", args.processes)
        several = results[f"{label}_max"]
        scaled = bool(ours and several and several >= PROCESSES_FACTOR * ours)
        bare_several = results[f"{run_label('bare', args.processes)}_max"]
        print(
            f"  {args.processes} processes' highest rate at least {PROCESSES_FACTOR:g}× one's ... "
            f"{'met' if scaled else 'MISSED'} ({f'{several:g}' if several else 'none'} vs "
            f"{PROCESSES_FACTOR:g} × {f'{ours:g}' if ours else 'none'}; the bare relay: "
            f"{f'{bare_several:g}' if bare_several else 'none'} vs {f'{bare:g}' if bare else 'none'})"
        )
        ok = ok and scaled
    if refused:
        print("  !!! posts were refused or failed: the highest rates above do not measure what they say")
    return ok and not refused


# Running it all


def raise_open_file_limit() -> int:
    """Soft limit up to the hard one; daphne children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--clients", type=int, default=200, help="sockets, one person each, all in one room (default 200)")
    add("--messages", type=int, default=80, help="messages to post (default 80: 8 s at 10/s)")
    add("--rate", type=float, default=10.0, help="messages per second (default 10)")
    add(
        "--layer",
        choices=["memory", "redis"],
        default="memory",
        help="memory: SQLite and the in-memory channel layer; redis: PostgreSQL and Redis pub/sub",
    )
    add("--grace", type=float, default=5.0, help="seconds to wait for stragglers after the last send")
    add(
        "--settle-limit",
        type=float,
        default=None,
        help="at most this long to wait for quiet after connecting (default 15 s; 30 s with "
        "--find-max and --idle)",
    )
    add(
        "--read-frames",
        action="store_true",
        help="clients answer every HTML frame with a read frame, as static/js/live.js does on a visible page",
    )
    add(
        "--idle",
        type=int,
        metavar="N",
        nargs="?",
        const=2000,
        help="instead: hold N idle sockets (default 2000) and report memory per connection",
    )
    add(
        "--connect-concurrency",
        type=int,
        default=50,
        help="handshakes in flight at once while opening the sockets (default 50)",
    )
    add(
        "--connect-limit",
        type=float,
        default=150.0,
        metavar="S",
        help="stop opening sockets after S seconds and go on with those open (default 150)",
    )
    add("--room-size", type=int, default=50, help="with --idle: people per room (default 50)")
    add(
        "--resume",
        action="store_true",
        help="Calpico's sockets resume after their hello as a room page does (static/js/live.js), "
        "showing the room's last 50 messages, and count as open at caught_up",
    )
    add(
        "--hold",
        type=float,
        default=35.0,
        help="with --idle: seconds to hold the sockets open (default 35: longer than the presence "
        "refresh, PRESENCE_SECONDS / 2, so idle CPU includes it)",
    )
    add(
        "--storm",
        action="store_true",
        help="with --idle: then restart the server as a deploy does and open every socket again "
        "at the same moment; report how long until the last hello and any refused",
    )
    add(
        "--storm-limit",
        type=float,
        default=120.0,
        metavar="S",
        help="with --storm: give up on a socket that has no hello S seconds after the storm began",
    )
    add(
        "--post-cost",
        action="store_true",
        help="instead: server CPU per posted message with only the poster's socket open (no fan-out)",
    )
    add("--find-max", action="store_true", help="instead: step the rate up to the highest with p99 < 250 ms")
    add(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="with --layer redis: N daphne processes per server on the same database and Redis, the "
        "sockets split between them and messages posted to each in turn; --find-max then measures "
        f"one process and N in the same run (target: N's highest rate at least {PROCESSES_FACTOR:g}× one's)",
    )
    add("--rates", default=FIND_MAX_RATES, help=f"with --find-max: rates to try (default {FIND_MAX_RATES})")
    add("--step-seconds", type=float, default=4.0, help="with --find-max: seconds per rate (default 4)")
    add(
        "--retries",
        type=int,
        default=2,
        help="with --find-max: run a step again (up to this often) when other processes used "
        f"more than {OTHER_CPU_LIMIT:.0f}%% of a core during it",
    )
    add(
        "--retry-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="with --retries: first wait up to S seconds for the others to leave the CPUs idle (default 60)",
    )
    add(
        "--retry-missed-only",
        action="store_true",
        help="with --retries: run again only the steps that missed the limit (on a machine others "
        "keep busy: a step met with them busy stands)",
    )
    add(
        "--priority",
        type=int,
        default=0,
        metavar="NICE",
        help="run the load generator and the servers at this nice value (e.g. -10 on a shared "
        "machine; below 0 needs root)",
    )
    add("--refine", type=int, default=2, help="with --find-max: bisection steps after the first miss")
    add(
        "--url",
        help="use this running Calpico instead of starting one; its DATABASE_URL, CALPICO_VAR_DIR "
        "and SECRET_KEY must be in this environment too",
    )
    add("--server-pid", type=int, help="with --url: its process id, for memory and CPU figures")
    add("--redis-url", default="redis://127.0.0.1:6379/9", help="Redis for --layer redis")
    add(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server in which --layer redis creates (and drops) its database",
    )
    add("--profile", type=Path, metavar="DIR", help="sample each server with py-spy into DIR")
    add("--py-spy", default=shutil.which("py-spy") or "py-spy", help="the py-spy executable for --profile")
    add("--profile-rate", type=int, default=100, help="with --profile: samples per second (default 100)")
    add(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S seconds for other processes to leave the CPUs mostly idle",
    )
    add("--json", type=Path, help="also write the figures to this file")
    add("--keep", action="store_true", help="keep the var/ directory and the daphne logs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    nofile = raise_open_file_limit()
    if args.priority:
        # Inherited by the daphne processes started later.
        os.setpriority(os.PRIO_PROCESS, 0, args.priority)
    if args.profile and not (shutil.which(args.py_spy) or Path(args.py_spy).is_file()):
        print(f"--profile needs py-spy; {args.py_spy!r} was not found (see --py-spy)", file=sys.stderr)
        return 2
    if args.processes > 1 and (args.layer != "redis" or args.url or args.idle or args.post_cost):
        print(
            "--processes needs --layer redis (processes share nothing else) and works with --find-max "
            "and the default mode only, not with --url",
            file=sys.stderr,
        )
        return 2
    if args.settle_limit is None:
        args.settle_limit = 30.0 if args.find_max or args.idle else 15.0
    people = args.idle if args.idle else args.clients
    room_size = args.room_size if args.idle else people
    if people + 100 > nofile:
        print(f"{people} sockets need more open files than the limit of {nofile}", file=sys.stderr)
        return 2

    def on_sigterm(signum, frame):
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_sigterm)
    atexit.register(server.stop_all)
    work_dir = Path(tempfile.mkdtemp(prefix="calpico-bench-"))
    started = time.monotonic()
    redis_url = args.redis_url if args.layer == "redis" else ""
    env: dict[str, str] = {}
    try:
        with ExitStack() as stack:
            if args.url:
                env = dict(os.environ)
                env.setdefault("DJANGO_SETTINGS_MODULE", "calpico.settings")
                env["ROOM_MAX_MEMBERS"] = str(room_size + 1)
            else:
                database = server.throwaway_postgres(args.postgres_url) if redis_url else nullcontext("")
                database_url = stack.enter_context(database)
                env = calpico_server_env(work_dir, database_url, redis_url, room_size + 1)
                print(
                    f"migrating a fresh {'PostgreSQL' if database_url else 'SQLite'} database ...", flush=True
                )
                migrate(env)
            print(f"creating {people} people, their rooms and sessions ...", flush=True)
            setup = create_people(env, people, room_size)
            print(f"  ready after {time.monotonic() - started:.1f} s", flush=True)
            quiet_from = time.monotonic()
            busy = wait_for_quiet(args.wait_quiet)
            quiet_wait = time.monotonic() - quiet_from
            print(f"  other processes were using {busy:.0f}% of a core just before the run", flush=True)
            bench = Bench(args, setup, work_dir, env)
            if args.idle:
                results = asyncio.run(idle_mode(bench))
                ok = print_idle(args, results)
            elif args.post_cost:
                results = asyncio.run(post_cost_mode(bench))
                ok = print_post_cost(args, results)
            elif args.find_max:
                results = asyncio.run(find_max_mode(bench))
                ok = print_find_max(args, results)
            else:
                results = asyncio.run(fanout_mode(bench))
                ok = print_fanout(args, results)
            waited = f" (of which {quiet_wait:.0f} s waiting for a quiet machine)" if quiet_wait >= 1 else ""
            print(f"\nfinished in {time.monotonic() - started:.1f} s{waited}")
            if args.json:
                args.json.write_text(json.dumps(as_json(args, results), indent=2, default=str))
        return 0 if ok else 1
    finally:
        server.stop_all()
        if redis_url and env.get("CACHE_KEY_PREFIX") and not args.url:
            try:
                cleanup_redis(redis_url, env)
            except Exception as exc:
                print(f"could not clean Redis: {exc}", file=sys.stderr)
        if args.keep:
            print(f"kept {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def as_json(args: argparse.Namespace, results: dict) -> dict:
    def convert(value):
        if isinstance(value, Figures):
            has = bool(value.latencies)
            return {
                "clients": value.clients,
                "messages": value.messages,
                "rate": value.rate,
                "p50_ms": value.pct(0.5) * 1000 if has else None,
                "p95_ms": value.pct(0.95) * 1000 if has else None,
                "p99_ms": value.pct(0.99) * 1000 if has else None,
                "max_ms": value.pct(1.0) * 1000 if has else None,
                "mean_ms": statistics.fmean(value.latencies) * 1000 if has else None,
                "deliveries_per_second": value.deliveries_per_second,
                "expected": value.expected,
                "lost": value.lost,
                "duplicates": value.duplicates,
                "post_errors": value.post_errors[:5],
                "closed_clients": value.closed_clients,
                "server_cpu_s": value.server_cpu,
                "generator_cpu_s": value.generator_cpu,
                "other_cpu_s": value.other_cpu,
                "services_cpu_s": value.services_cpu,
                "process_cpu_s": value.process_cpu,
                "elapsed_s": value.elapsed,
                "response_p50_ms": None if value.response_p50 is None else value.response_p50 * 1000,
                "response_p99_ms": None if value.response_p99 is None else value.response_p99 * 1000,
                "slowest_receiver_per_message_ms": [
                    None if t is None else round(t * 1000, 1) for t in value.slowest_per_message
                ],
            }
        if isinstance(value, Connected):
            return {**value.__dict__, "kib_per_connection": value.kib_per_connection}
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return {"args": {k: str(v) for k, v in vars(args).items()}, "results": convert(results)}


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
