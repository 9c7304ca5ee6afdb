"""Files in a real browser: one person sends a PDF, the other downloads it; a large upload
shows its progress and can be cancelled; a file the server would refuse is refused on the
spot; and whatever happens, the text being typed stays."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Person
from tests.browser.test_console import Console
from tests.browser.test_live import LIVE, create_group, messages, wait_connected

pytestmark = pytest.mark.browser

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
SHOTS = Path(os.environ.get("CALPICO_SHOTS_DIR", "/work/wt/shots"))
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def shot(page: Page, name: str) -> None:
    """A picture of the page for a person to look at (not compared by the test)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"files-{name}.png", animations="disabled")


def watch(console: Console, *people: Person) -> None:
    """Console errors and warnings of these people's pages, open ones included."""
    for who in people:
        console.watch(who.page.context, who.name)

        def on_console(message, who=who) -> None:
            if message.type in ("error", "warning"):
                console.problems.append(f"{who.name}: console.{message.type}: {message.text}")

        who.page.on("console", on_console)
        who.page.on("pageerror", lambda error, who=who: console.problems.append(f"{who.name}: {error}"))


def file_input(page: Page):
    return page.locator('#composer input[type="file"]')


# A file made in the page itself: `size` bytes, no base64 round trip for large ones.
MAKE_FILE = """([name, type, size]) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([new Uint8Array(size).fill(120)], name, { type }));
    return transfer;
}"""


def drop_on_history(page: Page, name: str, type_: str, size: int) -> None:
    """Drag a file from the desktop and let go of it over the room's messages."""
    transfer = page.evaluate_handle(MAKE_FILE, [name, type_, size])
    target = page.locator("#history")
    for event in ("dragenter", "dragover", "drop"):
        target.dispatch_event(event, {"dataTransfer": transfer})


def paste_from_file_manager(page: Page, name: str, size: int) -> bool:
    """Paste a file copied in a file manager: the clipboard holds it and its name as text."""
    transfer = page.evaluate_handle(MAKE_FILE, [name, "application/pdf", size])
    return page.evaluate(
        """([transfer, name]) => {
            transfer.setData("text/plain", name);
            const textarea = document.querySelector("#composer textarea");
            textarea.focus();
            const init = { clipboardData: transfer, bubbles: true, cancelable: true };
            return !textarea.dispatchEvent(new ClipboardEvent("paste", init));
        }""",
        [transfer, name],
    )


def test_a_pdf_sent_by_one_person_is_downloaded_by_the_other(person, tmp_path):
    console = Console()
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    watch(console, alice, bob)
    url, room_id = create_group(alice, "Trip planning", [bob])
    bob.page.goto(url)
    for who in (alice, bob):
        wait_connected(who.page)

    minutes = tmp_path / "Minutes – May.pdf"
    minutes.write_bytes(PDF)
    file_input(alice.page).set_input_files(minutes)
    note = alice.page.locator("#composer-file-name")
    expect(note).to_contain_text(f"Minutes – May.pdf ({len(PDF)} bytes)")
    textarea = alice.page.locator("#composer textarea")
    textarea.fill("The minutes, as promised")
    textarea.press("Enter")
    expect(textarea).to_have_value("")
    expect(note).to_have_count(0)

    card = messages(bob.page).filter(has_text="The minutes, as promised").locator(".file-card")
    expect(card).to_be_visible(timeout=LIVE)
    expect(card).to_contain_text("Minutes – May.pdf")
    expect(card).to_contain_text(f"PDF document · {len(PDF)}\xa0bytes")
    expect(card.locator(".file-card__icon")).to_have_text("PDF")
    expect(bob.page.locator(f"#sidebar-preview-{room_id}")).to_contain_text("The minutes, as promised")

    with bob.page.expect_download() as downloading:
        card.get_by_role("link", name="Minutes – May.pdf", exact=True).click()
    download = downloading.value
    assert download.suggested_filename == "Minutes – May.pdf"
    assert Path(download.path()).read_bytes() == PDF
    expect(bob.page).to_have_url(url)  # a download, not a page

    with bob.page.expect_download() as downloading:
        card.get_by_role("link", name="Download Minutes – May.pdf").click()
    assert Path(downloading.value.path()).read_bytes() == PDF

    # A file alone: the sidebar and the other's toast say its name.
    alice.page.goto("/rooms/")
    wait_connected(alice.page)
    file_input(bob.page).set_input_files(
        {"name": "setup.exe", "mimeType": "application/x-msdownload", "buffer": b"MZ" * 40}
    )
    bob.page.locator("#composer").get_by_role("button", name="Send").click()
    expect(messages(bob.page).locator(".file-card--program")).to_contain_text("setup.exe")
    expect(alice.page.locator(".toast").last).to_contain_text("📎 setup.exe", timeout=LIVE)
    expect(alice.page.locator(f"#sidebar-preview-{room_id}")).to_contain_text("📎 setup.exe")

    bob.page.locator("#composer textarea").focus()
    shot(bob.page, "card-1280")
    bob.page.set_viewport_size(PHONE)
    messages(bob.page).last.scroll_into_view_if_needed()
    shot(bob.page, "card-390")
    assert not console.problems, "\n".join(console.problems)


def throttle_uploads(page: Page, bytes_per_second: int) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": bytes_per_second},
    )


def test_a_large_upload_shows_its_progress_can_be_cancelled_and_keeps_what_is_typed(person):
    console = Console()
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    watch(console, alice)
    create_group(alice, "Trip planning", [bob])
    page = alice.page
    wait_connected(page)
    throttle_uploads(page, 400 * 1024)

    # Dropped on the messages, not on the composer: it is attached all the same.
    drop_on_history(page, "holiday-video.zip", "application/zip", 3 * 1024 * 1024)
    note = page.locator("#composer-file-name")
    expect(note).to_contain_text("holiday-video.zip (3.0\xa0MB)")
    textarea = page.locator("#composer textarea")
    textarea.fill("All the videos")
    textarea.press("Enter")
    progress = note.locator("progress")
    expect(progress).to_be_visible()
    expect(note.get_by_role("status")).to_contain_text(
        re.compile(r"Uploading holiday-video\.zip… \d+% of 3\.0\xa0MB")
    )
    page.wait_for_function("() => document.querySelector('#composer-file-name progress').value >= 10")
    shot(page, "progress-1280")
    note.get_by_role("button", name="Cancel").click()
    expect(note).to_contain_text("Upload cancelled. Your message is still here.")
    shot(page, "cancelled-1280")
    expect(textarea).to_have_value("All the videos")
    expect(page.locator("#composer .composer__attach")).to_have_class(re.compile(r"\bhas-file\b"))
    assert file_input(page).evaluate("input => input.files[0].name") == "holiday-video.zip"
    expect(messages(page)).to_have_count(0)

    # Sent again; the next message is typed while this one uploads, and is kept.
    textarea.press("Enter")
    expect(progress).to_be_visible()
    textarea.press_sequentially(" and the photos tomorrow")
    expect(messages(page).filter(has_text="All the videos")).to_have_count(1, timeout=30_000)
    card = messages(page).filter(has_text="All the videos").locator(".file-card--archive")
    expect(card).to_contain_text("holiday-video.zip")
    expect(card).to_contain_text("Archive · 3.0\xa0MB")
    expect(textarea).to_have_value("and the photos tomorrow")

    # At a phone's width, while uploading.
    page.set_viewport_size(PHONE)
    drop_on_history(page, "photos.zip", "application/zip", 2 * 1024 * 1024)
    textarea.press("Enter")
    page.wait_for_function("() => document.querySelector('#composer-file-name progress')?.value >= 10")
    shot(page, "progress-390")
    note.get_by_role("button", name="Cancel").click()
    expect(note).to_contain_text("Upload cancelled.")
    assert not console.problems, "\n".join(console.problems)


def test_a_file_over_the_limit_is_refused_on_the_spot_and_the_text_stays(person):
    console = Console()
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    watch(console, alice)
    create_group(alice, "Trip planning", [bob])
    page = alice.page
    wait_connected(page)
    textarea = page.locator("#composer textarea")
    textarea.fill("Here is the whole archive")
    drop_on_history(page, "everything.zip", "application/zip", 26 * 1024 * 1024)
    note = page.locator("#composer-file-name")
    expect(note.get_by_role("alert")).to_have_text(
        "everything.zip is 26.0\xa0MB; files can be at most 25.0\xa0MB."
    )
    expect(page.locator("#composer .composer__attach")).not_to_have_class(re.compile(r"\bhas-file\b"))
    expect(textarea).to_have_value("Here is the whole archive")
    shot(page, "too-large-1280")
    page.set_viewport_size(PHONE)
    shot(page, "too-large-390")
    page.set_viewport_size(DESKTOP)

    # Pasted from a file manager (the clipboard has the file and its name): attached.
    assert paste_from_file_manager(page, "plan.pdf", 2000) is True
    expect(note).to_contain_text("plan.pdf (2.0\xa0KB)")
    expect(textarea).to_have_value("Here is the whole archive")

    # Refused by the server for the text (too long): the text and the file both stay.
    page.evaluate("() => document.querySelector('#composer textarea').removeAttribute('maxlength')")
    textarea.fill("x" * 4001)
    textarea.press("Enter")
    expect(page.locator("#composer .composer__error")).to_contain_text(
        "Messages are at most 4,000 characters"
    )
    expect(textarea).to_have_value("x" * 4001)
    expect(note).to_contain_text("plan.pdf")
    assert file_input(page).evaluate("input => input.files[0].name") == "plan.pdf"
    textarea.fill("The plan")
    textarea.press("Enter")
    expect(messages(page).filter(has_text="The plan").locator(".file-card--pdf")).to_contain_text("plan.pdf")
    # The refusal's 422 is the one line Chromium logs for it; nothing else.
    problems = [p for p in console.problems if "status of 422" not in p]
    assert not problems, "\n".join(problems)
