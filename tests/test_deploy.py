"""The deployment recipe in deploy/: complete, valid for the tools that read it, and clean
under `manage.py check --deploy`. tests/test_proxy.py runs it for real."""

import datetime as dt
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PROJECT_DIR = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT_DIR / "deploy"
ENV_FILE = DEPLOY / "calpico.env"


def settings_read() -> set[str]:
    """Every environment variable calpico/settings.py reads."""
    source = (PROJECT_DIR / "calpico" / "settings.py").read_text()
    return set(re.findall(r'env(?:_bool|_int|_float|_list|_networks)?\("([A-Z0-9_]+)"', source))


def recipe_env(path: Path = ENV_FILE) -> dict[str, str]:
    """The settings the env file sets (not the commented-out defaults), as systemd reads them."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        values[name] = value.strip('"')
    return values


def caddy_test_config(directory: Path, http_port: int) -> Path:
    """Global options for a test run (its own HTTP port and data directory, no admin
    endpoint, no trust-store install), then the recipe's Caddyfile as it is."""
    config = directory / "Caddyfile.test"
    config.write_text(
        "{\n"
        "\tadmin off\n"
        "\tdefault_bind 127.0.0.1\n"
        f"\thttp_port {http_port}\n"
        "\tskip_install_trust\n"
        f"\tstorage file_system {directory / 'caddy-data'}\n"
        "}\n\n"
        f"import {DEPLOY / 'Caddyfile'}\n"
    )
    return config


def test_the_env_file_names_every_setting():
    named = set(re.findall(r"^#? ?([A-Z0-9_]+)=", ENV_FILE.read_text(), flags=re.MULTILINE))
    assert settings_read() - named == set()
    assert named - settings_read() == set()


def test_the_readme_documents_every_setting():
    readme = (PROJECT_DIR / "README.md").read_text()
    missing = {name for name in settings_read() if f"`{name}`" not in readme}
    assert missing == set()


def deploy_environment(tmp_path: Path) -> dict[str, str]:
    """The recipe's settings, with a real secret and this machine's paths."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env.update(recipe_env())
    env.update(
        DJANGO_SETTINGS_MODULE="calpico.settings",
        SECRET_KEY=secrets.token_urlsafe(60),
        CALPICO_VAR_DIR=str(tmp_path / "var"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    return env


def test_check_deploy_is_clean_with_the_recipe(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_DIR,
        env=deploy_environment(tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_recipe_asks_for_a_secret_key():
    assert recipe_env()["SECRET_KEY"] == ""
    assert recipe_env()["HTTPS"] == "true"
    assert recipe_env()["DEBUG"] == "false"


def _needs(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{tool} is not installed (.ci/run installs it)", pytrace=False)
        pytest.skip(f"{tool} is not installed")
    return found


def test_the_caddyfile_is_valid(tmp_path):
    caddy = _needs("caddy")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "CALPICO_SITE": "chat.example.com",
        "CALPICO_TLS": "you@example.com",
        "CALPICO_UPSTREAMS": "127.0.0.1:8001 127.0.0.1:8002",
    }
    result = subprocess.run(
        [caddy, "adapt", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"dial":"127.0.0.1:8002"' in result.stdout
    assert '"health_uri":"/readyz"' in result.stdout or '"uri":"/readyz"' in result.stdout


def test_the_nginx_site_is_valid(tmp_path):
    nginx = _needs("nginx")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chat.example.com")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    site = (DEPLOY / "nginx" / "calpico.conf").read_text()
    site = site.replace("/etc/letsencrypt/live/chat.example.com/fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace("/etc/letsencrypt/live/chat.example.com/privkey.pem", str(tmp_path / "key.pem"))
    (tmp_path / "calpico.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path};\n"
        f"  include {tmp_path}/calpico.conf;\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_the_systemd_units_are_valid(tmp_path):
    analyze = _needs("systemd-analyze")
    for unit in (DEPLOY / "systemd").glob("calpico*"):
        text = unit.read_text().replace("/srv/calpico", str(PROJECT_DIR))
        # The unit's ExecStart must exist where verify runs: this checkout's interpreter.
        text = text.replace(f"{PROJECT_DIR}/.venv/bin/python", sys.executable)
        (tmp_path / unit.name).write_text(text)
    units = [
        "calpico-web@8001.service",
        "calpico-worker.service",
        "calpico-backup.service",
        "calpico-backup.timer",
    ]
    result = subprocess.run(
        [analyze, "verify", *units], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "calpico" in line and "Failed to" not in line and "not found" not in line.lower()
    ]
    assert result.returncode == 0 or not problems, result.stdout + result.stderr
    assert not problems, problems


# What a process may still need after its own bounds: daphne's cancelling of the
# application instances left, and the interpreter's exit.
EXIT_MARGIN_SECONDS = 2.0


def _stop_timeout(unit: str) -> float:
    """A unit's TimeoutStopSec, in seconds (the recipe writes plain seconds)."""
    text = (DEPLOY / "systemd" / unit).read_text()
    values = re.findall(r"^TimeoutStopSec=(\S+)$", text, flags=re.MULTILINE)
    assert len(values) == 1, f"{unit} sets no single TimeoutStopSec (systemd's default is 90 s)"
    assert re.fullmatch(r"\d+(\.\d+)?s?", values[0]), values[0]
    return float(values[0].rstrip("s"))


def test_systemd_gives_a_stopping_process_its_drain_and_graceful_stop():
    """systemd kills a unit still running TimeoutStopSec after SIGTERM: a web process needs
    its whole drain (SHUTDOWN_DRAIN_SECONDS, which also bounds its wait for requests in
    flight) and then its graceful stop (calpico/shutdown.py: sockets closed, runs and jobs
    handed back); a worker, the hand-back of its runs and of its job."""
    from assistant import runner as assistant_runner
    from calpico import shutdown
    from jobs import runner as jobs_runner

    drain = float(recipe_env()["SHUTDOWN_DRAIN_SECONDS"])
    assert drain > 0
    web = _stop_timeout("calpico-web@.service")
    assert web > drain + shutdown.SHUTDOWN_TIMEOUT + EXIT_MARGIN_SECONDS, web
    worker = _stop_timeout("calpico-worker.service")
    assert worker > assistant_runner.SHUTDOWN_WAIT + jobs_runner.SHUTDOWN_WAIT + EXIT_MARGIN_SECONDS, worker


def test_the_recipe_creates_the_metrics_directory_before_anything_runs():
    """README step 4 runs manage.py as calpico before any unit made /run/calpico/metrics:
    a tmpfiles.d entry, installed and applied in step 3, makes it (and again at each boot)."""
    tmpfiles = DEPLOY / "tmpfiles.d" / "calpico.conf"
    lines = [line.split() for line in tmpfiles.read_text().splitlines() if line and not line.startswith("#")]
    assert ["d", recipe_env()["PROMETHEUS_MULTIPROC_DIR"], "0750", "calpico", "calpico", "-"] in lines
    readme = (PROJECT_DIR / "README.md").read_text()
    step3 = readme[readme.index("# 3. ") : readme.index("# 4. ")]
    assert "deploy/tmpfiles.d/calpico.conf /etc/tmpfiles.d/calpico.conf" in step3
    assert "systemd-tmpfiles --create /etc/tmpfiles.d/calpico.conf" in step3


def test_manage_py_runs_when_the_metrics_directory_cannot_be_made(tmp_path):
    """Metrics are simply off (with a warning) rather than every command crashing."""
    (tmp_path / "not-a-directory").write_text("")
    env = deploy_environment(tmp_path)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "not-a-directory" / "metrics")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PROMETHEUS_MULTIPROC_DIR" in result.stderr


def test_a_read_only_metrics_directory_turns_multiprocess_metrics_off(tmp_path):
    """The backup unit sees /run read-only (ProtectSystem=strict): a command there must not
    try to write its per-process files into it."""
    code = (
        "import os, django; django.setup(); from django.conf import settings; "
        "import calpico.metrics; from prometheus_client import values; "
        "print(repr(settings.PROMETHEUS_MULTIPROC_DIR), 'PROMETHEUS_MULTIPROC_DIR' in os.environ, "
        "values.ValueClass.__name__)"
    )
    env = deploy_environment(tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics").chmod(0o500)
    if os.access(tmp_path / "metrics", os.W_OK):
        # root writes anywhere but in /proc, as nobody writes under a read-only mount.
        if os.access("/proc/self", os.W_OK):
            pytest.skip("no directory this user cannot write to")
        env["PROMETHEUS_MULTIPROC_DIR"] = "/proc/self"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["''", "False", "MutexValue"]


def test_the_backup_unit_does_not_use_the_metrics_directory():
    unit = (DEPLOY / "systemd" / "calpico-backup.service").read_text()
    assert "UnsetEnvironment=PROMETHEUS_MULTIPROC_DIR" in unit
    assert "Nice=" in unit
    assert "IOSchedulingClass=idle" in unit


def test_the_recipe_leaves_jobs_to_its_worker_and_hides_every_metrics_path():
    assert recipe_env()["JOBS_RUNNER_IN_SERVER"] == "false"
    assert recipe_env()["ASSISTANT_RUNNER_IN_SERVER"] == "false"
    site = (DEPLOY / "nginx" / "calpico.conf").read_text()
    assert "location ^~ /metrics {" in site  # /metrics/ too, which Calpico answers as well
