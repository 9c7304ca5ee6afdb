"""The deployment recipe, run for real: Caddy with `tls internal` in front of two daphne
processes and a worker, on PostgreSQL and Redis, driven by Chromium over https://.

Everything comes from deploy/: the Caddyfile (imported unchanged by a test file that only
adds the global options a test needs: its own ports, config and data directories, no admin
endpoint, no trust-store install) and the settings of deploy/calpico.env, with this
machine's database, Redis and paths. Caddy listens on 127.0.0.1; the daphne processes on
[::1], so the proxy's address (::1) and the browser's (127.0.0.1) differ and the test can
tell which one the rate limit counted.
"""

import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    CHROMIUM,
    PROJECT_DIR,
    SERVER,
    _free_port,
    _migrate,
    _stop,
    _throwaway_database,
    sign_up,
)
from tests.fake_openai import FakeOpenAI
from tests.test_deploy import caddy_test_config, recipe_env

pytestmark = [pytest.mark.browser, pytest.mark.services]

STARTUP_TIMEOUT = 40.0
LIVE = 10_000
FAILED_JOINS = 3
FAKE_KEY = "sk-calpico-proxy-test"


@dataclass
class Process:
    name: str
    process: subprocess.Popen
    log: Path


@dataclass
class Deployment:
    url: str
    web: list[tuple[int, Process]]
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    def access_log(self, index: int) -> str:
        return (self.web[index][1].log.parent / f"access-{self.web[index][0]}.log").read_text()

    def direct(self, index: int) -> str:
        return f"http://[::1]:{self.web[index][0]}"


def _start(name: str, args: list[str], env: dict[str, str], directory: Path) -> Process:
    log = directory / f"{name}.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            args, cwd=PROJECT_DIR, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Process(name, process, log)


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Caddy's local CA: the test does not trust it
    return context


def _wait(url: str, processes: list[Process], *, tls: bool = False) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        for process in processes:
            if process.process.poll() is not None:
                pytest.fail(f"{process.name} exited:\n{process.log.read_text()}", pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=2, context=_unverified() if tls else None) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
            pass
        time.sleep(0.3)
    logs = "\n".join(f"--- {p.name}\n{p.log.read_text()}" for p in processes)
    pytest.fail(f"{url} did not answer within {STARTUP_TIMEOUT:.0f} s\n{logs}", pytrace=False)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    caddy = shutil.which("caddy")
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    ci = os.environ.get("CI", "").lower() == "true"
    for missing, reason in (
        (caddy is None, "Caddy is not installed (apt-get install caddy; .ci/run does)"),
        (not CHROMIUM.exists(), f"Chromium is not at {CHROMIUM}"),
        (
            not database_url.startswith("postgres") or not redis_url,
            "needs DATABASE_URL on PostgreSQL and REDIS_URL",
        ),
    ):
        if missing:
            if ci:
                pytest.fail(reason, pytrace=False)
            pytest.skip(reason)
    directory = tmp_path_factory.mktemp("deployment")
    https_port = _free_port()
    url = f"https://127.0.0.1:{https_port}"
    prefix = f"calpico_proxy_{secrets.token_hex(4)}"
    with _throwaway_database(database_url) as database, FakeOpenAI(api_key=FAKE_KEY) as fake:
        env = {name: os.environ[name] for name in ("PATH", "LANG", "TZ") if name in os.environ}
        env.update(recipe_env())
        env.update(
            HOME=str(directory),
            DJANGO_SETTINGS_MODULE="calpico.settings",
            PYTHONUNBUFFERED="1",
            SECRET_KEY=secrets.token_urlsafe(60),
            ALLOWED_HOSTS="127.0.0.1",
            CSRF_TRUSTED_ORIGINS=url,
            DATABASE_URL=database,
            REDIS_URL=redis_url,
            CACHE_KEY_PREFIX=prefix,
            CHANNEL_LAYER_PREFIX=prefix,
            CALPICO_VAR_DIR=str(directory / "var"),
            PROMETHEUS_MULTIPROC_DIR=str(directory / "metrics"),
            # Caddy reaches the daphne processes on [::1]: that is the proxy's address here.
            TRUSTED_PROXIES="::1",
            METRICS_ALLOWED_ADDRESSES="::1",
            RATE_FAILED_JOINS_PER_HOUR=str(FAILED_JOINS),
            OPENAI_API_KEY=FAKE_KEY,
            OPENAI_BASE_URL=fake.base_url,
        )
        _migrate(env)
        deployment = Deployment(url=url, web=[], env=env)
        try:
            for _ in range(2):
                port = _free_port()
                web = _start(
                    f"web-{port}",
                    [
                        *SERVER,
                        "-e",
                        rf"tcp:port={port}:interface=\:\:1",
                        "--access-log",
                        str(directory / f"access-{port}.log"),
                        "calpico.asgi:application",
                    ],
                    env,
                    directory,
                )
                deployment.web.append((port, web))
                deployment.processes.append(web)
            deployment.processes.append(
                _start("worker", [sys.executable, "manage.py", "assistant_worker"], env, directory)
            )
            for port, _ in deployment.web:
                _wait(f"http://[::1]:{port}/readyz", deployment.processes)
            caddy_env = {
                "PATH": os.environ["PATH"],
                "HOME": str(directory),
                "XDG_CONFIG_HOME": str(directory / "caddy-config"),
                "XDG_DATA_HOME": str(directory / "caddy-data"),
                "CALPICO_SITE": url,
                "CALPICO_TLS": "internal",
                "CALPICO_UPSTREAMS": " ".join(f"[::1]:{port}" for port, _ in deployment.web),
            }
            config = caddy_test_config(directory, _free_port())
            deployment.processes.append(
                _start(
                    "caddy",
                    [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
                    caddy_env,
                    directory,
                )
            )
            _wait(f"{url}/readyz", deployment.processes, tls=True)
            yield deployment
        finally:
            for process in reversed(deployment.processes):
                _stop(process.process)


@pytest.fixture
def open_page(browser, deployment) -> Iterator:
    contexts = []

    def open_page() -> Page:
        context = browser.new_context(
            base_url=deployment.url, ignore_https_errors=True, viewport={"width": 1280, "height": 800}
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def messages(page: Page):
    return page.locator("#messages article.message")


def send(page: Page, text: str) -> None:
    textarea = page.locator("#composer textarea")
    count = messages(page).count()
    textarea.press_sequentially(text)
    textarea.press("Enter")
    expect(messages(page)).to_have_count(count + 1)
    expect(textarea).to_have_value("")


def _open_live(page: Page, path: str) -> str:
    """Load a room page and wait until its WebSocket is open and greeted; returns its URL."""
    greeted: list[str] = []

    def watch(socket) -> None:
        socket.on("framereceived", lambda _payload: greeted.append(socket.url))

    page.on("websocket", watch)
    try:
        page.goto(path)
        deadline = time.monotonic() + 15
        while not greeted and time.monotonic() < deadline:
            page.wait_for_timeout(50)
    finally:
        page.remove_listener("websocket", watch)
    assert greeted, f"{path}: no WebSocket frame within 15 s"
    return greeted[0]


def _socket_holder(deployment: Deployment, page: Page, path: str) -> int:
    """Open `path`'s WebSocket (wss://, upgraded by Caddy) and tell which daphne process took
    it, by their access logs (nothing else may connect meanwhile)."""
    before = _settled_socket_counts(deployment)
    socket_url = _open_live(page, path)
    assert socket_url.startswith(f"{deployment.url.replace('https://', 'wss://')}/ws/")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = [_count(deployment.access_log(i), r'"WSCONNECT /ws/') for i in range(2)]
        grown = [i for i in range(2) if after[i] > before[i]]
        if len(grown) == 1:
            return grown[0]
        time.sleep(0.1)
    pytest.fail(
        f"The WebSocket was not logged by exactly one daphne process: {before} -> {after}",
        pytrace=False,
    )


def _settled_socket_counts(deployment: Deployment) -> list[int]:
    """How many WebSockets each daphne process has logged, once the logs have been still for a
    second: a socket's first frame can reach the page a moment before its process logs it."""
    counts = [_count(deployment.access_log(i), r'"WSCONNECT /ws/') for i in range(2)]
    still_since = time.monotonic()
    deadline = still_since + 10
    while time.monotonic() - still_since < 1.0 and time.monotonic() < deadline:
        time.sleep(0.1)
        now = [_count(deployment.access_log(i), r'"WSCONNECT /ws/') for i in range(2)]
        if now != counts:
            counts, still_since = now, time.monotonic()
    return counts


def _count(text: str, pattern: str) -> int:
    return len(re.findall(pattern, text))


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_behind_caddy_with_two_processes_and_a_worker(deployment, open_page):
    """Sign up, a group, messages through either process live on the other, the assistant
    from the worker, secure cookies, HSTS, and the rate limit counting the browser."""
    alice = open_page()
    first = alice.goto("/")
    assert first is not None and first.url.startswith("https://")
    assert "max-age=31536000" in (first.header_value("strict-transport-security") or "")
    alice_name = f"alice_{secrets.token_hex(3)}"
    sign_up(alice, alice_name, "Alice Liddell")
    bob = open_page()
    bob_name = f"bob_{secrets.token_hex(3)}"
    sign_up(bob, bob_name, "Bob Builder")

    # Cookies: only over HTTPS, not readable by script for the session.
    for page in (alice, bob):
        cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
        assert cookies["sessionid"]["secure"] and cookies["sessionid"]["httpOnly"]
        assert cookies["csrftoken"]["secure"]

    alice.get_by_role("link", name="New group").first.click()
    alice.fill("input[name=title]", "Behind the proxy")
    alice.fill("input[name=members]", bob_name)
    alice.get_by_role("button", name="Create group").click()
    expect(alice).to_have_url(re.compile(r"/r/\d+/$"))
    room_path = alice.url.removeprefix(deployment.url)

    # Each page opens its WebSocket through Caddy (wss://, upgraded by the proxy): which
    # process took Bob's?
    _open_live(alice, room_path)
    holder = _socket_holder(deployment, bob, room_path)
    other = 1 - holder

    # Alice posts until one post went through the other process than Bob's socket; every
    # post arrives live on Bob's page, without a reload.
    bob.evaluate("window.stillTheSamePage = true")
    through_other = None
    for number in range(1, 9):
        posts_before = _count(deployment.access_log(other), r'"POST /r/\d+/messages/')
        text = f"Message {number} through the proxy"
        send(alice, text)
        expect(messages(bob).filter(has_text=text)).to_have_count(1, timeout=LIVE)
        time.sleep(0.2)  # the access log is written once the response is done
        if _count(deployment.access_log(other), r'"POST /r/\d+/messages/') > posts_before:
            through_other = text
            break
    assert through_other is not None, "round robin never sent a post to the second process"
    assert bob.evaluate("window.stillTheSamePage") is True

    # The assistant, answered by the worker (the web processes only queue runs).
    send(alice, "@assistant where do we meet?")
    reply = bob.locator("#messages article.message--assistant")
    expect(reply).to_have_count(1, timeout=LIVE)
    expect(reply.locator(".message__body")).to_contain_text("Hello from the fake model.", timeout=LIVE)

    # The rate limit on failed invite links counts the browser's address (127.0.0.1), not
    # Caddy's (::1): after the browser is refused, a request from ::1 still gets through.
    statuses = []
    for number in range(FAILED_JOINS + 1):
        response = bob.goto(f"/join/not-a-real-invite-{number}/")
        statuses.append(response.status if response else 0)
    assert statuses[-1] == 429, statuses
    expect(bob.get_by_role("heading", level=1)).to_have_text("Too many tries")
    request = urllib.request.Request(
        f"{deployment.direct(0)}/join/not-a-real-invite-direct/",
        headers={"X-Forwarded-Proto": "https", "Host": "127.0.0.1"},
    )
    with pytest.raises(urllib.error.HTTPError) as direct:
        urllib.request.urlopen(request, timeout=5)
    assert direct.value.code == 404  # counted for ::1, which has no failures yet
    keys = redis.Redis.from_url(deployment.env["REDIS_URL"]).keys(
        f"{deployment.env['CACHE_KEY_PREFIX']}:*failed-joins-hour*"
    )
    counted = {key.decode().split("failed-joins-hour:")[1].rsplit(":", 1)[0] for key in keys}
    assert counted == {"127.0.0.1", "::1"}, counted

    # Health through the proxy; metrics only from the daphne ports, summed over both processes.
    with urllib.request.urlopen(f"{deployment.url}/readyz", context=_unverified(), timeout=5) as ready:
        assert ready.status == 200
    with pytest.raises(urllib.error.HTTPError) as hidden:
        urllib.request.urlopen(f"{deployment.url}/metrics", context=_unverified(), timeout=5)
    assert hidden.value.code == 404
    with urllib.request.urlopen(f"{deployment.direct(holder)}/metrics", timeout=5) as scraped:
        metrics = scraped.read().decode()
    assert _metric(metrics, "calpico_messages_posted_total", '{kind="text"}') >= 2
    assert _metric(metrics, "calpico_websockets_open") >= 1  # alice's room page, on either process
    assert _metric(metrics, "calpico_fanout_seconds_count") >= 2
    assert _metric(metrics, "calpico_assistant_runs_finished_total", '{kind="reply",status="done"}') == 1

    # The process holding Bob's socket stops (a restart): his page reconnects to the other
    # one and still gets what is posted.
    holder = _socket_holder(deployment, bob, room_path)
    _, web = deployment.web[holder]
    os.killpg(web.process.pid, signal.SIGTERM)
    web.process.wait(timeout=15)
    send(alice, "After a restart")
    expect(messages(bob).filter(has_text="After a restart")).to_have_count(1, timeout=LIVE * 2)
