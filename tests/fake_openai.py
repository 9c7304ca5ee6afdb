"""A fake OpenAI-compatible HTTP server for tests, trials and benchmarks.

The server is standard library only: an ``http.server.ThreadingHTTPServer`` on
127.0.0.1 in a background daemon thread, speaking HTTP/1.1 with keep-alive, and
streaming with chunked transfer encoding and server-sent events exactly as the
real API does. Point the real ``openai`` SDK (or anything else) at ``base_url``.

Endpoints
---------
``POST /v1/chat/completions``
    ``stream: true`` answers ``text/event-stream``: one ``chat.completion.chunk``
    with ``delta: {"role": "assistant", "content": ""}``, then one chunk per
    content piece, then a chunk with an empty delta and ``finish_reason: "stop"``.
    With ``stream_options: {"include_usage": true}`` every chunk carries
    ``usage: null`` and a last chunk has ``choices: []`` and the usage. Then
    ``data: [DONE]``. Without ``stream`` it answers one ``chat.completion``.
    ``prompt_tokens`` is the number of words in all message contents and
    ``completion_tokens`` the number of content pieces.
``POST /v1/images/generations``
    ``{"created": ..., "data": [{"b64_json": ..., "revised_prompt": ...}]}``
    with ``n`` copies of a small solid-colour PNG (64x64 by default). If the
    request asks for ``response_format: "url"`` the items carry a ``url`` on this
    same server instead (``GET /files/fake-image.png``, no key needed), like the
    real API's short-lived blob links.
``GET /v1/models`` and ``GET /v1/models/{id}``
    The model names given to the constructor.
Anything else
    404 with OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``.

Every ``/v1`` request needs an ``Authorization: Bearer <key>`` header; if the
server was created with ``api_key=`` the key must match. Otherwise: 401.

Usage in tests::

    from tests.fake_openai import FakeOpenAI

    @pytest.fixture
    def fake_openai():
        with FakeOpenAI() as fake:
            yield fake

    def test_something(fake_openai):
        client = openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0)
        fake_openai.reply("Hello there.")                 # the default answer from now on
        fake_openai.queue(status=429)                     # the next chat request fails...
        fake_openai.queue(text="Sorry, slow.", token_interval=0.05)  # ...and the one after is slow
        fake_openai.queue(hang=True)                      # never answers; see release()
        fake_openai.queue(cut_after=2)                    # two pieces, then the connection drops
        gate = threading.Event()
        fake_openai.queue(gate=gate)                      # first piece, then waits for gate.set()
        fake_openai.queue_image(status=500)               # the next image request fails
        fake_openai.queue_decision("respond", "A question to the group")  # a decision's JSON answer
        ...
        fake_openai.wait_for_requests(1)                  # RecordedRequest objects, arrival order
        assert fake_openai.chat_requests()[0]["messages"][-1]["content"] == "hi"
        fake_openai.release()                             # let hanging / gated requests go on

A server shared by many tests (module or session scope) starts once; call
``fake.reset()`` between tests to drop recorded requests and queued behaviours and
restore the constructor's defaults.

Behaviours queued with ``queue()`` are used by the next chat requests, first in
first out; when the queue is empty the defaults (``reply()``, and the
``token_interval`` / ``first_token_delay`` given to the constructor or set as
attributes) apply. ``stop()`` never hangs: it wakes every hanging or gated
request, closes every open connection and joins the server thread.

Standalone, for manual trials and benchmarks (serves until Ctrl-C)::

    python -m tests.fake_openai --port 8900 --token-interval 0.02 --reply "Hi there, how can I help?"
    OPENAI_BASE_URL=http://127.0.0.1:8900/v1 OPENAI_API_KEY=anything ./manage.py runserver
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["DEFAULT_MODELS", "DEFAULT_REPLY", "Behaviour", "FakeOpenAI", "RecordedRequest", "solid_png"]

DEFAULT_REPLY = "Hello from the fake model."
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-image-1")
IMAGE_URL_PATH = "/files/fake-image.png"

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    # status: (type, code, message)
    400: (
        "invalid_request_error",
        "content_policy_violation",
        "Your request was rejected as a result of our safety system. Your prompt may contain text "
        "that is not allowed by our safety system.",
    ),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country not supported."),
    404: ("invalid_request_error", None, "Not found."),
    429: (
        "rate_limit_error",
        "rate_limit_exceeded",
        "Rate limit reached for requests on the fake model. Please try again in 1s.",
    ),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _error_body(
    status: int, message: str | None = None, error_type: str | None = None, code: str | None = None
) -> dict[str, Any]:
    default_type, default_code, default_message = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Fake error {status}.")
    )
    return {
        "error": {
            "message": message or default_message,
            "type": error_type or default_type,
            "param": None,
            "code": code if code is not None else default_code,
        }
    }


def split_tokens(text: str) -> list[str]:
    """Split ``text`` into words, each with its leading whitespace; ``"".join()`` gives ``text`` back."""
    pieces = re.findall(r"\s*\S+(?:\s+$)?", text)
    return pieces or ([text] if text else [])


def solid_png(size: int = 64, color: tuple[int, int, int] = (88, 101, 242)) -> bytes:
    """A ``size`` x ``size`` RGB PNG of one colour, encoded with the standard library alone."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(color) * size  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * size))
        + chunk(b"IEND", b"")
    )


def _count_words(messages: Any) -> int:
    words = 0
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    words += len(part["text"].split())
    return words


@dataclass
class Behaviour:
    """How the server answers one request. ``None`` fields fall back to the server's defaults.

    text:              the reply, split into words with their leading space.
    tokens:            explicit content pieces (wins over ``text``).
    first_token_delay: seconds before the response starts (headers and first piece).
    token_interval:    seconds between two pieces. Non-streamed answers wait for the
                       whole ``first_token_delay + token_interval * (pieces - 1)``.
    status:            answer this HTTP error instead, in OpenAI's error shape. 429 adds
                       ``retry-after`` / ``retry-after-ms`` headers from ``retry_after``;
                       400 reads as a content-policy refusal.
    message, error_type, error_code: override the error JSON's fields.
    hang:              answer nothing until ``release()`` (then answer normally) or ``stop()``.
    cut_after:         stream this many pieces, then drop the connection without the final
                       chunk or ``[DONE]``. For a non-streamed request: drop it unanswered.
    gate:              stream the first piece, then wait for this event before the rest.
    no_usage:          report no usage, as servers ignoring ``stream_options`` do.
    """

    text: str | None = None
    tokens: list[str] | None = None
    first_token_delay: float | None = None
    token_interval: float | None = None
    status: int | None = None
    message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    retry_after: float = 1.0
    hang: bool = False
    cut_after: int | None = None
    gate: threading.Event | None = None
    # Streamed instead of text: calls of the request's tools, [(name, arguments dict)], ending
    # with finish_reason "tool_calls" (each arguments JSON sent in two pieces, as real servers do).
    tool_calls: list[tuple[str, dict]] | None = None
    no_usage: bool = False


@dataclass
class RecordedRequest:
    """One request as the server received it. Header names are lower case."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    received_at: float = field(default_factory=time.monotonic)


class _Dropped(Exception):
    """The request is abandoned: the server is stopping or the connection must be cut."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # the default 5 drops bursts of connects (1 s SYN retries) in benchmarks
    fake: FakeOpenAI

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # client hang-ups are routine here
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    server: _Server

    # -- plumbing -----------------------------------------------------------------------------

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, add=True)

    def finish(self):
        self.server.fake._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format, *args):
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return body
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error_json(self, status: int, behaviour: Behaviour | None = None, message: str | None = None):
        behaviour = behaviour or Behaviour()
        headers = {}
        if status == 429:
            headers = {
                "retry-after": str(max(0, math.ceil(behaviour.retry_after))),
                "retry-after-ms": str(max(0, round(behaviour.retry_after * 1000))),
            }
        body = _error_body(status, message or behaviour.message, behaviour.error_type, behaviour.error_code)
        self._send_json(status, body, headers)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def _send_event(self, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self._write_chunk(b"data: " + data + b"\n\n")

    def _cut(self) -> None:
        """Drop the connection abruptly, mid-response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- routing ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        try:
            if fake._stopping.is_set():
                raise _Dropped
            body = self._read_body()
            try:
                payload = json.loads(body) if body else None
            except ValueError:
                payload = None
            fake._record(
                RecordedRequest(
                    method=self.command,
                    path=path,
                    query=parts.query,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                    json=payload,
                )
            )
            if self.command == "GET" and path == IMAGE_URL_PATH:
                return self._send_png()
            if path.startswith("/v1/") and not self._authorised():
                return None
            route = (self.command, path)
            if route == ("POST", "/v1/chat/completions"):
                return self._chat(payload, body)
            if route == ("POST", "/v1/images/generations"):
                return self._images(payload, body)
            if route == ("GET", "/v1/models"):
                return self._send_json(200, {"object": "list", "data": [fake._model(m) for m in fake.models]})
            if self.command == "GET" and path.startswith("/v1/models/"):
                name = path.removeprefix("/v1/models/")
                if name in fake.models:
                    return self._send_json(200, fake._model(name))
                message = f"The model '{name}' does not exist or you do not have access to it."
                return self._send_json(404, _error_body(404, message, code="model_not_found"))
            return self._send_json(404, _error_body(404, f"Invalid URL ({self.command} {path})"))
        except _Dropped:
            self._cut()
        except OSError:  # the client went away
            self.close_connection = True
        return None

    def _authorised(self) -> bool:
        expected = self.server.fake.api_key
        header = self.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            self._send_json(401, _error_body(401, message, code=None))
            return False
        if expected is not None and key.strip() != expected:
            shown = key[:3] + "*" * 4 + key[-4:] if len(key) > 8 else "****"
            message = f"Incorrect API key provided: {shown}. You can find your API key in the fake server."
            self._send_json(401, _error_body(401, message))
            return False
        return True

    def _bad_json(self, payload: Any, body: bytes) -> bool:
        if isinstance(payload, dict):
            return False
        message = "We could not parse the JSON body of your request." if body else "Missing request body."
        self._send_json(400, _error_body(400, message, code=None))
        return True

    # -- endpoints ----------------------------------------------------------------------------

    def _chat(self, request: Any, body: bytes) -> None:
        fake = self.server.fake
        if self._bad_json(request, body):
            return
        behaviour = fake._next_chat()
        if behaviour.hang:
            fake._block(None)
        fake._sleep(behaviour.first_token_delay)
        if behaviour.status:
            return self._send_error_json(behaviour.status, behaviour)
        if behaviour.tokens is not None:
            pieces = list(behaviour.tokens)
        else:
            pieces = split_tokens(behaviour.text or "")
        model = request.get("model") or fake.models[0]
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        prompt_tokens = _count_words(request.get("messages"))

        if not request.get("stream"):
            if behaviour.cut_after is not None:
                raise _Dropped
            fake._sleep((behaviour.token_interval or 0) * max(0, len(pieces) - 1))
            completion_tokens = len(pieces)
            return self._send_json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                },
            )

        # no_usage: a server that ignores stream_options and reports no usage.
        include_usage = (
            bool((request.get("stream_options") or {}).get("include_usage")) and not behaviour.no_usage
        )

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                data["usage"] = None
            return data

        if behaviour.tool_calls:
            return self._stream_tool_calls(behaviour, chunk, include_usage, prompt_tokens)

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        self.end_headers()
        self._send_event(chunk({"role": "assistant", "content": "", "refusal": None}))
        for index, piece in enumerate(pieces):
            if behaviour.cut_after is not None and index >= behaviour.cut_after:
                raise _Dropped
            if index > 0:
                fake._sleep(behaviour.token_interval)
            self._send_event(chunk({"content": piece}))
            if index == 0 and behaviour.gate is not None:
                fake._block(behaviour.gate)
        if behaviour.cut_after is not None:
            raise _Dropped
        self._send_event(chunk({}, "stop"))
        if include_usage:
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(pieces),
                "total_tokens": prompt_tokens + len(pieces),
            }
            self._send_event({**chunk({}), "choices": [], "usage": usage})
        self._send_event(b"[DONE]")
        self._write_chunk(b"")  # the zero-length chunk ends the body
        return None

    def _stream_tool_calls(
        self, behaviour: Behaviour, chunk: Any, include_usage: bool, prompt_tokens: int
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._send_event(chunk({"role": "assistant", "content": None}))
        for index, (name, arguments) in enumerate(behaviour.tool_calls or []):
            text = json.dumps(arguments)
            half = len(text) // 2
            first = {"index": index, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "function"}
            first["function"] = {"name": name, "arguments": text[:half]}
            self._send_event(chunk({"tool_calls": [first]}))
            self._send_event(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": text[half:]}}]})
            )
        self._send_event(chunk({}, "tool_calls"))
        if include_usage:
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 5,
                "total_tokens": prompt_tokens + 5,
            }
            self._send_event({**chunk({}), "choices": [], "usage": usage})
        self._send_event(b"[DONE]")
        self._write_chunk(b"")

    def _images(self, request: Any, body: bytes) -> None:
        fake = self.server.fake
        if self._bad_json(request, body):
            return
        behaviour = fake._next_image()
        if behaviour.hang:
            fake._block(None)
        fake._sleep(behaviour.first_token_delay)
        if behaviour.status:
            return self._send_error_json(behaviour.status, behaviour)
        if behaviour.cut_after is not None:
            raise _Dropped
        prompt = request.get("prompt") or ""
        count = max(1, min(int(request.get("n") or 1), 10))
        if request.get("response_format") == "url":
            item: dict[str, Any] = {"url": fake.url + IMAGE_URL_PATH}
        else:
            item = {"b64_json": base64.b64encode(fake.png).decode()}
        item["revised_prompt"] = behaviour.text or f"A plain square standing in for: {prompt}"
        return self._send_json(200, {"created": int(time.time()), "data": [dict(item) for _ in range(count)]})

    def _send_png(self) -> None:
        data = self.server.fake.png
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeOpenAI:
    """A fake OpenAI API on 127.0.0.1; see the module docstring.

    ``FakeOpenAI(port=0, *, api_key=None, reply=DEFAULT_REPLY, models=DEFAULT_MODELS,
    token_interval=0.0, first_token_delay=0.0, image_size=64, image_color=(88, 101, 242),
    host="127.0.0.1", verbose=False)``. ``port=0`` picks a free port.

    ``token_interval`` and ``first_token_delay`` are the defaults for requests whose
    behaviour leaves them unset; they are plain attributes and may be changed at any time.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        api_key: str | None = None,
        reply: str = DEFAULT_REPLY,
        models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
        token_interval: float = 0.0,
        first_token_delay: float = 0.0,
        image_size: int = 64,
        image_color: tuple[int, int, int] = (88, 101, 242),
        host: str = "127.0.0.1",
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.api_key = api_key
        self.models = list(models) or ["gpt-4o-mini"]
        self.token_interval = token_interval
        self.first_token_delay = first_token_delay
        self.verbose = verbose
        self.png = solid_png(image_size, image_color)
        self._requested_port = port
        self._reply = reply
        self._initial = (reply, token_interval, first_token_delay)
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._chat_queue: deque[Behaviour] = deque()
        self._image_queue: deque[Behaviour] = deque()
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._release_generation = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        """Bind and serve in a background daemon thread. Returns ``self``."""
        if self._server is not None:
            raise RuntimeError("FakeOpenAI is already running")
        self._stopping.clear()
        server = _Server((self.host, self._requested_port), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving. Wakes hanging and gated requests and closes every open connection."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``"""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, what the SDK's ``base_url`` wants."""
        return self.url + "/v1"

    # -- behaviour control --------------------------------------------------------------------

    def reply(self, text: str) -> None:
        """Set the default reply text, used when no queued behaviour is left."""
        with self._lock:
            self._reply = text

    def queue(self, behaviour: Behaviour | None = None, /, *, times: int = 1, **options: Any) -> Behaviour:
        """Queue a behaviour for the next chat request(s): a ``Behaviour`` or its fields as keywords.

        ``times`` queues it for that many requests. Returns the behaviour.
        """
        behaviour = replace(behaviour, **options) if behaviour is not None else Behaviour(**options)
        with self._lock:
            self._chat_queue.extend(behaviour for _ in range(times))
        return behaviour

    def queue_image(
        self, behaviour: Behaviour | None = None, /, *, times: int = 1, **options: Any
    ) -> Behaviour:
        """Like ``queue()`` but for image generations. ``status``, ``message``, ``hang``,
        ``first_token_delay`` (delay before answering), ``cut_after`` (any value: drop the
        connection unanswered) and ``text`` (the ``revised_prompt``) apply."""
        behaviour = replace(behaviour, **options) if behaviour is not None else Behaviour(**options)
        with self._lock:
            self._image_queue.extend(behaviour for _ in range(times))
        return behaviour

    def queue_tool_call(self, name: str, arguments: dict, /, **options: Any) -> Behaviour:
        """Queue a streamed answer that calls the request's tool `name` with `arguments`."""
        return self.queue(tool_calls=[(name, arguments)], **options)

    def queue_decision(
        self, action: str, reason: str = "", emoji: str = "", /, *, times: int = 1, **options: Any
    ) -> Behaviour:
        """Queue the answer to a decision call (Calpico's "Automatically" mode): the JSON
        ``{"action", "emoji", "reason"}`` its schema asks for, as the next chat answer.
        Queue it in the order the calls come (a decision, then the reply it leads to)."""
        text = json.dumps({"action": action, "emoji": emoji, "reason": reason})
        return self.queue(text=text, times=times, **options)

    def release(self) -> None:
        """Let every request hanging now (``hang=True``) or waiting on a ``gate`` go on."""
        with self._lock:
            self._release_generation += 1

    def clear(self) -> None:
        """Forget recorded requests and queued behaviours (the defaults stay)."""
        with self._lock:
            self._requests.clear()
            self._chat_queue.clear()
            self._image_queue.clear()

    def reset(self) -> None:
        """``clear()``, ``release()`` and restore the constructor's reply, token interval and first
        token delay: a clean slate for a server shared by several tests."""
        self.release()
        self.clear()
        with self._lock:
            self._reply = self._initial[0]
        self.token_interval, self.first_token_delay = self._initial[1:]

    # -- inspection ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, in arrival order (recorded before it is answered)."""
        with self._lock:
            return list(self._requests)

    def chat_requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat completion requests, in arrival order."""
        return [r.json for r in self.requests if r.method == "POST" and r.path == "/v1/chat/completions"]

    def decision_requests(self) -> list[dict[str, Any]]:
        """The chat requests that were not streamed (Calpico's decisions), in arrival order."""
        return [body for body in self.chat_requests() if isinstance(body, dict) and not body.get("stream")]

    def reply_requests(self) -> list[dict[str, Any]]:
        """The streamed chat requests (Calpico's replies), in arrival order."""
        return [body for body in self.chat_requests() if isinstance(body, dict) and body.get("stream")]

    def image_requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the image generation requests, in arrival order."""
        return [r.json for r in self.requests if r.method == "POST" and r.path == "/v1/images/generations"]

    def wait_for_requests(
        self, n: int, timeout: float = 5.0, path: str | None = None
    ) -> list[RecordedRequest]:
        """Wait until at least ``n`` requests (to ``path``, if given) have arrived; return them all.

        Raises ``TimeoutError`` if they do not arrive in time.
        """

        def matching() -> list[RecordedRequest]:
            return [r for r in self._requests if path is None or r.path == path]

        with self._arrived:
            if not self._arrived.wait_for(lambda: len(matching()) >= n, timeout=timeout):
                raise TimeoutError(f"expected {n} requests, got {len(matching())} after {timeout}s")
            return matching()

    # -- internals used by the handler --------------------------------------------------------

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _record(self, request: RecordedRequest) -> None:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()

    def _defaults(self) -> Behaviour:
        return Behaviour(
            text=self._reply, token_interval=self.token_interval, first_token_delay=self.first_token_delay
        )

    def _next_chat(self) -> Behaviour:
        with self._lock:
            queued = self._chat_queue.popleft() if self._chat_queue else None
            defaults = self._defaults()
        if queued is None:
            return defaults
        return replace(
            queued,
            text=defaults.text if queued.text is None else queued.text,
            token_interval=(
                defaults.token_interval if queued.token_interval is None else queued.token_interval
            ),
            first_token_delay=(
                defaults.first_token_delay if queued.first_token_delay is None else queued.first_token_delay
            ),
        )

    def _next_image(self) -> Behaviour:
        with self._lock:
            return self._image_queue.popleft() if self._image_queue else Behaviour()

    def _sleep(self, seconds: float | None) -> None:
        if seconds and self._stopping.wait(seconds):
            raise _Dropped

    def _block(self, gate: threading.Event | None) -> None:
        """Wait for ``gate`` (or forever if ``None``) or ``release()``; raise ``_Dropped`` on ``stop()``."""
        with self._lock:
            generation = self._release_generation
        while not (gate is not None and gate.is_set()) and self._release_generation == generation:
            if self._stopping.wait(0.01):
                raise _Dropped

    def _model(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "fake-openai"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI-compatible API until Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900, help="0 picks a free port (default 8900)")
    parser.add_argument("--reply", default=DEFAULT_REPLY, help="the reply text, streamed word by word")
    parser.add_argument("--token-interval", type=float, default=0.0, help="seconds between streamed pieces")
    parser.add_argument("--first-token-delay", type=float, default=0.0, help="seconds before the first piece")
    parser.add_argument("--api-key", default=None, help="require this key (default: any key)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    fake = FakeOpenAI(
        args.port,
        host=args.host,
        api_key=args.api_key,
        reply=args.reply,
        token_interval=args.token_interval,
        first_token_delay=args.first_token_delay,
        verbose=not args.quiet,
    )
    # Stop cleanly on Ctrl-C and on SIGTERM, also when started in the background by a script
    # (where a shell without job control makes the process ignore SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    fake.start()
    print(f"Fake OpenAI API at {fake.base_url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
