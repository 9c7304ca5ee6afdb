"""A clean browser console on every page: no script errors, no Content-Security-Policy
violations, no swaps htmx could not place, no failed requests, while the page is used and
while live updates arrive from others."""

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import (
    FAKE_OPENAI_KEY,
    PROJECT_DIR,
    VIEWPORT,
    Person,
    RestartableApp,
    _migrate,
    _server_env,
    _throwaway_database,
    sign_up,
)
from tests.browser.test_live import LIVE, create_group, messages, send, wait_connected

pytestmark = pytest.mark.browser

REPLY = 10_000


@pytest.fixture
def app(tmp_path, fake_openai) -> Iterator[RestartableApp]:
    """A server of this test's own, with the assistant configured, whose database the test
    may change with manage.py (to make someone staff)."""
    var_dir = tmp_path / "calpico_var"
    var_dir.mkdir()
    extra = {"OPENAI_API_KEY": FAKE_OPENAI_KEY, "OPENAI_BASE_URL": fake_openai.base_url}
    with _throwaway_database(os.environ.get("DATABASE_URL", "").strip()) as database_url:
        env = _server_env(var_dir, database_url, extra)
        _migrate(env)
        server = RestartableApp(env, var_dir)
        try:
            server.start()
            yield server
        finally:
            server.stop()


def make_staff(app: RestartableApp, username: str) -> None:
    code = (
        "from accounts.models import User; "
        f"User.objects.filter(username={username!r}).update(is_staff=True, is_superuser=True)"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=PROJECT_DIR, env=app.env, check=True
    )


class Console:
    """Every console error and warning and every uncaught error of the pages it watches."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def watch(self, context: BrowserContext, who: str) -> None:
        def on_console(message) -> None:
            if message.type in ("error", "warning"):
                self.problems.append(f"{who} on {message.page.url}: console.{message.type}: {message.text}")

        def on_page(page: Page) -> None:
            page.on("console", on_console)
            page.on("pageerror", lambda error: self.problems.append(f"{who} on {page.url}: {error}"))

        context.on("page", on_page)


def test_every_page_keeps_a_clean_console(browser, app, fake_openai):
    """Alice (staff) and Bob use every main page while the other posts, renames the group
    and the assistant, and the assistant replies."""
    console = Console()

    def sign_up_person(first_name: str, display_name: str) -> Person:
        context = browser.new_context(base_url=app.url, viewport=VIEWPORT)
        context.set_default_timeout(10_000)
        console.watch(context, first_name)
        page = context.new_page()
        sign_up(page, first_name, display_name)
        return Person(page, first_name, display_name)

    alice = sign_up_person("alice", "Alice Liddell")
    bob = sign_up_person("bob", "Bob Builder")
    make_staff(app, "alice")
    url, room_id = create_group(alice, "Trip planning", [bob])
    page, other = alice.page, bob.page
    other.goto(url)
    wait_connected(page)
    wait_connected(other)
    preview = page.locator(f"#sidebar-preview-{room_id}")

    # A room with messages: posting, receiving, typing, an assistant reply streaming in.
    send(page, "Shall we leave on Saturday?")
    expect(messages(other).filter(has_text="Shall we leave on Saturday?")).to_have_count(1, timeout=LIVE)
    other.locator("#composer textarea").press_sequentially("Saturday")
    expect(page.locator("#typing")).to_have_text("Bob Builder is typing…", timeout=LIVE)
    other.locator("#composer textarea").fill("")
    send(other, "Saturday works for me")
    expect(messages(page).filter(has_text="Saturday works for me")).to_have_count(1, timeout=LIVE)
    fake_openai.queue(text="Saturday it is: leave at nine.", token_interval=0.02)
    textarea = page.locator("#composer textarea")
    textarea.fill("@assistant when should we leave?")
    textarea.press("Enter")
    expect(textarea).to_have_value("")
    expect(page.locator("#messages article.message--assistant.message--done")).to_contain_text(
        "leave at nine", timeout=REPLY
    )
    page.reload()  # the room as it opens with these messages in it
    wait_connected(page)

    # The room's settings page, while Alice posts, renames the group and the assistant.
    other.goto(f"{url}settings/")
    wait_connected(other)
    send(page, "Posted while Bob reads the settings")
    bob_preview = other.locator(f"#sidebar-preview-{room_id}")
    expect(bob_preview).to_contain_text("Posted while Bob reads the settings", timeout=LIVE)
    page.goto(f"{url}settings/")
    page.get_by_label("Group name").fill("Weekend trip")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator(".flash")).to_contain_text("The group is renamed.")
    panel = page.locator("#assistant-panel")
    panel.get_by_label("Name").fill("Planner")
    panel.get_by_role("button", name="Save assistant").click()
    expect(page.locator(".flash")).to_contain_text("The assistant is updated.")
    expect(bob_preview).to_contain_text("renamed the assistant to Planner", timeout=LIVE)
    other.goto(url)
    wait_connected(other)

    # My assistant's room, while its assistant is renamed from another tab.
    mine = page.context.new_page()
    mine.goto("/assistant/")
    wait_connected(mine)
    page.goto(mine.url + "settings/")
    panel = page.locator("#assistant-panel")
    panel.get_by_label("Name").fill("Jeeves")
    panel.get_by_role("button", name="Save assistant").click()
    expect(page.locator(".flash")).to_contain_text("The assistant is updated.")
    expect(mine.locator("#messages .message--system").last).to_contain_text("Jeeves", timeout=LIVE)
    mine.close()

    # The other main pages; on those with a live connection, while a message from Bob arrives.
    paths = [
        "/rooms/",
        "/settings/profile/",
        f"/u/{bob.username}/",
        "/people/",
        "/settings/notifications/",
        "/settings/privacy/",
        "/search/?q=saturday",
        f"{url}m/3/",
        "/assistant/memories/",
        "/admin/",
        "/admin/rooms/message/",
    ]
    for number, path in enumerate(paths):
        page.goto(path)
        page.wait_for_load_state("load")
        if page.locator("#live").count():
            wait_connected(page)
            text = f"Message number {number} from Bob"
            send(other, text)
            expect(preview).to_contain_text(text, timeout=LIVE)

    page.goto(url)
    wait_connected(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("Weekend trip")
    assert not console.problems, "\n".join(console.problems)
