"""Health, readiness and metrics: what a proxy and Prometheus ask, and who may ask."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.test import Client
from twisted.internet.error import ReactorNotRunning
from twisted.internet.task import Clock

from calpico import in_flight, shutdown
from ops import probes
from rooms import services
from tests.conftest import post


def test_healthz_answers_without_the_database(client):
    """Liveness costs no query (no django_db mark: any would raise), no session and no host
    check (a name that is not in ALLOWED_HOSTS)."""
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8001")
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert response["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response


@pytest.mark.django_db
def test_readyz_reports_each_check(client):
    response = client.get("/readyz/")
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "checks": {"database": "ok", "channel_layer": "ok", "cache": "ok"},
        "failed": [],
        "degraded": [],
    }


class FakeReactor(Clock):
    """What the drain uses of Twisted's reactor, on a clock the test moves."""

    running = True
    stopped = False
    handed_back = 0  # times the drain handed the process's runs and jobs back

    def callFromThread(self, func, *args):
        func(*args)

    def stop(self):
        # As Twisted's: `running` stays true until the shutdown's triggers are done, and a
        # second stop meanwhile raises.
        if self.stopped:
            raise ReactorNotRunning("Can't stop reactor that isn't running.")
        self.stopped = True


@pytest.fixture
def drain(monkeypatch):
    """A drain of 8 s installed on a fake reactor; SIGTERM's handler restored after. The
    hand-back of runs and jobs as it begins is counted in `reactor.handed_back` (its test
    is in tests/test_runner_faults.py)."""
    monkeypatch.setattr(shutdown, "_draining", threading.Event())
    monkeypatch.setattr(shutdown, "_on_readiness_asked", None)
    previous = signal.getsignal(signal.SIGTERM)
    reactor = FakeReactor()

    def hand_back() -> None:
        reactor.handed_back += 1

    monkeypatch.setattr(shutdown, "_hand_back_work", hand_back)
    shutdown._install_drain(reactor, 8.0)
    try:
        yield reactor, signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.django_db
def test_a_draining_process_serves_on_and_stops_once_readyz_said_so(client, drain):
    reactor, on_sigterm = drain
    assert client.get("/readyz").status_code == 200
    on_sigterm(signal.SIGTERM, None)
    assert not reactor.stopped
    assert reactor.handed_back == 1  # assistant runs and jobs: claimed elsewhere from now on
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "stopping": True}
    assert client.get("/accounts/login/").status_code == 200  # pages are still served
    reactor.advance(shutdown.DRAIN_GRACE_SECONDS - 0.1)
    assert not reactor.stopped
    reactor.advance(0.2)
    assert reactor.stopped


@pytest.fixture
def upload(monkeypatch):
    """An HTTP request in flight in this process (an upload still sending its body)."""
    monkeypatch.setattr(in_flight, "_requests", set())
    request = object()
    in_flight.began(request)
    return request


@pytest.mark.django_db
def test_a_drain_waits_for_the_http_requests_in_flight(client, drain, upload):
    reactor, on_sigterm = drain
    on_sigterm(signal.SIGTERM, None)
    assert client.get("/readyz").status_code == 503
    reactor.advance(shutdown.DRAIN_GRACE_SECONDS + 3)
    assert not reactor.stopped  # the upload is still arriving
    in_flight.ended(upload)
    reactor.advance(shutdown.IN_FLIGHT_POLL_SECONDS)
    assert reactor.stopped


@pytest.mark.django_db
def test_requests_in_flight_hold_the_drain_no_longer_than_its_seconds(client, drain, upload):
    reactor, on_sigterm = drain
    on_sigterm(signal.SIGTERM, None)
    assert client.get("/readyz").status_code == 503
    reactor.advance(7.9)
    assert not reactor.stopped
    reactor.advance(0.2)
    assert reactor.stopped
    assert reactor.getDelayedCalls() == []


def _drain_server(tmp_path, drain_seconds: int) -> tuple[subprocess.Popen, int, Path]:
    """A real server as the recipe runs it (`calpico.serve`), embedded, with a drain."""
    from tests.test_websocket_transport import PROJECT_DIR, SERVER_COMMAND, STARTUP_TIMEOUT, _free_port

    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TZ") if os.environ.get(name)}
    env.update(
        DJANGO_SETTINGS_MODULE="calpico.settings",
        CALPICO_VAR_DIR=str(tmp_path),
        ASSISTANT_RUNNER_IN_SERVER="false",
        SHUTDOWN_DRAIN_SECONDS=str(drain_seconds),
        PYTHONUNBUFFERED="1",
    )
    migrate = [sys.executable, "manage.py", "migrate", "--noinput"]
    subprocess.run(migrate, cwd=PROJECT_DIR, env=env, check=True, capture_output=True)
    port, log = _free_port(), tmp_path / "server.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [*SERVER_COMMAND, "-p", str(port), "calpico.asgi:application"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited before serving:\n{log.read_text()}", pytrace=False)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
                probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if probe.recv(100).startswith(b"HTTP/1.1 200"):
                    return process, port, log
        except OSError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_an_upload_arriving_during_the_drain_is_answered_before_the_process_stops(tmp_path):
    """The proxy asked /readyz (the drain may end), but an upload it sent before is still
    sending its body: the process waits for it, answers it, and only then stops."""
    process, port, log = _drain_server(tmp_path, drain_seconds=20)
    try:
        body = b"username=someone&password=" + b"x" * 4000
        upload = socket.create_connection(("127.0.0.1", port), timeout=10)
        upload.sendall(
            b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:1000]
        )
        time.sleep(0.3)
        os.killpg(process.pid, signal.SIGTERM)
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
            probe.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert probe.recv(100).startswith(b"HTTP/1.1 503")
        time.sleep(shutdown.DRAIN_GRACE_SECONDS + 1.5)
        assert process.poll() is None, log.read_text()
        upload.sendall(body[1000:])
        answer = b""
        while chunk := upload.recv(65536):
            answer += chunk
        upload.close()
        # Django answers (no CSRF token: 403), not a cut connection.
        assert answer.startswith(b"HTTP/1.1 403"), (answer[:200], log.read_text())
        stopped_at = time.monotonic()
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - stopped_at < 5, "the drain did not end once the upload was answered"
        assert "Drain over: /readyz said stopping" in log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_connections_that_are_no_longer_requests_do_not_hold_the_drain(tmp_path):
    """Counted requests are uncounted however they end: upgraded to a WebSocket (still open),
    cut mid-body by the client, refused as malformed, or done on a connection kept alive.
    One left counted would make every drain last its whole seconds."""
    import base64

    process, port, log = _drain_server(tmp_path, drain_seconds=20)
    connections = []
    try:
        upgraded = socket.create_connection(("127.0.0.1", port), timeout=5)
        upgraded.sendall(
            b"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\n\r\n"
        )
        assert upgraded.recv(100).startswith(b"HTTP/1.1 101")
        kept_alive = socket.create_connection(("127.0.0.1", port), timeout=5)
        kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert kept_alive.recv(100).startswith(b"HTTP/1.1 200")
        connections += [upgraded, kept_alive]
        for cut in (
            b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n" + b"x" * 100,
            b"GET /healthz HTTP/1.1\r\nHost: 1",
            b"NOT HTTP\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(cut)
                time.sleep(0.2)
        os.killpg(process.pid, signal.SIGTERM)
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
            probe.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert probe.recv(100).startswith(b"HTTP/1.1 503")
        asked_at = time.monotonic()
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - asked_at < 5, log.read_text()
        assert "Drain over: /readyz said stopping and no HTTP request is in flight" in log.read_text()
    finally:
        for connection in connections:
            connection.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_a_drain_nobody_asks_about_ends_after_its_seconds(drain):
    reactor, on_sigterm = drain
    on_sigterm(signal.SIGTERM, None)
    reactor.advance(7.9)
    assert not reactor.stopped and shutdown.draining()
    reactor.advance(0.2)
    assert reactor.stopped


def test_a_second_sigterm_stops_at_once(drain):
    reactor, on_sigterm = drain
    on_sigterm(signal.SIGTERM, None)
    on_sigterm(signal.SIGTERM, None)
    assert reactor.stopped


def test_more_sigterms_and_the_drain_timer_stop_the_reactor_once(drain):
    reactor, on_sigterm = drain
    on_sigterm(signal.SIGTERM, None)
    on_sigterm(signal.SIGTERM, None)
    on_sigterm(signal.SIGTERM, None)  # would raise ReactorNotRunning
    assert reactor.stopped
    assert reactor.getDelayedCalls() == []  # the drain's timer is cancelled
    reactor.advance(10)


@pytest.mark.django_db
def test_readyz_is_503_when_the_database_fails(client, monkeypatch):
    def broken():
        raise ConnectionError("down")

    monkeypatch.setitem(probes.CHECKS, "database", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["ready"] is False
    assert response.json()["failed"] == ["database"]


@pytest.mark.django_db
def test_readyz_stays_200_when_redis_fails(client, monkeypatch):
    """Redis down on every process: pages keep working, so the proxy must not take every
    upstream out of rotation. Redis is reported as degraded; ?strict makes it a 503."""

    def broken():
        raise ConnectionError("down")

    monkeypatch.setitem(probes.CHECKS, "cache", broken)
    monkeypatch.setitem(probes.CHECKS, "channel_layer", broken)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "checks": {"database": "ok", "channel_layer": "failed", "cache": "failed"},
        "failed": [],
        "degraded": ["channel_layer", "cache"],
    }
    strict = client.get("/readyz?strict")
    assert strict.status_code == 503
    assert strict.json()["ready"] is False
    assert strict.json()["failed"] == ["channel_layer", "cache"]


def test_probes_refuse_other_methods(client):
    for path in ("/healthz", "/readyz", "/metrics"):
        response = client.post(path)
        assert response.status_code == 405
        assert response["Allow"] == "GET, HEAD"


@pytest.mark.django_db
def test_metrics_are_refused_by_default(client):
    """Nobody is allowed until an address or a token is configured."""
    response = client.get("/metrics")
    assert response.status_code == 403
    assert b"calpico_" not in response.content


@pytest.mark.django_db
def test_metrics_from_an_allowed_address(settings):
    settings.METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8"]
    assert Client(REMOTE_ADDR="10.9.8.7").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.1").get("/metrics").status_code == 403


@pytest.mark.django_db
def test_metrics_with_the_token(settings):
    settings.METRICS_TOKEN = "s3cret-token"
    ok = Client(REMOTE_ADDR="192.0.2.1").get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert ok.status_code == 200
    for wrong in ("Bearer s3cret", "Bearer s3cret-token-", "Basic s3cret-token", "s3cret-token", ""):
        response = Client(REMOTE_ADDR="192.0.2.1").get("/metrics", HTTP_AUTHORIZATION=wrong)
        assert response.status_code == 403, wrong


@pytest.mark.django_db
def test_metrics_through_a_proxy_count_the_visitor_not_the_proxy(settings):
    """The proxy is on an allowed address, but the visitor it forwards is not."""
    settings.METRICS_ALLOWED_ADDRESSES = ["127.0.0.1"]
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    forwarded = Client(REMOTE_ADDR="127.0.0.1").get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert forwarded.status_code == 403
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200


def _sample(text: str, name: str, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        found_name, _, found_labels = metric.partition("{")
        found = ",".join(sorted(re.findall(r'\w+="[^"]*"', found_labels)))
        if found_name == name and found == wanted:
            return float(value)
    return 0.0


@pytest.mark.django_db(transaction=True)
def test_metrics_count_messages_and_queues(settings, alice, bob, alice_client):
    settings.METRICS_ALLOWED_ADDRESSES = ["127.0.0.1"]
    room = services.do_create_group(alice, "Metrics", [bob])
    before = _sample(Client().get("/metrics").content.decode(), "calpico_messages_posted_total", kind="text")
    post(alice_client, room, "hello")
    text = Client().get("/metrics").content.decode()
    assert _sample(text, "calpico_messages_posted_total", kind="text") == before + 1
    assert "calpico_queue_depth" in text
    assert 'calpico_queue_depth{queue="assistant"} 0.0' in text
    for name in (
        "calpico_websockets_open",
        "calpico_fanout_seconds",
        "calpico_assistant_runs",
        "calpico_jobs_running",
    ):
        assert f"# TYPE {name}" in text, name


COUNTING_PROCESS = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "calpico.settings")
import django
django.setup()
from calpico import metrics
metrics.MESSAGES_POSTED.labels(kind="text").inc(int(sys.argv[1]))
metrics.WEBSOCKETS_OPEN.inc(int(sys.argv[1]))
metrics.FANOUT_SECONDS.observe(0.003)
print(os.getpid(), flush=True)
if sys.argv[2] == "stay":
    sys.stdin.read()
"""


@pytest.mark.django_db
def test_metrics_add_up_every_process_of_the_host(settings, tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR, one scrape sums the processes' counters; the open
    sockets of a process that died are no longer counted."""
    directory = tmp_path / "metrics"
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DATABASE_URL", "REDIS_URL")},
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "CALPICO_VAR_DIR": str(tmp_path / "var"),
    }
    staying = subprocess.Popen(
        [sys.executable, "-c", COUNTING_PROCESS, "2", "stay"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        staying.stdout.readline()
        subprocess.run(
            [sys.executable, "-c", COUNTING_PROCESS, "3", "go"], env=env, check=True, capture_output=True
        )
        settings.PROMETHEUS_MULTIPROC_DIR = str(directory)
        settings.METRICS_ALLOWED_ADDRESSES = ["127.0.0.1"]
        text = Client().get("/metrics").content.decode()
    finally:
        staying.communicate("")
    assert _sample(text, "calpico_messages_posted_total", kind="text") == 5
    assert _sample(text, "calpico_fanout_seconds_count") == 2
    # The process that exited without saying so is swept: only the one still alive counts.
    assert _sample(text, "calpico_websockets_open") == 2


@pytest.mark.django_db
def test_the_files_of_dead_processes_are_folded_into_one(settings, tmp_path):
    """Processes come and go for months: a scrape must not read more files each time, and
    the totals must not go backwards when the files of stopped processes are folded."""
    directory = tmp_path / "metrics"
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DATABASE_URL", "REDIS_URL")},
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "CALPICO_VAR_DIR": str(tmp_path / "var"),
    }
    settings.PROMETHEUS_MULTIPROC_DIR = str(directory)
    settings.METRICS_ALLOWED_ADDRESSES = ["127.0.0.1"]
    for round_ in range(2):
        for _ in range(3):
            subprocess.run(
                [sys.executable, "-c", COUNTING_PROCESS, "1", "go"], env=env, check=True, capture_output=True
            )
        text = Client().get("/metrics").content.decode()
        assert _sample(text, "calpico_messages_posted_total", kind="text") == 3 * (round_ + 1)
        assert _sample(text, "calpico_fanout_seconds_count") == 3 * (round_ + 1)
        assert _sample(text, "calpico_websockets_open") == 0
        names = sorted(path.name for path in directory.glob("*.db"))
        assert names == ["counter_archive.db", "histogram_archive.db"], names
