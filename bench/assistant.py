"""How much Calpico adds to the assistant's streamed replies, next to calling the model directly.

A benchmark that prints figures, not a test. It starts the fake OpenAI-compatible server
(tests/fake_openai.py, in its own process) streaming a fixed reply at a fixed token rate,
and one daphne process serving Calpico pointed at it (fresh var/ directory, SQLite or with
--postgres-url a throwaway PostgreSQL database, the in-memory channel layer, the
assistant's runner inside daphne as `make run` has it). Then:

1. Sequential: N times, one at a time and in turn, (a) the openai SDK streams a reply
   straight from the fake server with one client kept for every call (and every third
   time with a new client per call, as the runner makes one per run); (b) a member with
   the room open on a WebSocket posts "@assistant ..." over HTTP, and the socket
   time-stamps the first frame carrying the reply's text and the frame with the finished
   message. The times the server stored for each run say where the time went.
2. Concurrency: for each K, K replies in K rooms (one member socket each) posted at the
   same moment, next to K direct SDK streams at once.
3. Spread: the same K replies posted evenly over one reply's duration instead.
4. Catch-up: a room with --catch-up-unread (1,000) unread messages; its member presses
   "Catch me up" (an HTTP post) and the socket time-stamps the private answer's first
   text and its end. The prompt's size is printed: what fits in ASSISTANT_CONTEXT_TOKENS.

Overhead is Calpico's percentile minus the direct SDK's percentile (one kept client).

    .venv/bin/python bench/assistant.py
    .venv/bin/python bench/assistant.py --priority -10 --wait-quiet 300    # on a shared machine
    .venv/bin/python bench/assistant.py --reply-words 600 --token-interval 0.01 --levels 1,4,8

docs/performance.md has the latest figures and what they mean.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    # Run as `python bench/assistant.py`: make `bench` and the project importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import openai
from websockets.asyncio.client import connect

from bench import fanout, load, sampling, server
from bench.fanout import Member, Setup
from bench.load import HttpPoster, percentile

TARGET_OVERHEAD = 0.025
IDLE_CONNECTION_SECONDS = 10.0
MODEL = "gpt-4o-mini"
# The fake server streams one word (with its leading space) per chunk; --reply-words takes
# this many words of the text below, repeated (40 by default: the whole of it).
REPLY = (
    "Here is a short answer so the benchmark has something to stream: the quick brown fox "
    "jumps over the lazy dog, then naps in the sun while the farmer counts his sheep twice and "
    "finds that none are missing today."
)


def reply_text(words: int) -> str:
    """`words` words of REPLY, repeated, in paragraphs of about 60 words like a long answer."""
    source = REPLY.split()
    chosen = [source[i % len(source)] for i in range(words)]
    return "\n\n".join(" ".join(chosen[i : i + 60]) for i in range(0, len(chosen), 60))


QUESTION = "what should the fox do next?"

# The assistant's message in a frame: the placeholder (streaming), the final one (done) and
# the ends of a run that did not finish (failed, stopped). See templates/rooms/_message.html.
ARTICLE = re.compile(
    r'<article class="message[^"]*\bmessage--assistant message--(streaming|done|failed|stopped)\b[^"]*"'
    r' id="m-(\d+)"'
)
# A partial-text push: templates/rooms/live/partial_text.html.
# The reply's text so far: in a partial-text frame, or in the message itself when its
# first words were in by the time it was announced.
PARTIAL = re.compile(r'id="m-(\d+)-body"[^>]*>(.*?)<span class="message__cursor"', re.DOTALL)
TAG = re.compile(r"<[^>]+>")
# Converts this process's monotonic clock to the wall clock the server stores times in.
WALL_OFFSET = time.time() - time.monotonic()


class BenchError(Exception):
    """Something broke: the figures would mean nothing."""


# The fake model, in its own process


class FakeModel:
    """`python -m tests.fake_openai` on a free port of 127.0.0.1. A process of its own, so
    its streaming threads do not share this process's GIL with the clients being timed."""

    def __init__(
        self, work_dir: Path, *, reply: str, token_interval: float, first_token_delay: float
    ) -> None:
        port = server.free_port()
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.log = work_dir / "fake-openai.log"
        command = [
            sys.executable,
            "-m",
            "tests.fake_openai",
            "--port",
            str(port),
            "--reply",
            reply,
            "--token-interval",
            str(token_interval),
            "--first-token-delay",
            str(first_token_delay),
            "--quiet",
        ]
        with self.log.open("w") as log_file:
            self.process = subprocess.Popen(
                command,
                cwd=server.PROJECT_DIR,
                env=server.base_env(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.process.pid
        deadline = time.monotonic() + server.STARTUP_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"the fake model exited with status {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError("the fake model did not listen in time") from None
                time.sleep(0.05)
        print(f"  fake model: pid {self.pid} serving {self.base_url}", flush=True)

    def stop(self) -> None:
        server.stop_process_group(self.process)


# A catch-up as its asker sees it

PRIVATE_TEXT = re.compile(r'id="pa-(\d+)-body"[^>]*>(.*?)</div>', re.DOTALL)


@dataclass
class CatchUpTrial:
    """One "Catch me up" and when its private answer showed on the asker's socket."""

    sent: float = 0.0
    first_text: float | None = None
    done: float | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def see(self, frame: str, now: float) -> None:
        if self.first_text is None and any(TAG.sub("", t).strip() for _, t in PRIVATE_TEXT.findall(frame)):
            self.first_text = now
        if "private-answer--done" in frame or "private-answer--failed" in frame:
            self.done = now
            self.finished.set()


def seed_unread(member: Member, count: int) -> None:
    """`count` messages in the member's room, all after their read position."""
    from rooms.models import Membership
    from rooms.services import do_post_message

    membership = Membership.objects.select_related("room", "user").get(
        room_id=member.room_id, user_id=member.user_id
    )
    read = membership.room.last_seq
    for i in range(count):
        do_post_message(membership, f"Message {i}: {REPLY[: 40 + i % 80]}")
    Membership.objects.filter(pk=membership.pk).update(last_read_seq=read)


def catch_up_prompt_size() -> tuple[int, int, int | None, int, int]:
    """The latest catch-up's prompt: characters, estimated tokens, tokens the API reported,
    messages in it and messages left out."""
    from assistant.asking import catch_up_prompt
    from assistant.models import AssistantRun, PrivateAnswer
    from assistant.prompt import estimate_tokens

    run = AssistantRun.objects.filter(kind=AssistantRun.Kind.CATCH_UP).latest("id")
    prompt = catch_up_prompt(PrivateAnswer.objects.select_related("room", "user").get(run=run))
    text = "".join(str(entry["content"]) for entry in prompt)
    content = str(prompt[-1]["content"])
    left_out = re.match(r"(\d+) earlier unread messages", content)
    return (
        len(text),
        sum(estimate_tokens(str(entry["content"])) for entry in prompt),
        run.prompt_tokens,
        content.count("\n[#") + (1 if "[#" in content.split("\n", 1)[0] else 0),
        int(left_out.group(1)) if left_out else 0,
    )


# One reply as a member sees it


@dataclass
class Trial:
    """One "@assistant" post and when its reply showed on the poster's socket."""

    room_id: int
    sent: float = 0.0  # monotonic, just before the POST was written
    placeholder: float | None = None
    message_id: int | None = None
    first_text: float | None = None
    done: float | None = None
    text_only_at_end: bool = False
    error: str = ""
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def see(self, frame: str, now: float) -> None:
        for state, number in ARTICLE.findall(frame):
            message_id = int(number)
            if self.message_id is None:
                self.message_id = message_id
                self.placeholder = now
            if message_id != self.message_id:
                continue
            if state == "done":
                self.done = now
                if self.first_text is None:
                    self.first_text, self.text_only_at_end = now, True
                self.finished.set()
            elif state != "streaming":
                self.error = f"the reply ended {state}: {TAG.sub(' ', frame)[:300]!r}"
                self.finished.set()
        if self.message_id is not None and self.first_text is None:
            for number, html in PARTIAL.findall(frame):
                if int(number) == self.message_id and TAG.sub("", html).strip():
                    self.first_text = now

    @property
    def ttft(self) -> float:
        assert self.first_text is not None
        return self.first_text - self.sent

    @property
    def total(self) -> float:
        assert self.done is not None
        return self.done - self.sent


class MemberSocket(load.Client):
    """A member's page showing their room. load.Client hands every HTML frame to
    `_mark_read` when `read_frames` is set; this one time-stamps the assistant's frames
    there instead of answering with a read."""

    def __init__(self, ws, room_id: int) -> None:
        self.trial: Trial | None = None
        super().__init__(0, ws, room_id=room_id, read_frames=True)

    async def _mark_read(self, frame: str) -> None:
        now = time.monotonic()
        if self.trial is not None:
            self.trial.see(frame, now)


async def open_member_sockets(
    srv: server.Server, members: list[Member], timeout: float
) -> list[MemberSocket]:
    """One socket per member on `/ws/?room=<their room>`, each waited on until its hello."""

    async def open_one(member: Member) -> MemberSocket:
        ws = await connect(
            f"{srv.ws_url}/ws/?room={member.room_id}",
            origin=srv.url,
            additional_headers={"Cookie": f"sessionid={member.session_key}"},
            compression=None,
            proxy=None,
            ping_interval=None,
            open_timeout=timeout,
            close_timeout=5,
        )
        client = MemberSocket(ws, member.room_id)
        await asyncio.wait_for(client.hello.wait(), timeout)
        if client.closed_code is not None:
            raise BenchError(f"room {member.room_id}: the socket closed with code {client.closed_code}")
        return client

    results = await asyncio.gather(*(open_one(m) for m in members), return_exceptions=True)
    opened = [r for r in results if isinstance(r, MemberSocket)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await load.close_clients(opened)
        raise BenchError(f"{len(failures)} sockets did not open: {failures[0]!r}")
    return opened


async def calpico_reply(sock: MemberSocket, poster: HttpPoster, index: int, timeout: float) -> Trial:
    """Post "@assistant ..." as the room's member and wait for the finished reply."""
    trial = Trial(sock.room_id or 0)
    sock.trial = trial
    try:
        try:
            trial.sent, status, content = await asyncio.wait_for(
                poster.post(f"@assistant {QUESTION} ({index})"), timeout
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise BenchError(f"room {trial.room_id}: posting failed: {type(exc).__name__}: {exc}") from exc
        if status != 200:
            raise BenchError(f"room {trial.room_id}: posting answered HTTP {status}: {content[:200]!r}")
        try:
            await asyncio.wait_for(trial.finished.wait(), timeout)
        except TimeoutError:
            seen = "no placeholder" if trial.message_id is None else f"message {trial.message_id}"
            text = "no text" if trial.first_text is None else "some text"
            raise BenchError(
                f"room {trial.room_id}: no finished reply {timeout:g} s after posting ({seen}, {text})"
            ) from None
        if sock.closed_code is not None:
            raise BenchError(f"room {trial.room_id}: the socket closed with code {sock.closed_code}")
        if trial.error:
            raise BenchError(f"room {trial.room_id}: {trial.error}")
        return trial
    finally:
        sock.trial = None


# The same reply straight from the model


def sdk_client(base_url: str) -> openai.AsyncOpenAI:
    # What assistant/runner.py's make_client() builds, but for this process.
    return openai.AsyncOpenAI(api_key="bench", base_url=base_url, timeout=60, max_retries=0)


async def direct_reply(
    client: openai.AsyncOpenAI, index: int, start: float | None = None
) -> tuple[float, float]:
    """(time to the first content piece, time to the end of the stream) of one SDK call,
    from `start` (default: now)."""
    start = time.monotonic() if start is None else start
    first = None
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Bench: {QUESTION} ({index})"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    async with stream:
        async for chunk in stream:
            if first is None and any(c.delta and c.delta.content for c in chunk.choices):
                first = time.monotonic()
    end = time.monotonic()
    if first is None:
        raise BenchError("the fake model streamed no text")
    return first - start, end - start


async def direct_fresh_client(base_url: str, index: int) -> tuple[float, float]:
    """One SDK call on a client made for it and closed after, as the runner does per run."""
    start = time.monotonic()
    client = sdk_client(base_url)
    try:
        ttft, _ = await direct_reply(client, index, start)
    finally:
        await client.close()
    return ttft, time.monotonic() - start


# Figures


@dataclass
class Dist:
    """Times to first text and to the end, in seconds, of one set of replies."""

    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)

    def add(self, ttft: float, total: float) -> None:
        self.ttft.append(ttft)
        self.total.append(total)

    def pct(self, which: str, fraction: float) -> float:
        return percentile(sorted(getattr(self, which)), fraction)

    def __len__(self) -> int:
        return len(self.ttft)


@dataclass
class CpuWindow:
    """CPU seconds used by daphne, the fake model, this process and everything else."""

    daphne: float
    model: float
    generator: float
    other: float
    seconds: float

    def percent(self, value: float) -> float:
        return 100 * value / self.seconds if self.seconds else 0.0

    def __add__(self, other: CpuWindow) -> CpuWindow:
        return CpuWindow(
            self.daphne + other.daphne,
            self.model + other.model,
            self.generator + other.generator,
            self.other + other.other,
            self.seconds + other.seconds,
        )

    def describe(self) -> str:
        return (
            f"CPU, % of one core: daphne {self.percent(self.daphne):.0f}, fake model "
            f"{self.percent(self.model):.0f}, this process {self.percent(self.generator):.0f}, "
            f"other processes {max(0.0, self.percent(self.other)):.0f}"
        )


class CpuMeter:
    def __init__(self, daphne_pid: int | None, model_pid: int) -> None:
        self.pids = (daphne_pid, model_pid)

    def read(self) -> tuple[float, float, float, float, float]:
        daphne_pid, model_pid = self.pids
        return (
            server.cpu_seconds(daphne_pid) if daphne_pid else 0.0,
            server.cpu_seconds(model_pid),
            fanout.cpu_now(),
            fanout.machine_busy_seconds(),
            time.monotonic(),
        )

    @staticmethod
    def window(start: tuple, end: tuple) -> CpuWindow:
        daphne, model, generator, machine, seconds = (b - a for a, b in zip(start, end, strict=True))
        return CpuWindow(daphne, model, generator, machine - daphne - model - generator, seconds)


@dataclass
class Level:
    """K replies at once: Calpico's times, the direct SDK's, and what the CPUs did."""

    k: int
    calpico: Dist
    direct: Dist
    cpu: CpuWindow | None = None
    trials: list[Trial] = field(default_factory=list)
    # Stage name -> seconds for each reply; see breakdown().
    stages: list[tuple[str, list[float]]] = field(default_factory=list)

    @property
    def text_only_at_end(self) -> int:
        return sum(t.text_only_at_end for t in self.trials)

    def overhead(self, which: str, fraction: float = 0.5) -> float:
        return self.calpico.pct(which, fraction) - self.direct.pct(which, fraction)

    @property
    def cpu_per_reply(self) -> float:
        """Seconds of daphne's CPU per reply over the level's Calpico rounds."""
        return self.cpu.daphne / len(self.calpico) if self.cpu and len(self.calpico) else float("nan")


@dataclass
class Results:
    sequential: Level
    fresh: Dist
    levels: list[Level]
    spread: list[Level]


# Phases


class Bench:
    def __init__(self, args: argparse.Namespace, setup: Setup, srv: server.Server, model: FakeModel) -> None:
        self.args = args
        self.setup = setup
        self.srv = srv
        self.model = model
        self.cpu = CpuMeter(srv.pid, model.pid)
        self.sockets: list[MemberSocket] = []
        self.posters: list[HttpPoster] = []
        self.client = sdk_client(model.base_url)
        self.posted = 0
        self.last_post: dict[int, float] = {}

    async def open(self) -> None:
        members = self.setup.members
        self.posters = [
            HttpPoster(self.srv.host, self.srv.port, m.room_id, m.session_key, self.setup.csrf_token)
            for m in members
        ]
        # Templates, the consumer and a post once, so their first use is not timed.
        await fanout.warm_up_calpico(self.srv, members[0], self.posters[0])
        self.sockets = await open_member_sockets(self.srv, members, self.args.timeout)
        await load.settle(0.5, 10)
        # The runner, the SDK and both paths to the model once, untimed.
        await self.calpico(0)
        await direct_reply(self.client, 0)
        await direct_fresh_client(self.model.base_url, 0)
        await asyncio.sleep(self.args.pause)

    async def close(self) -> None:
        for poster in self.posters:
            await poster.close()
        await self.client.close()
        await load.close_clients(self.sockets)

    @contextmanager
    def sampled(self, stage: str) -> Iterator[None]:
        """With --profile: py-spy samples daphne for the duration of the block."""
        if not self.args.profile or not self.srv.pid:
            yield
            return
        self.args.profile.mkdir(parents=True, exist_ok=True)
        path = self.args.profile / f"calpico-{stage}.txt"
        sampler = sampling.Sampler(self.args.py_spy, self.srv.pid, path)
        try:
            yield
        finally:
            sampler.stop()
            print(f"  py-spy samples of daphne ({stage}) in {path}", flush=True)

    async def calpico(self, room: int) -> Trial:
        self.posted += 1
        poster = self.posters[room]
        if time.monotonic() - self.last_post.get(room, 0.0) > IDLE_CONNECTION_SECONDS:
            # Daphne (Twisted) closes an idle keep-alive connection after a minute; a post
            # on one it just closed would fail. Connecting is not part of the time measured.
            await poster.close()
        try:
            return await calpico_reply(self.sockets[room], poster, self.posted, self.args.timeout)
        finally:
            self.last_post[room] = time.monotonic()

    async def sequential(self) -> tuple[Level, Dist]:
        """N replies one at a time: direct (kept client), Calpico and every third time
        direct (new client) in turn, so a change in the machine's load touches all alike."""
        runs, rooms = self.args.runs, len(self.sockets)
        calpico, direct, fresh, trials = Dist(), Dist(), Dist(), []
        cpu = CpuWindow(0.0, 0.0, 0.0, 0.0, 0.0)
        for index in range(runs):
            direct.add(*await direct_reply(self.client, index))
            if index % 3 == 0:
                fresh.add(*await direct_fresh_client(self.model.base_url, index))
            before = self.cpu.read()
            trial = await self.calpico(index % rooms)
            cpu += self.cpu.window(before, self.cpu.read())
            calpico.add(trial.ttft, trial.total)
            trials.append(trial)
            print(
                f"  {index + 1:>3}/{runs}  Calpico first text {trial.ttft * 1000:6.1f} ms, done "
                f"{trial.total * 1000:6.1f} ms;  direct {direct.ttft[-1] * 1000:5.1f} / "
                f"{direct.total[-1] * 1000:6.1f} ms",
                flush=True,
            )
            await asyncio.sleep(self.args.pause)
        return Level(1, calpico, direct, cpu, trials), fresh

    async def level(self, k: int) -> Level:
        """K replies posted at the same moment in K rooms, some rounds of it, then as many
        direct SDK streams at once."""
        rounds = max(self.args.rounds, -(-self.args.min_samples // k))
        calpico, direct, trials = Dist(), Dist(), []
        start = self.cpu.read()
        for _ in range(rounds):
            for trial in await asyncio.gather(*(self.calpico(room) for room in range(k))):
                calpico.add(trial.ttft, trial.total)
                trials.append(trial)
            await asyncio.sleep(self.args.pause)
        cpu = self.cpu.window(start, self.cpu.read())
        for _ in range(rounds):
            for ttft, total in await asyncio.gather(*(direct_reply(self.client, i) for i in range(k))):
                direct.add(ttft, total)
            await asyncio.sleep(self.args.pause)
        level = Level(k, calpico, direct, cpu, trials)
        report(level, "at once")
        return level

    async def spread_level(self, k: int, direct: Dist, duration: float) -> Level:
        """K replies in K rooms, posted evenly over one reply's duration, so that about K
        stream at any moment without all starting together. `direct`: the SDK's times
        with K streams at once."""
        rounds = max(1, -(-self.args.min_samples // k))
        calpico, trials = Dist(), []
        start = self.cpu.read()

        async def later(room: int, delay: float) -> Trial:
            await asyncio.sleep(delay)
            return await self.calpico(room)

        for _ in range(rounds):
            for trial in await asyncio.gather(*(later(room, room * duration / k) for room in range(k))):
                calpico.add(trial.ttft, trial.total)
                trials.append(trial)
            await asyncio.sleep(self.args.pause)
        level = Level(k, calpico, direct, self.cpu.window(start, self.cpu.read()), trials)
        report(level, "spread")
        return level

    async def retried(self, measure) -> Level:
        """`measure()` once more (up to --retries times) after waiting for quiet, while other
        processes used more than fanout.OTHER_CPU_LIMIT % of a core during it."""
        for attempt in range(1 + self.args.retries):
            if attempt:
                busy = await asyncio.to_thread(fanout.wait_for_quiet, 60.0)
                print(f"  again: other processes were busy (now {busy:.0f}%)", flush=True)
            level = await measure()
            if level.cpu is None or level.cpu.percent(level.cpu.other) <= fanout.OTHER_CPU_LIMIT:
                break
        return level

    async def catch_up(self, unread: int) -> None:
        """Catch me up on a room with `unread` unread messages, as its member sees it."""
        member, sock = self.setup.members[0], self.sockets[0]
        print(f"catch-up: {unread:,} unread messages in one room", flush=True)
        await asyncio.to_thread(seed_unread, member, unread)
        await load.settle(0.5, 10)
        poster = HttpPoster(
            self.srv.host, self.srv.port, member.room_id, member.session_key, self.setup.csrf_token
        )
        poster.head = poster.head.replace(poster.path, f"/r/{member.room_id}/assistant/catch-up/")
        trial = CatchUpTrial()
        sock.trial = trial  # type: ignore[assignment]  # it time-stamps frames the same way
        try:
            trial.sent, status, content = await poster.post("")
            if status != 200:
                raise BenchError(f"catch-up answered HTTP {status}: {content[:200]!r}")
            await asyncio.wait_for(trial.finished.wait(), self.args.timeout)
        finally:
            sock.trial = None
            await poster.close()
        chars, estimated, reported, shown, left_out = await asyncio.to_thread(catch_up_prompt_size)
        first = (trial.first_text or trial.done or trial.sent) - trial.sent
        print(
            f"  catch-up of {unread:,} unread: first text {first * 1000:.1f} ms, done "
            f"{((trial.done or trial.sent) - trial.sent) * 1000:.1f} ms; prompt {chars:,} characters, "
            f"~{estimated:,} tokens estimated ({reported if reported is not None else '?'} reported), "
            f"{shown:,} messages in it, {left_out:,} older ones left out",
            flush=True,
        )

    async def run(self) -> Results:
        await self.open()
        try:
            print(f"sequential: {self.args.runs} replies one at a time", flush=True)
            with self.sampled("sequential"):
                sequential, fresh = await self.sequential()
            levels = [sequential] if 1 in self.args.levels else []
            print("concurrency: K replies posted at once in K rooms", flush=True)
            for k in self.args.levels:
                if k > 1:
                    with self.sampled(f"k{k}"):
                        levels.append(await self.retried(lambda k=k: self.level(k)))
            spread = []
            if not self.args.no_spread:
                duration = sequential.direct.pct("total", 0.5)
                print(
                    f"spread: K replies in K rooms, posted evenly over {duration * 1000:.0f} ms", flush=True
                )
                for level in levels:
                    if level.k > 1:
                        with self.sampled(f"spread{level.k}"):
                            spread.append(
                                await self.retried(
                                    lambda level=level: self.spread_level(level.k, level.direct, duration)
                                )
                            )
            # Last: its 1,000 messages would lengthen the other phases' prompts in room 0.
            if self.args.catch_up_unread:
                await self.catch_up(self.args.catch_up_unread)
        finally:
            await self.close()
        return Results(sequential, fresh, levels, spread)


def report(level: Level, how: str) -> None:
    calpico = level.calpico
    print(
        f"  K={level.k:<3} {how:<7} {len(calpico):>3} replies  Calpico first text p50 "
        f"{calpico.pct('ttft', 0.5) * 1000:6.1f} ms, done p50 {calpico.pct('total', 0.5) * 1000:7.1f} ms;"
        f"  overhead p50 {level.overhead('ttft') * 1000:6.1f} / {level.overhead('total') * 1000:6.1f} ms"
        f"  ({level.cpu.describe() if level.cpu else ''})",
        flush=True,
    )


def breakdown(trials: list[Trial]) -> list[tuple[str, list[float]]]:
    """Where each reply's time went, from the times the server stored for each run
    (AssistantRun: created, started, first token, finished) and when the frames arrived."""
    from assistant.models import AssistantRun

    runs = {
        r["reply_id"]: r
        for r in AssistantRun.objects.filter(reply_id__in=[t.message_id for t in trials]).values(
            "reply_id", "created_at", "started_at", "first_token_at", "finished_at"
        )
    }
    stages: dict[str, list[float]] = {
        "POST sent -> run queued (request, view, insert)": [],
        "run queued -> run claimed (commit, wake, claim)": [],
        "run claimed -> placeholder on the socket": [],
        "run claimed -> first token at the runner": [],
        "first token at the runner -> first text on the socket": [],
        "first token -> end of stream at the runner": [],
        "end of stream -> final frame on the socket": [],
    }
    values = list(stages.values())
    for trial in trials:
        run = runs.get(trial.message_id)
        if run is None or None in run.values() or trial.placeholder is None:
            continue
        created, started, first, finished = (
            run[name].timestamp() for name in ("created_at", "started_at", "first_token_at", "finished_at")
        )
        sent, placeholder = trial.sent + WALL_OFFSET, trial.placeholder + WALL_OFFSET
        first_text, done = (trial.first_text or 0) + WALL_OFFSET, (trial.done or 0) + WALL_OFFSET
        for stage, seconds in zip(
            values,
            (
                created - sent,
                started - created,
                placeholder - started,
                first - started,
                first_text - first,
                finished - first,
                done - finished,
            ),
            strict=True,
        ):
            stage.append(seconds)
    return list(stages.items())


# Printing


def ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.1f}"


def doubling_limit(base: Level, levels: list[Level], which: str) -> tuple[int, int | None]:
    """(largest K before the p50 overhead reaches twice `base`'s, first K that does)."""
    limit = 2 * base.overhead(which)
    largest = base.k
    for level in levels:
        if level.k <= base.k:
            continue
        if level.overhead(which) >= limit:
            return largest, level.k
        largest = level.k
    return largest, None


def both(level: Level, fraction: float) -> str:
    """ "first text / finished" overheads at one percentile."""
    return f"{ms(level.overhead('ttft', fraction))} / {ms(level.overhead('total', fraction))}"


def print_levels(title: str, levels: list[Level]) -> None:
    print(
        f"  {title:<24} {'replies':>7} {'first text p50':>14} {'finished p50':>12} {'direct p50':>15}"
        f" {'overhead p50':>15} {'overhead p99':>17} {'daphne CPU/reply':>16} {'other CPU':>9}"
    )
    for level in levels:
        direct = f"{ms(level.direct.pct('ttft', 0.5))} / {ms(level.direct.pct('total', 0.5))}"
        other = f"{max(0.0, level.cpu.percent(level.cpu.other)):.0f}%" if level.cpu else "-"
        print(
            f"  {f'K={level.k}':<24} {len(level.calpico):>7} {ms(level.calpico.pct('ttft', 0.5)):>14}"
            f" {ms(level.calpico.pct('total', 0.5)):>12} {direct:>15} {both(level, 0.5):>15}"
            f" {both(level, 0.99):>17} {ms(level.cpu_per_reply) + ' ms':>16} {other:>9}"
        )


def print_results(args: argparse.Namespace, results: Results, database: str) -> bool:
    seq, fresh = results.sequential, results.fresh
    print()
    print(
        f"Assistant streaming: a {args.reply_words}-token reply, {args.token_interval * 1000:g} ms between "
        f"tokens, first token after {args.first_token_delay * 1000:g} ms; push interval "
        f"{args.stream_interval * 1000:g} ms; {database}"
    )
    print(f"  {fanout.machine_notes()}")
    print()
    print(f"  {f'{len(seq.calpico)} replies one at a time (ms)':<52} {'p50':>8} {'p99':>8}")

    def line(label: str, p50: float, p99: float) -> None:
        print(f"  {label:<52} {ms(p50):>8} {ms(p99):>8}")

    for which, name in (("ttft", "first text"), ("total", "finished")):
        line(
            f"Calpico: POST -> {name} on the socket",
            seq.calpico.pct(which, 0.5),
            seq.calpico.pct(which, 0.99),
        )
        line(f"direct SDK, one client: {name}", seq.direct.pct(which, 0.5), seq.direct.pct(which, 0.99))
        line(
            f"direct SDK, new client per call ({len(fresh)}): {name}",
            fresh.pct(which, 0.5),
            fresh.pct(which, 0.99),
        )
        line(
            f"overhead (Calpico - direct one client): {name}",
            seq.overhead(which, 0.5),
            seq.overhead(which, 0.99),
        )
    if seq.text_only_at_end:
        print(f"  ! {seq.text_only_at_end} replies showed no text before the final frame")
    if seq.cpu:
        print(f"  daphne CPU per reply {ms(seq.cpu_per_reply)} ms; during the replies {seq.cpu.describe()}")
    print()
    shown = [seq, *(lv for lv in results.levels if lv is not seq)] if args.details else [seq]
    print("  where a reply's time goes (times the server stored for the run; ms)")
    print(f"  {'':<56}" + "".join(f"{f'K={lv.k} p50':>10}{'p99':>8}" for lv in shown))
    for index, (stage, _) in enumerate(seq.stages):
        cells = ""
        for level in shown:
            values = sorted(level.stages[index][1])
            cells += f"{ms(percentile(values, 0.5)):>10}{ms(percentile(values, 0.99)):>8}"
        print(f"  {stage:<56}{cells}")
    print()
    print_levels("posted at the same moment", results.levels)
    if results.spread:
        print_levels("spread over one reply", results.spread)
    print(
        "  (direct: the SDK with K streams at once; overhead and direct: first text / finished;"
        " other CPU: what other processes used, % of one core)"
    )
    print()
    met = {which: seq.overhead(which) < TARGET_OVERHEAD for which in ("ttft", "total")}
    print("Targets")
    for which, name in (("ttft", "first text"), ("total", "finished reply")):
        print(
            f"  under {TARGET_OVERHEAD * 1000:.0f} ms added at p50, {name:<15} ... "
            f"{'met' if met[which] else 'MISSED'} ({ms(seq.overhead(which))} ms)"
        )
    for label, levels in (("posted at once", results.levels), ("spread", results.spread)):
        if not levels:
            continue
        for which, name in (("ttft", "first text"), ("total", "finished")):
            largest, first_over = doubling_limit(seq, levels, which)
            tail = f"doubled at K={first_over}" if first_over else "not doubled at any K tried"
            print(f"  K before the p50 overhead ({name}) doubles, {label + ':':<15} {largest} ({tail})")
    return all(met.values())


# Running it all


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--runs", type=int, default=30, help="sequential replies (default 30)")
    add("--levels", default="1,2,4,8,16,32", help="replies at once to try (default 1,2,4,8,16,32)")
    add("--rounds", type=int, default=1, help="rounds of K replies per level, at least (default 1)")
    add("--min-samples", type=int, default=8, help="at least this many replies per level (default 8)")
    add("--reply-words", type=int, default=40, help="tokens (words) in the model's reply (default 40)")
    add("--token-interval", type=float, default=0.02, help="seconds between the model's tokens (0.02)")
    add("--first-token-delay", type=float, default=0.0, help="seconds before the model's first token (0)")
    add(
        "--catch-up-unread",
        type=int,
        default=1000,
        help="unread messages in the room a catch-up summarizes (default 1000; 0: no catch-up run)",
    )
    add("--stream-interval", type=float, default=0.1, help="ASSISTANT_STREAM_INTERVAL for daphne (0.1)")
    add(
        "--max-concurrent-runs",
        type=int,
        default=None,
        help="ASSISTANT_MAX_CONCURRENT_RUNS for daphne (default: the app's, 16)",
    )
    add("--timeout", type=float, default=30.0, help="seconds a reply may take before the run fails (30)")
    add("--pause", type=float, default=0.1, help="seconds between replies or rounds (0.1)")
    add("--details", action="store_true", help="show where the time goes at every K, not only K=1")
    add(
        "--priority",
        type=int,
        default=0,
        metavar="NICE",
        help="run this process, the fake model and daphne at this nice value (e.g. -10; below 0 needs root)",
    )
    add(
        "--pin",
        action="store_true",
        help="keep daphne on the first CPU and the fake model and this process (the clients) on the "
        "others, as if they were other machines",
    )
    add(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S seconds for other processes to leave the CPUs mostly idle",
    )
    add("--profile", type=Path, metavar="DIR", help="sample daphne with py-spy into DIR, one file a phase")
    add("--py-spy", default=shutil.which("py-spy") or "py-spy", help="the py-spy executable for --profile")
    add(
        "--postgres-url",
        metavar="URL",
        help="instead of SQLite, a throwaway database (created and dropped) on this PostgreSQL server, "
        "e.g. postgresql://postgres@127.0.0.1:5432/postgres",
    )
    add(
        "--retries",
        type=int,
        default=0,
        help="measure a K again (up to this often) when other processes used more than "
        f"{fanout.OTHER_CPU_LIMIT:.0f}%% of a core during it (default 0)",
    )
    add("--no-spread", action="store_true", help="skip the phase with the K posts spread over a reply")
    add("--check-target", action="store_true", help="exit 3 when the overhead target is missed")
    add("--keep", action="store_true", help="keep the var/ directory and the logs")
    args = parser.parse_args(argv)
    args.levels = sorted({int(k) for k in args.levels.split(",") if k.strip()})
    if not args.levels or args.levels[0] < 1 or args.runs < 1:
        parser.error("--levels needs positive numbers and --runs at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile and not (shutil.which(args.py_spy) or Path(args.py_spy).is_file()):
        print(f"--profile needs py-spy; {args.py_spy!r} was not found (see --py-spy)", file=sys.stderr)
        return 2

    def on_sigterm(signum, frame):
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_sigterm)
    work_dir = Path(tempfile.mkdtemp(prefix="calpico-bench-assistant-"))
    started = time.monotonic()
    models: list[FakeModel] = []

    def stop_everything() -> None:
        server.stop_all()
        for model in models:
            model.stop()

    atexit.register(stop_everything)
    if args.priority:
        # Inherited by the fake model and daphne, started later.
        os.setpriority(os.PRIO_PROCESS, 0, args.priority)
    try:
        return run(args, work_dir, started, models)
    except BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_everything()
        if args.keep:
            print(f"kept {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def run(args: argparse.Namespace, work_dir: Path, started: float, models: list[FakeModel]) -> int:
    """Start everything, run the phases, print; `models` gets the fake model for stopping."""
    with ExitStack() as stack:
        everywhere = os.sched_getaffinity(0)
        first = min(everywhere)
        others = everywhere - {first} or everywhere
        if args.pin:
            os.sched_setaffinity(0, others)  # inherited by the fake model
        model = FakeModel(
            work_dir,
            reply=reply_text(args.reply_words),
            token_interval=args.token_interval,
            first_token_delay=args.first_token_delay,
        )
        models.append(model)
        database_url = ""
        if args.postgres_url:
            database_url = stack.enter_context(server.throwaway_postgres(args.postgres_url))
            # Run last-in first-out: daphne stops and connections close before the drop.
            stack.callback(close_connections)
            stack.callback(server.stop_all)
        rooms = max(args.levels)
        env = fanout.calpico_server_env(work_dir, database_url, "", room_max_members=2)
        env.update(
            OPENAI_API_KEY="bench",
            OPENAI_BASE_URL=model.base_url,
            ASSISTANT_MODEL=MODEL,
            ASSISTANT_DAILY_RUNS="100000",
            ASSISTANT_STREAM_INTERVAL=str(args.stream_interval),
        )
        if args.max_concurrent_runs:
            env["ASSISTANT_MAX_CONCURRENT_RUNS"] = str(args.max_concurrent_runs)
        print(f"migrating a fresh {'PostgreSQL' if database_url else 'SQLite'} database ...", flush=True)
        fanout.migrate(env)
        print(f"creating {rooms} people, a room of their own each, and their sessions ...", flush=True)
        setup = fanout.create_people(env, rooms, 1)
        if args.pin:
            os.sched_setaffinity(0, {first})  # inherited by daphne and its threads
        srv = server.Daphne("calpico", "calpico.asgi:application", env, work_dir / "calpico-daphne.log")
        if args.pin:
            os.sched_setaffinity(0, others)
        # The SDK's per-request log lines (httpx2, INFO under Django's logging settings).
        logging.getLogger("httpx2").setLevel(logging.WARNING)
        print(f"  ready after {time.monotonic() - started:.1f} s", flush=True)
        quiet_wait = 0.0
        if args.wait_quiet:
            quiet_from = time.monotonic()
            busy = fanout.wait_for_quiet(args.wait_quiet)
            quiet_wait = time.monotonic() - quiet_from
            print(f"  other processes were using {busy:.0f}% of a core just before the run", flush=True)
        try:
            results = asyncio.run(Bench(args, setup, srv, model).run())
        except BenchError as exc:
            print(f"\nFAILED: {exc}", file=sys.stderr)
            print(f"daphne's log ends with:\n{srv.log_tail()}", file=sys.stderr)
            return 1
        # The ORM is synchronous: read the server's stored times once the event loop is gone.
        for level in {id(lv): lv for lv in [results.sequential, *results.levels, *results.spread]}.values():
            level.stages = breakdown(level.trials)
        met = print_results(args, results, "PostgreSQL" if database_url else "SQLite")
        waited = f" (of which {quiet_wait:.0f} s waiting for a quiet machine)" if quiet_wait >= 1 else ""
        print(f"\nfinished in {time.monotonic() - started:.1f} s{waited}")
        return 3 if args.check_target and not met else 0


def close_connections() -> None:
    """This process's database connections, before its throwaway database is dropped."""
    from django.db import connections

    connections.close_all()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
