"""A web process stopped behind the recipe's Caddy (a restart, a deploy) loses no request.

Debian's Caddy (2.6) cannot send a request with a body to another process after it failed
to connect to the first: the retry finds the body closed, answers 502 and counts the
process it retried on as failed, so for `fail_duration` every request gets 503 "no
upstreams available" (caddyserver/caddy#5454, fixed in 2.11). A stopping process therefore
must not stop listening before the proxy's health check has taken it out of rotation:
`SHUTDOWN_DRAIN_SECONDS` (calpico/shutdown.py), which the health check's /readyz ends.
Two daphne processes run as the recipe runs them (calpico.serve, deploy/calpico.env, with a
longer drain), on PostgreSQL and Redis, behind the recipe's Caddyfile.
"""

import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_deploy import caddy_test_config, recipe_env
from tests.test_multiprocess import STARTUP_TIMEOUT, Server, _database_url, _free_port

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

PROJECT_DIR = Path(__file__).resolve().parents[1]
APP = "calpico.asgi:application"
# Longer than the recipe's 8 s, and far longer than Caddy's health check takes to ask
# (every 5 s) plus the drain's grace: a process that stops well before it shows that
# /readyz ended its drain, not the drain's own seconds.
DRAIN_SECONDS = 60
# Caddy's health_interval (5 s), the drain's grace after it, the graceful stop, and room for
# a loaded machine.
STOPPED_WITHIN = 20.0


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Caddy's local CA: the test does not trust it
    return context


def _status(url: str, *, body: bytes | None = None, timeout: float = 15) -> int:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=_unverified()) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _wait_ready(url: str, processes: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        for process, log in zip(processes, logs, strict=True):
            if process.poll() is not None:
                pytest.fail(f"{log.name} exited:\n{log.read_text()}", pytrace=False)
        try:
            if _status(url, timeout=2) == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {STARTUP_TIMEOUT:.0f} s", pytrace=False)


@pytest.fixture
def behind_caddy(transactional_db, settings, tmp_path) -> Iterator[tuple[str, list[Server]]]:
    caddy = _caddy()
    prefix = f"calpico_rr_{uuid.uuid4().hex[:12]}"
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    (tmp_path / "metrics").mkdir()
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TZ") if os.environ.get(name)}
    env.update(recipe_env())
    env.update(
        DJANGO_SETTINGS_MODULE="calpico.settings",
        CALPICO_VAR_DIR=str(var_dir),
        SECRET_KEY=settings.SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=_database_url(),
        REDIS_URL=settings.REDIS_URL,
        CHANNEL_LAYER_PREFIX=prefix,
        CACHE_KEY_PREFIX=prefix,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        SHUTDOWN_DRAIN_SECONDS=str(DRAIN_SECONDS),
        PYTHONUNBUFFERED="1",
    )
    servers: list[Server] = []
    caddy_process = None
    try:
        for name in ("a", "b"):
            port = _free_port()
            log = var_dir / f"web-{name}.log"
            with log.open("w") as handle:
                process = subprocess.Popen(
                    [sys.executable, "-m", "calpico.serve", "-b", "127.0.0.1", "-p", str(port), APP],
                    cwd=PROJECT_DIR,
                    env=env,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            servers.append(Server(port, process, log))
        for server in servers:
            _wait_ready(f"{server.origin}/readyz", [server.process], [server.log])
        url = f"https://127.0.0.1:{_free_port()}"
        config = caddy_test_config(tmp_path, _free_port())
        caddy_log = tmp_path / "caddy.log"
        with caddy_log.open("w") as handle:
            caddy_process = subprocess.Popen(
                [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
                env={
                    "PATH": os.environ["PATH"],
                    "HOME": str(tmp_path),
                    "XDG_CONFIG_HOME": str(tmp_path / "caddy-config"),
                    "XDG_DATA_HOME": str(tmp_path / "caddy-data"),
                    "CALPICO_SITE": url,
                    "CALPICO_TLS": "internal",
                    "CALPICO_UPSTREAMS": " ".join(f"127.0.0.1:{s.port}" for s in servers),
                },
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_ready(f"{url}/readyz", [caddy_process], [caddy_log])
        yield url, servers
    finally:
        if caddy_process is not None:
            caddy_process.terminate()
            caddy_process.wait(timeout=10)
        for server in servers:
            if server.process.poll() is None:
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait(timeout=10)


def _caddy() -> str:
    caddy = shutil.which("caddy")
    if caddy is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Caddy is not installed (apt-get install caddy; .ci/run does)", pytrace=False)
        pytest.skip("Caddy is not installed")
    return caddy


def test_posts_right_after_a_process_stops_reach_the_other_one(behind_caddy):
    url, (stopping, _) = behind_caddy
    # A form post with a body, as the composer sends: without the CSRF token Django itself
    # answers 403, which is all this needs (an answer from a process, not from the proxy).
    form = b"username=someone&password=wrong"
    assert _status(f"{url}/accounts/login/", body=form) == 403

    stopped_at = time.monotonic()
    os.killpg(stopping.process.pid, signal.SIGTERM)
    assert stopping.process.wait(timeout=DRAIN_SECONDS / 2) == 0
    # Caddy's health check asked /readyz, which ended the drain; not its 60 s.
    took = time.monotonic() - stopped_at
    assert took < STOPPED_WITHIN, f"stopped {took:.1f} s after SIGTERM"
    assert "Drain over: /readyz said stopping" in stopping.log.read_text()
    # Round robin: of two posts in a row, one goes to the stopped process unless the proxy
    # already knows it is gone.
    statuses = [_status(f"{url}/accounts/login/", body=form) for _ in range(4)]
    assert statuses == [403] * 4, statuses
    assert _status(f"{url}/readyz") == 200
