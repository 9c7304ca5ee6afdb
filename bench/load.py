"""The load generator: WebSocket clients that time-stamp each message they receive, and a
small keep-alive HTTP/1.1 client for posting messages.

Cheap on purpose, since it shares the machine with the server: one asyncio loop, the
`websockets` client without compression or pings, one regular expression per frame, and
raw asyncio streams for HTTP rather than a client library.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

# A message body starts with "bench-<phase>-<index>"; HTML frames are searched for it.
MARKER = re.compile(r"bench-([0-9a-f]{8})-(\d+)\b")
SEQ = re.compile(r'data-seq="(\d+)"')


def marker(phase_id: str, index: int) -> str:
    return f"bench-{phase_id}-{index}"


@dataclass
class Phase:
    """One burst of `count` messages: when each was sent, and when each client first saw it."""

    count: int
    clients: int
    id: str = field(default_factory=lambda: secrets.token_hex(4))
    sent: list[float | None] = field(init=False)
    scheduled: list[float] = field(init=False)
    received_at: list[list[float | None]] = field(init=False)
    received: int = 0
    duplicates: int = 0
    post_errors: list[str] = field(default_factory=list)
    response_times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sent = [None] * self.count
        self.scheduled = [0.0] * self.count
        self.received_at = [[None] * self.count for _ in range(self.clients)]

    @property
    def expected(self) -> int:
        return self.count * self.clients

    def record(self, client: int, index: int, now: float) -> None:
        if client >= self.clients or index >= self.count:
            return
        row = self.received_at[client]
        if row[index] is None:
            row[index] = now
            self.received += 1
        else:
            self.duplicates += 1

    def latencies(self) -> list[float]:
        out = []
        for row in self.received_at:
            for index, received in enumerate(row):
                sent = self.sent[index]
                if received is not None and sent is not None:
                    out.append(received - sent)
        return out

    def slowest_per_message(self) -> list[float | None]:
        """For each message, how long its last receiver waited (None: nobody got it)."""
        out: list[float | None] = []
        for index, sent in enumerate(self.sent):
            times = [row[index] for row in self.received_at if row[index] is not None]
            out.append(max(times) - sent if times and sent is not None else None)
        return out

    def window(self) -> float:
        """Seconds from the first send to the last receipt."""
        sends = [t for t in self.sent if t is not None]
        receipts = [t for row in self.received_at for t in row if t is not None]
        if not sends or not receipts:
            return 0.0
        return max(receipts) - min(sends)

    def send_lag(self) -> float:
        """The worst delay between a message's planned send time and its actual one."""
        lags = [s - p for s, p in zip(self.sent, self.scheduled, strict=True) if s is not None]
        return max(lags, default=0.0)


# Phases whose markers the clients are looking for, by id.
active_phases: dict[str, Phase] = {}


class Counters:
    frames = 0
    last_frame = 0.0


class Client:
    """One open page: a socket that reads every frame and time-stamps the markers in it."""

    def __init__(
        self,
        index: int,
        ws: ClientConnection,
        *,
        room_id: int | None,
        read_frames: bool,
        resume_seq: int | None = None,
    ) -> None:
        self.index = index
        self.ws = ws
        self.room_id = room_id
        self.read_frames = read_frames
        # Set: after the hello, resume from this seq as static/js/live.js does on a room page
        # (a page showing the room's last 50 messages), and count as open at `caught_up`.
        self.resume_seq = resume_seq
        self.hello = asyncio.Event()
        self.hello_at: float | None = None
        self.closed_code: int | None = None
        self.html_frames = 0
        self.html_bytes = 0
        self.json_types: dict[str, int] = {}
        self.max_seq = 0
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                now = time.monotonic()
                Counters.frames += 1
                Counters.last_frame = now
                if not isinstance(frame, str):
                    continue
                if frame.startswith("<"):
                    self.html_frames += 1
                    self.html_bytes += len(frame)
                    for phase_id, number in set(MARKER.findall(frame)):
                        phase = active_phases.get(phase_id)
                        if phase is not None:
                            # self.index, not a copy taken earlier: opening sockets on several
                            # servers numbers them again once all are open.
                            phase.record(self.index, int(number), now)
                    if self.read_frames:
                        await self._mark_read(frame)
                elif frame.startswith("{"):
                    kind = json.loads(frame).get("type", "?")
                    self.json_types[kind] = self.json_types.get(kind, 0) + 1
                    if kind == "hello" and self.resume_seq is not None:
                        await self._resume(json.loads(frame)["server_time"])
                    elif kind == "hello" or (kind == "caught_up" and self.hello_at is None):
                        self.hello_at = now
                        self.hello.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed_code = self.ws.close_code if self.ws.close_code is not None else -1
            self.hello.set()  # nobody waits for a hello that cannot come

    async def _resume(self, server_time: str) -> None:
        last = self.resume_seq or 0
        frame = {
            "type": "resume",
            "room": self.room_id,
            "last_seq": last,
            "oldest_seq": max(1, last - 49),
            "since": server_time,
        }
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(frame))

    async def _mark_read(self, frame: str) -> None:
        # What static/js/live.js does on a visible page after every HTML frame.
        seqs = SEQ.findall(frame)
        if seqs:
            self.max_seq = max(self.max_seq, *map(int, seqs))
        if self.max_seq:
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(json.dumps({"type": "read", "room": self.room_id, "seq": self.max_seq}))

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
            await asyncio.wait_for(self.ws.close(), 5)
        self.task.cancel()


async def open_clients(
    ws_url: str,
    origin: str,
    cookies: Sequence[str | None],
    *,
    room_id: int | None,
    deadline: float,
    read_frames: bool = False,
    concurrency: int = 50,
    timeout: float = 30.0,
    resume_seq: int | None = None,
) -> tuple[list[Client | None], list[str]]:
    """Open one socket per cookie header (None: no cookie) and wait for its hello (with
    `resume_seq`, for the `caught_up` that answers its resume).

    Returns the clients in the order of `cookies` (None where opening failed) and why each
    failure happened. Nothing is started after `deadline` (a monotonic time).
    """
    gate = asyncio.Semaphore(concurrency)
    failures: list[str] = []

    async def open_one(index: int, cookie: str | None) -> Client | None:
        headers = {"Cookie": cookie} if cookie else {}
        async with gate:
            left = min(timeout, deadline - time.monotonic())
            if left <= 0:
                failures.append("not tried: the time for connecting was up")
                return None
            try:
                ws = await connect(
                    ws_url,
                    origin=origin,
                    additional_headers=headers,
                    compression=None,
                    proxy=None,
                    ping_interval=None,
                    open_timeout=left,
                    close_timeout=5,
                    max_queue=256,
                )
            except Exception as exc:
                failures.append(f"handshake: {type(exc).__name__}: {exc}")
                return None
            client = Client(index, ws, room_id=room_id, read_frames=read_frames, resume_seq=resume_seq)
            try:
                await asyncio.wait_for(client.hello.wait(), left)
            except TimeoutError:
                failures.append("no hello in time")
                await client.close()
                return None
            if client.closed_code is not None:
                failures.append(f"closed before hello with code {client.closed_code}")
                return None
            return client

    tasks = [asyncio.create_task(open_one(i, c)) for i, c in enumerate(cookies)]
    try:
        clients = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        done = [t.result() for t in tasks if t.done() and not t.cancelled() and t.exception() is None]
        await close_clients([c for c in done if c is not None])
        raise
    return list(clients), failures


async def close_clients(clients: Sequence[Client]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def settle(quiet: float = 0.5, limit: float = 30.0) -> float:
    """Wait until no frame has arrived for `quiet` seconds (at most `limit`); returns the wait."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if time.monotonic() - max(Counters.last_frame, start) >= quiet:
            break
        await asyncio.sleep(0.05)
    return time.monotonic() - start


class HttpPoster:
    """Posts the composer form as one signed-in member, like htmx does: keep-alive
    HTTP/1.1, session and CSRF cookies, X-CSRFToken, Origin and Referer, HX-Request and
    Calpico-Composer (the composer resets itself: the answer is the message alone)."""

    def __init__(
        self, host: str, port: int, room_id: int, session_key: str, csrf_token: str, max_connections: int = 32
    ) -> None:
        self.host, self.port = host, port
        self.path = f"/r/{room_id}/messages/"
        origin = f"http://{host}:{port}"
        self.head = (
            f"POST {self.path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            f"Cookie: sessionid={session_key}; csrftoken={csrf_token}\r\n"
            f"X-CSRFToken: {csrf_token}\r\n"
            f"Origin: {origin}\r\n"
            f"Referer: {origin}/r/{room_id}/\r\n"
            "HX-Request: true\r\n"
            "Calpico-Composer: resets\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
        )
        self.gate = asyncio.Semaphore(max_connections)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, body: str) -> tuple[float, int, bytes]:
        """Send the message; returns (time just before sending, status, start of the body)."""
        form = urlencode({"body": body, "client_id": str(uuid.uuid4())}).encode()
        request = f"{self.head}Content-Length: {len(form)}\r\n\r\n".encode() + form
        async with self.gate:
            while True:
                reused = bool(self.idle)
                if reused:
                    reader, writer = self.idle.pop()
                else:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                sent = time.monotonic()
                writer.write(request)
                try:
                    status, keep_alive, content = await _read_response(reader)
                    break
                except ClosedBeforeResponse:
                    writer.close()
                    # The server closed a connection left idle (after a pause between
                    # steps): send again on a new one, as a browser does. The same
                    # client_id makes a second copy impossible.
                    if not reused:
                        raise
                except BaseException:
                    writer.close()
                    raise
            if keep_alive:
                self.idle.append((reader, writer))
            else:
                writer.close()
            return sent, status, content[:300]

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle = []


class ClosedBeforeResponse(ConnectionError):
    """The connection ended before the first byte of a response."""


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    try:
        status_line = await reader.readline()
    except ConnectionResetError as exc:
        raise ClosedBeforeResponse("the server closed the connection") from exc
    if not status_line:
        raise ClosedBeforeResponse("the server closed the connection")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    keep_alive = headers.get("connection", "").lower() != "close"
    if "content-length" in headers:
        content = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        content = b"".join(chunks)
    else:
        content = await reader.read()
        keep_alive = False
    return status, keep_alive, content


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = math.ceil(fraction * len(sorted_values)) - 1
    return sorted_values[max(0, min(len(sorted_values) - 1, rank))]
