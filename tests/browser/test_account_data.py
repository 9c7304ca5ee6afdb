"""A new person downloads their data, then deletes their account, as they would."""

import io
import json
import os
import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, VIEWPORT, Person, sign_up
from tests.browser.test_console import Console
from tests.browser.test_live import create_group, messages, send, wait_connected

pytestmark = pytest.mark.browser

# Where a developer's run also leaves pictures to look at (CALPICO_SHOTS=/some/dir).
SHOTS = os.environ.get("CALPICO_SHOTS", "")
EXPORT_WAIT = 30_000


def shoot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True, animations="disabled")


def test_download_my_data_then_delete_my_account(browser, live_app, screenshot):
    console = Console()

    def sign_up_person(first_name: str, display_name: str) -> Person:
        context = browser.new_context(base_url=live_app, viewport=VIEWPORT, accept_downloads=True)
        context.set_default_timeout(10_000)
        console.watch(context, first_name)
        page = context.new_page()
        username = f"{first_name}_{os.urandom(3).hex()}"
        sign_up(page, username, display_name)
        return Person(page, username, display_name)

    zoe = sign_up_person("zoe", "Zoe Quill")
    yann = sign_up_person("yann", "Yann Tiersen")
    url, _ = create_group(zoe, "Leaving soon", [yann])
    page = zoe.page
    send(page, "Here is what I wrote, mine to take")
    yann.page.goto(url)
    wait_connected(yann.page)
    send(yann.page, "Yann's words stay Yann's")

    # Settings, from the account menu.
    page.locator(".menu__trigger").click()
    page.get_by_role("link", name="Your data and account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your data and account")
    page.get_by_role("button", name="Ask for my data").click()
    expect(page.locator("#exports progress, #exports .button").first).to_be_visible()
    download_link = page.get_by_role("link", name="Download ZIP")
    expect(download_link).to_be_visible(timeout=EXPORT_WAIT)  # the page polls until it is built
    shoot(page, "ops-account-1280")
    screenshot(page, "account-data")
    with page.expect_download() as downloaded:
        download_link.click()
    archive = zipfile.ZipFile(io.BytesIO(Path(downloaded.value.path()).read_bytes()))
    written = json.loads(archive.read("messages.json"))
    assert [row["text"] for row in written] == ["Here is what I wrote, mine to take"]
    assert b"Yann's words" not in b"".join(archive.read(name) for name in archive.namelist())
    assert "README.md" in archive.namelist()

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    shoot(page, "ops-account-390")
    page.set_viewport_size(VIEWPORT)

    # A slip is refused; the real thing signs out and leaves the messages as "Deleted account".
    page.get_by_label("Your password").fill("not my password")
    page.get_by_label(re.compile("to confirm")).fill("delete my account")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.locator(".field__error")).to_contain_text("That is not your password.")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_label(re.compile("to confirm")).fill("delete my account")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.locator(".flash")).to_contain_text("Your account is deleted.")
    shoot(page, "ops-deleted-1280")
    page.goto("/rooms/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))

    mine = messages(yann.page).filter(has_text="mine to take")
    expect(mine.locator(".message__author")).to_have_text("Deleted account", timeout=10_000)
    shoot(yann.page, "ops-deleted-author-1280")

    # The username is held.
    other = browser.new_context(base_url=live_app, viewport=VIEWPORT)
    signup = other.new_page()
    signup.goto("/accounts/signup/")
    signup.fill("input[name=username]", zoe.username)
    signup.fill("input[name=password1]", PASSWORD)
    signup.fill("input[name=password2]", PASSWORD)
    signup.get_by_role("button", name="Sign up").click()
    expect(signup.locator("body")).to_contain_text("That username is taken.")
    other.close()
    for context in (zoe.page.context, yann.page.context):
        context.close()
    # The refused form answers 422 (as every refused form here does), which Chromium notes.
    refused = "/settings/account/delete/: console.error: Failed to load resource: the server responded with a status of 422"  # noqa: E501
    assert [problem for problem in console.problems if refused not in problem] == []
