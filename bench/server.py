"""Daphne processes for the benchmarks, a throwaway PostgreSQL database, and what /proc says
about a server process (resident memory, CPU seconds, open-file limit).

Every process started here is registered and stopped by `stop_all()`, which the benchmark
calls from `finally`, from atexit and on SIGTERM, so nothing outlives a run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_DIR = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0
# A server's environment is built from nothing but these, so a developer's DEBUG,
# MEDIA_ROOT or SECRET_KEY never leaks into a run.
# PYTHONPATH: to serve another checkout's code with this virtualenv (a "before" run).
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_started: list[Daphne] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def venv_script(name: str) -> str:
    # The script next to the running interpreter, so the server runs the same virtualenv.
    script = Path(sys.executable).parent / name
    return str(script) if script.exists() else (shutil.which(name) or name)


def base_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED_ENV if os.environ.get(name)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def throwaway_postgres(admin_url: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server of `admin_url`, dropped afterwards
    (WITH FORCE, so a server that is still connected does not keep it alive)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(admin_url)
    name = f"calpico_bench_{secrets.token_hex(4)}"
    maintenance = parts._replace(scheme="postgresql", path="/postgres").geturl()

    def run(statement: sql.Composable) -> None:
        with psycopg.connect(maintenance, autocommit=True) as connection:
            connection.execute(statement)

    run(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def rss_kib(pid: int) -> int:
    """Resident set size of the process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state) of proc(5); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def open_files_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"{soft} (hard {hard})"
    return "unknown"


class Server:
    """A server the benchmark talks to: its base URL and, when known, its process id."""

    def __init__(self, name: str, url: str, pid: int | None = None) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.pid = pid

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def rss_kib(self) -> int | None:
        return rss_kib(self.pid) if self.pid else None

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.pid) if self.pid else None

    def open_files_limit(self) -> str:
        return open_files_limit(self.pid) if self.pid else "unknown"

    def stop(self) -> None:
        pass


class Daphne(Server):
    """One daphne process serving `application` on a free port of 127.0.0.1, started the way
    `make run` starts it (access log on stdout, which goes to `log`)."""

    def __init__(self, name: str, application: str, env: dict[str, str], log: Path) -> None:
        port = free_port()
        super().__init__(name, f"http://127.0.0.1:{port}")
        self.log = log
        # Calpico as `make run` serves it (calpico/serve.py: daphne with its WebSocket limits);
        # the bare baseline app under daphne itself, which knows nothing of Calpico's settings.
        command = [venv_script("python"), "-m", "calpico.serve"]
        if not application.startswith("calpico."):
            command = [venv_script("daphne")]
        self.command = [*command, "-b", "127.0.0.1", "-p", str(port), application]
        self.env = env
        self._start("w")

    def _start(self, log_mode: str) -> None:
        with self.log.open(log_mode) as log_file:
            self.process = subprocess.Popen(
                self.command,
                cwd=PROJECT_DIR,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.process.pid
        _started.append(self)
        self._wait_until_serving()
        print(f"  {self.name}: daphne pid {self.pid} serving {self.url}", flush=True)

    def restart(self) -> None:
        """Stop the process (SIGTERM, as a deploy does) and start a new one on the same port."""
        self.stop()
        self._start("a")

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name}: daphne exited with status {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/", timeout=2) as response:
                    if response.status < 500:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: daphne did not answer within {STARTUP_TIMEOUT:.0f} s")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process_group(self.process)
        if self in _started:
            _started.remove(self)


def stop_all() -> None:
    for server in list(_started):
        try:
            server.stop()
        except Exception as exc:  # keep stopping the others
            print(f"could not stop {server.name}: {exc}", file=sys.stderr)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the process's group, SIGKILL it after 10 s; nothing if it has exited."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass
