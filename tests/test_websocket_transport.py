"""Frame sizes on a real server: the process `make run` starts, and a real WebSocket client.

A frame over WS_MAX_FRAME_BYTES reaches the consumer and gets the documented error frame; the
socket stays usable. A frame over the transport limit (WS_MAX_MESSAGE_BYTES) never reaches
Python: the server closes the socket with 1009 (message too big), a close frame the page can
act on, instead of dropping the connection (1006).
"""

import asyncio
import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PROJECT_DIR = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 30.0
TIMEOUT = 10.0
PASSWORD = "correct horse battery staple"
# What `make run` runs, on a port of the test's own.
SERVER_COMMAND = [sys.executable, "-m", "calpico.serve", "-b", "127.0.0.1"]


@dataclass
class LiveServer:
    url: str
    session_key: str

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/ws/"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sign_up(url: str) -> str:
    """Sign up through the form, as a person does; returns the session cookie."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{url}/accounts/signup/", timeout=TIMEOUT) as response:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.read().decode())[1]
    form = {"csrfmiddlewaretoken": token, "username": "frank", "password1": PASSWORD, "password2": PASSWORD}
    request = urllib.request.Request(
        f"{url}/accounts/signup/", data=urllib.parse.urlencode(form).encode(), headers={"Referer": url}
    )
    with opener.open(request, timeout=TIMEOUT):
        pass
    return next(cookie.value for cookie in jar if cookie.name == "sessionid")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[LiveServer]:
    """Calpico served as `make run` serves it, on SQLite and the in-memory layer of its own."""
    var_dir = tmp_path_factory.mktemp("calpico_var")
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TZ") if os.environ.get(name)}
    env.update(
        DJANGO_SETTINGS_MODULE="calpico.settings",
        CALPICO_VAR_DIR=str(var_dir),
        ACCOUNT_RATE_LIMITS_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=PROJECT_DIR,
        env=env,
        check=True,
        capture_output=True,
    )
    port = _free_port()
    log = var_dir / "server.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [*SERVER_COMMAND, "-p", str(port), "calpico.asgi:application"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited before serving:\n{log.read_text()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{url}/", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"the server did not answer:\n{log.read_text()}", pytrace=False)
                time.sleep(0.1)
        yield LiveServer(url, _sign_up(url))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


async def _open(server: LiveServer) -> ClientConnection:
    ws = await connect(
        server.ws_url,
        origin=server.url,
        additional_headers={"Cookie": f"sessionid={server.session_key}"},
        open_timeout=TIMEOUT,
        max_size=None,
    )
    hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert hello["type"] == "hello", hello
    return ws


def _ping(size: int) -> str:
    """A ping frame of exactly `size` bytes."""
    frame = json.dumps({"type": "ping", "pad": ""})
    return frame.replace('"pad": ""', '"pad": "' + "x" * (size - len(frame)) + '"')


async def _answer(ws: ClientConnection) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def test_a_large_frame_gets_the_error_frame_and_the_socket_stays_usable(served):
    ws = await _open(served)
    for size in (100_000, settings.WS_MAX_MESSAGE_BYTES):
        await ws.send(_ping(size))
        assert await _answer(ws) == {"type": "error", "message": "Frames are at most 16 KB."}
        await ws.send('{"type": "ping"}')
        assert await _answer(ws) == {"type": "pong"}
    await ws.close()


@pytest.mark.parametrize("size", [settings.WS_MAX_MESSAGE_BYTES + 1, 1_000_000, 5 * 1024 * 1024])
async def test_a_frame_over_the_transport_limit_closes_with_1009(served, size):
    ws = await _open(served)
    with pytest.raises(ConnectionClosed) as closed:
        await ws.send(_ping(size))
        await _answer(ws)
    assert closed.value.rcvd is not None, "the server dropped the connection without a close frame"
    assert closed.value.rcvd.code == 1009
    # The server is fine, and so is the next socket.
    ws = await _open(served)
    await ws.send('{"type": "ping"}')
    assert await _answer(ws) == {"type": "pong"}
    await ws.close()
