"""The request body limit on a real server (`calpico.serve`, as `make run` starts it): a body
over REQUEST_MAX_BYTES is answered 413 and never stored, whether its size is announced
(Content-Length) or not (chunked); a body under it reaches Django."""

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.test_websocket_transport import PROJECT_DIR, SERVER_COMMAND, STARTUP_TIMEOUT, _free_port

ATTACHMENT_MAX_BYTES = 1000
REQUEST_MAX_BYTES = ATTACHMENT_MAX_BYTES + 1024 * 1024


@pytest.fixture(scope="module")
def server_port(tmp_path_factory) -> Iterator[int]:
    var_dir = tmp_path_factory.mktemp("calpico_var")
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TZ") if os.environ.get(name)}
    env.update(
        DJANGO_SETTINGS_MODULE="calpico.settings",
        CALPICO_VAR_DIR=str(var_dir),
        ATTACHMENT_MAX_BYTES=str(ATTACHMENT_MAX_BYTES),
        ASSISTANT_RUNNER_IN_SERVER="false",
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
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited before serving:\n{log.read_text()}", pytrace=False)
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/")
                connection.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the server did not answer:\n{log.read_text()}", pytrace=False)
                time.sleep(0.1)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def post(port: int, size: int, *, chunked: bool = False) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = b"x" * size
    if chunked:
        chunks = (body[i : i + 65536] for i in range(0, size, 65536))
        connection.request("POST", "/accounts/login/", body=chunks, encode_chunked=True)
    else:
        connection.request("POST", "/accounts/login/", body=body)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_with_413(server_port, chunked):
    assert post(server_port, REQUEST_MAX_BYTES + 1, chunked=chunked) == 413


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_at_the_limit_reaches_django(server_port, chunked):
    # Django answers: no CSRF token, so 403, not the server's 413.
    assert post(server_port, REQUEST_MAX_BYTES, chunked=chunked) == 403
