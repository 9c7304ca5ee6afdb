"""A real Calpico server (daphne, migrated database, its own var/ directory) and Chromium.

Browser tests reach the app only over HTTP, like a person would: they never touch the
test process's database, so they need no `db` fixture and leave pytest-django's test
database alone.
"""

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.fake_openai import FakeOpenAI
    from tests.fake_searxng import FakeSearxng

PROJECT_DIR = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = PROJECT_DIR / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
STARTUP_TIMEOUT = 30.0
# The server's environment is built from nothing but these, so a developer's DEBUG,
# MEDIA_ROOT or SECRET_KEY never leaks into the run.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "DATABASE_URL", "REDIS_URL")
# daphne as `make run` starts it (calpico/serve.py), with the interpreter running the tests.
SERVER = [sys.executable, "-m", "calpico.serve"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _venv_script(name: str) -> str:
    # The script next to the running interpreter, so the server runs the same virtualenv.
    script = Path(sys.executable).parent / name
    return str(script) if script.exists() else (shutil.which(name) or name)


@contextmanager
def _throwaway_database(url: str) -> Iterator[str]:
    """For a PostgreSQL URL, a fresh database on the same server, dropped afterwards.

    The server gets its own database so it never meets pytest-django's test database.
    Any other URL (SQLite, or none) is used as it is.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        yield url
        return

    import psycopg
    from psycopg import sql

    name = f"calpico_browser_{secrets.token_hex(4)}"
    maintenance = [parts._replace(scheme="postgresql", path="/postgres").geturl()]
    if parts.path.strip("/"):
        maintenance.append(parts._replace(scheme="postgresql").geturl())

    def run(statement: sql.Composable) -> None:
        errors = []
        for conninfo in maintenance:
            try:
                with psycopg.connect(conninfo, autocommit=True) as connection:
                    connection.execute(statement)
                    return
            except psycopg.OperationalError as exc:  # this maintenance database is not reachable
                errors.append(exc)
        raise errors[-1]

    run(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _server_env(var_dir: Path, database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED_ENV if os.environ.get(name)}
    env.update(
        DJANGO_SETTINGS_MODULE="calpico.settings",
        CALPICO_VAR_DIR=str(var_dir),
        # Every test signs people up from 127.0.0.1; allauth would throttle that.
        ACCOUNT_RATE_LIMITS_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    if database_url:
        env["DATABASE_URL"] = database_url
    if env.get("REDIS_URL"):
        # Shared Redis: keep this server's cache keys and channel groups apart from others.
        prefix = f"calpico_browser_{secrets.token_hex(4)}"
        env.update(CACHE_KEY_PREFIX=prefix, CHANNEL_LAYER_PREFIX=prefix)
    return env


def _wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"daphne exited with status {process.returncode} before serving:\n{log.read_text()}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(
        f"daphne did not answer {url} within {STARTUP_TIMEOUT:.0f} s:\n{log.read_text()}", pytrace=False
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def _live_server(var_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Migrate a database of its own and serve Calpico with daphne; yields the base URL.

    `extra_env` adds to (or overrides) the server's environment, e.g. OPENAI_BASE_URL.
    """
    with _throwaway_database(os.environ.get("DATABASE_URL", "").strip()) as database_url:
        env = _server_env(var_dir, database_url, extra_env)
        _migrate(env)

        port = _free_port()
        log = var_dir / "daphne.log"
        with log.open("w") as log_file:
            process = subprocess.Popen(
                [*SERVER, "-b", "127.0.0.1", "-p", str(port), "calpico.asgi:application"],
                cwd=PROJECT_DIR,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_serving(f"{url}/", process, log)
            yield url
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def live_app(tmp_path_factory) -> Iterator[str]:
    """The base URL of a Calpico served by daphne, as `make run` serves it."""
    with _live_server(tmp_path_factory.mktemp("calpico_var")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Chromium driven through Playwright's sync API.

    Per module, not per session: while Playwright's sync API is open its event loop
    counts as running in the main thread, and async tests after the browser tests
    (pytest-asyncio) would refuse to start.
    """
    if not CHROMIUM.exists():
        reason = f"Browser tests need Chromium at {CHROMIUM} (on Debian: apt-get install chromium)."
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def _page_opener(browser, base_url: str) -> Iterator[Callable]:
    contexts = []

    def open_page():
        context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def new_page(browser, live_app) -> Iterator[Callable]:
    """Open a page in a fresh browser context: one person, with their own cookies."""
    with _page_opener(browser, live_app) as open_page:
        yield open_page


VISIBLE_IMAGES_LOADED = """() => Array.from(document.images)
    .filter((img) => {
        const box = img.getBoundingClientRect();
        return box.width > 0 && box.bottom > 0 && box.top < window.innerHeight;
    })
    .every((img) => img.complete && img.naturalWidth > 0)"""


@pytest.fixture(scope="session")
def screenshot() -> Callable:
    """Save a page to docs/screenshots/<name>.png, only when CALPICO_SCREENSHOTS=1.

    Off by default so test runs (and CI) leave the tracked screenshots alone.
    """
    enabled = os.environ.get("CALPICO_SCREENSHOTS", "") == "1"

    def take(page, name: str) -> None:
        if not enabled:
            return
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.mouse.move(0, 0)  # no hover effects in the picture
        # Avatars are loading="lazy": wait for the ones on screen, or they show as grey discs.
        page.wait_for_function(VISIBLE_IMAGES_LOADED)
        # Transitions jump to their end (hover-only controls fade out at once), and endless
        # animations (the thinking dots, the streaming cursor) show their resting state.
        page.screenshot(path=SCREENSHOT_DIR / f"{name}.png", animations="disabled")

    return take


def _migrate(env: dict[str, str]) -> None:
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if migrate.returncode != 0:
        pytest.fail(f"manage.py migrate failed:\n{migrate.stdout}\n{migrate.stderr}", pytrace=False)


class RestartableApp:
    """A Calpico server of its own that a test can stop and start again on the same port,
    with the same database and var/ directory, as an operator's restart would."""

    def __init__(self, env: dict[str, str], var_dir: Path) -> None:
        self.env = env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = var_dir / "daphne.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("a") as log_file:
            self.process = subprocess.Popen(
                [*SERVER, "-b", "127.0.0.1", "-p", str(self.port), "calpico.asgi:application"],
                cwd=PROJECT_DIR,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_until_serving(f"{self.url}/", self.process, self.log)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


@pytest.fixture
def restartable_app(tmp_path) -> Iterator[RestartableApp]:
    """A server for one test, which that test may restart (`stop()`, then `start()`)."""
    var_dir = tmp_path / "calpico_var"
    var_dir.mkdir()
    with _throwaway_database(os.environ.get("DATABASE_URL", "").strip()) as database_url:
        env = _server_env(var_dir, database_url)
        _migrate(env)
        app = RestartableApp(env, var_dir)
        try:
            app.start()
            yield app
        finally:
            app.stop()


PASSWORD = "correct horse battery staple"


@dataclass
class Person:
    """Someone signed up through the UI, with the page (and browser context) they use."""

    page: "Page"
    username: str
    name: str


def sign_up(page: "Page", username: str, display_name: str) -> None:
    """Sign up through the form and set a display name, as a new person does."""
    from playwright.sync_api import expect

    page.goto("/accounts/signup/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/settings/profile/$"))
    page.get_by_label("Display name").fill(display_name)
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text("Your profile is saved.")


def _person_factory(open_page: Callable) -> Callable[[str, str], Person]:
    def sign_up_person(first_name: str, display_name: str) -> Person:
        page = open_page()
        username = f"{first_name}_{secrets.token_hex(3)}"
        sign_up(page, username, display_name)
        return Person(page, username, display_name)

    return sign_up_person


@pytest.fixture
def person(new_page) -> Callable[[str, str], Person]:
    """Sign up someone new on live_app, in a browser context of their own.

    The server lives for the whole session, so usernames get a random suffix
    (`person("alice", "Alice Liddell")` signs up e.g. alice_3f9a1c).
    """
    return _person_factory(new_page)


# The assistant: a fake OpenAI-compatible API in the test process, and a server that talks to it.

FAKE_OPENAI_KEY = "sk-calpico-browser-tests"


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator["FakeOpenAI"]:
    """One fake OpenAI API for the session; use `fake_openai`, which resets it per test."""
    from tests.fake_openai import FakeOpenAI

    # A fox-red square, large enough to look like a picture in the room.
    with FakeOpenAI(api_key=FAKE_OPENAI_KEY, image_size=256, image_color=(214, 92, 40)) as fake:
        yield fake


@pytest.fixture
def fake_openai(fake_openai_server) -> Iterator["FakeOpenAI"]:
    """The fake OpenAI API that assistant_app talks to, with nothing queued or recorded."""
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.release()  # no gated or hanging reply outlives its test


@pytest.fixture(scope="session")
def fake_searxng_server() -> Iterator["FakeSearxng"]:
    """One fake SearxNG for the session, the assistant_app's web search."""
    from tests.fake_searxng import FakeSearxng

    with FakeSearxng() as fake:
        yield fake


@pytest.fixture(scope="session")
def assistant_app(tmp_path_factory, fake_openai_server, fake_searxng_server) -> Iterator[str]:
    """Like live_app, with the assistant configured to use the fake OpenAI API, and web
    search the fake SearxNG (offered to the model; used only when a test queues a call)."""
    extra_env = {
        "OPENAI_API_KEY": FAKE_OPENAI_KEY,
        "OPENAI_BASE_URL": fake_openai_server.base_url,
        "SEARCH_URL": fake_searxng_server.url + "/search",
    }
    with _live_server(tmp_path_factory.mktemp("calpico_assistant_var"), extra_env) as url:
        yield url


@pytest.fixture
def assistant_person(browser, assistant_app) -> Iterator[Callable[[str, str], Person]]:
    """`person`, on assistant_app."""
    with _page_opener(browser, assistant_app) as open_page:
        yield _person_factory(open_page)
