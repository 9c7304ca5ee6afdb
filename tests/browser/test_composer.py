"""The composer in a real browser: what a person sends is stored, whatever way they came
back to the page, and pictures and files go in by paste or drop as well as by the file picker."""

import base64
import io
import re
import time

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser.test_live import create_group, messages, send, wait_connected

pytestmark = pytest.mark.browser

# Something that must NOT happen gets this long to happen anyway before we say it didn't.
QUIET = 0.5


def stored_texts(page: Page, url: str) -> list[str]:
    """The room's messages as a fresh load of the page shows them (what the server stored)."""
    fresh = page.context.new_page()
    try:
        fresh.goto(url)
        return fresh.locator("#messages article.message .message__body").all_inner_texts()
    finally:
        fresh.close()


def test_a_message_sent_after_the_back_button_is_stored_and_shown(person):
    """Send, open another room from the sidebar, press Back, type, press Enter: both are kept."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    other_url, other_id = create_group(alice, "Book club", [bob])
    url, _ = create_group(alice, "Trip planning", [bob])
    page = alice.page
    wait_connected(page)
    client_id = page.locator('#composer input[name="client_id"]')
    used_id = client_id.input_value()
    send(page, "First, before going anywhere")

    page.locator(f"#sidebar-room-{other_id}").click()
    expect(page).to_have_url(other_url)
    expect(page.get_by_role("heading", level=1)).to_have_text("Book club")
    page.go_back()
    expect(page).to_have_url(url)
    expect(page.get_by_role("heading", level=1)).to_have_text("Trip planning")
    # The page came back as it was first shown; its composer must not send the used id.
    expect(client_id).not_to_have_value(used_id)

    textarea = page.locator("#composer textarea")
    textarea.press_sequentially("Second, after coming back")
    textarea.press("Enter")
    expect(textarea).to_have_value("")
    expect(messages(page).filter(has_text="Second, after coming back")).to_have_count(1)
    expect(messages(page).filter(has_text="First, before going anywhere")).to_have_count(1)
    assert stored_texts(page, url) == ["First, before going anywhere", "Second, after coming back"]


def test_after_a_send_the_composer_is_ready_for_the_next_message(person):
    """The server leaves the composer in the page (HX-Reswap: none) and the page resets it:
    no reply, no error, no text, a new client_id; a refusal still shows and keeps the text.
    Nothing on the console but the browser's own line for the refusal."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    url, _ = create_group(alice, "Trip planning", [bob])
    page = alice.page
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    wait_connected(page)
    composer = page.locator("#composer")
    textarea = composer.locator("textarea")
    client_id = composer.locator('input[name="client_id"]')
    send(page, "Where shall we go?")

    # A refusal (nothing but spaces): the composer comes back with the error and the text.
    textarea.fill("   ")
    textarea.press("Enter")
    expect(composer.locator(".composer__error")).to_have_text("Type a message first.")
    expect(textarea).to_have_value("   ")

    # A reply after it: sent, and the composer forgets the reply, the error and the text.
    messages(page).filter(has_text="Where shall we go?").get_by_role("link", name="Reply").click()
    expect(composer.locator(".composer__reply")).to_contain_text("Where shall we go?")
    before = client_id.input_value()
    textarea.fill("The seaside")
    textarea.press("Enter")
    answer = messages(page).filter(has_text="The seaside")
    expect(answer).to_have_count(1)
    expect(answer.locator(".message__quote")).to_contain_text("Where shall we go?")
    expect(textarea).to_have_value("")
    expect(composer.locator(".composer__reply")).to_have_count(0)
    expect(composer.locator(".composer__error")).to_have_count(0)
    expect(composer.locator('input[name="reply_to"]')).to_have_value("")
    expect(client_id).not_to_have_value(before)
    expect(textarea).to_be_focused()

    # The next message is a message of its own, not a reply nor a resend.
    send(page, "Or the mountains")
    expect(messages(page).filter(has_text="Or the mountains").locator(".message__quote")).to_have_count(0)
    assert stored_texts(page, url) == ["Where shall we go?", "The seaside", "Or the mountains"]
    # The refusal's 422 is the one line the browser itself logs, as for any refused request.
    assert [p for p in problems if "the server responded with a status of 422" not in p] == []


def press_enter_twice(page: Page) -> None:
    """Enter twice in the composer, the second before the first send can have an answer
    (one task of the page's: pressed from here, a quick server may answer in between)."""
    page.evaluate(
        """() => {
            const textarea = document.querySelector("#composer textarea");
            const enter = { key: "Enter", bubbles: true, cancelable: true };
            for (let i = 0; i < 2; i++) textarea.dispatchEvent(new KeyboardEvent("keydown", enter));
        }"""
    )


def test_enter_pressed_twice_sends_once_and_the_composer_stays_in_the_page(person):
    """The composer stays in the page after a send (the page says it resets it itself, so
    the server leaves it there, with or without a file), and a second Enter while the send
    is on its way is dropped: neither a second send nor "Type a message first"."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    url, _ = create_group(alice, "Trip planning", [bob])
    page = alice.page
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    wait_connected(page)
    page.evaluate("() => { window.firstComposer = document.getElementById('composer'); }")
    textarea = page.locator("#composer textarea")
    textarea.fill("Only once, please")
    press_enter_twice(page)
    expect(messages(page).filter(has_text="Only once, please")).to_have_count(1)
    expect(textarea).to_have_value("")
    time.sleep(QUIET)
    expect(page.locator("#composer .composer__error")).to_have_count(0)
    assert stored_texts(page, url) == ["Only once, please"]

    page.locator('#composer input[type="file"]').set_input_files(
        {"name": "blue.png", "mimeType": "image/png", "buffer": base64.b64decode(png((0, 0, 255)))}
    )
    textarea.fill("With a picture")
    textarea.press("Enter")
    expect(messages(page).filter(has_text="With a picture").locator(".message__image img")).to_have_count(1)
    expect(textarea).to_have_value("")
    expect(page.locator("#composer-file-name")).to_have_count(0)
    assert page.evaluate("() => window.firstComposer === document.getElementById('composer')")
    assert problems == []


def png(colour: tuple[int, int, int]) -> str:
    """A small PNG, base64-encoded for the page."""
    buffer = io.BytesIO()
    Image.new("RGB", (120, 80), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# A file as the clipboard or a drag from the desktop hands it to the page.
DATA_TRANSFER = """([name, type, data]) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type }));
    return transfer;
}"""


def paste_file(page: Page, name: str, type_: str, data: str) -> bool:
    """Paste into the composer's text; True when the page took the paste over."""
    transfer = page.evaluate_handle(DATA_TRANSFER, [name, type_, data])
    return page.evaluate(
        """(transfer) => {
            const textarea = document.querySelector("#composer textarea");
            textarea.focus();
            const init = { clipboardData: transfer, bubbles: true, cancelable: true };
            const paste = new ClipboardEvent("paste", init);
            return !textarea.dispatchEvent(paste);
        }""",
        transfer,
    )


def drop_file(page: Page, name: str, type_: str, data: str) -> None:
    """Drag a file over the composer and drop it there."""
    transfer = page.evaluate_handle(DATA_TRANSFER, [name, type_, data])
    target = page.locator("#composer textarea")
    for event in ("dragenter", "dragover", "drop"):
        target.dispatch_event(event, {"dataTransfer": transfer})


def shown_image(message):
    image = message.locator(".message__image img")
    expect(image).to_have_count(1)
    image.scroll_into_view_if_needed()
    assert image.evaluate("img => img.decode().then(() => img.naturalWidth)") == 120
    return image


def test_an_image_is_attached_by_pasting_or_dropping_it_on_the_composer(person):
    """Paste a screenshot, send it with a line of text; drop a picture, send it alone."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    url, _ = create_group(alice, "Trip planning", [bob])
    page = alice.page
    wait_connected(page)
    attach = page.locator("#composer .composer__attach")
    note = page.locator("#composer-file-name")

    assert paste_file(page, "image.png", "image/png", png((200, 40, 40))) is True
    expect(note).to_contain_text("image.png")
    expect(attach).to_have_class(re.compile(r"\bhas-file\b"))
    textarea = page.locator("#composer textarea")
    textarea.press_sequentially("The map, as promised")
    textarea.press("Enter")
    sent = messages(page).filter(has_text="The map, as promised")
    expect(sent).to_have_count(1)
    shown_image(sent)
    expect(note).to_have_count(0)
    expect(attach).not_to_have_class(re.compile(r"\bhas-file\b"))

    drop_file(page, "drawing.png", "image/png", png((40, 40, 200)))
    expect(note).to_contain_text("drawing.png")
    page.locator("#composer").get_by_role("button", name="Send").click()
    expect(messages(page)).to_have_count(2)
    shown_image(messages(page).last)

    # Any other file is attached as a file (tests/browser/test_files.py sends them); an empty
    # one is refused on the spot, and nothing is attached.
    drop_file(page, "notes.txt", "text/plain", base64.b64encode(b"just words").decode())
    expect(note).to_contain_text("notes.txt (10 bytes)")
    expect(attach).to_have_class(re.compile(r"\bhas-file\b"))
    drop_file(page, "empty.txt", "text/plain", "")
    expect(note).to_contain_text("empty.txt is empty; there is nothing to send.")
    expect(attach).not_to_have_class(re.compile(r"\bhas-file\b"))
    expect(page).to_have_url(url)

    # An image pasted by mistake can be taken off again before sending.
    paste_file(page, "image.png", "image/png", png((10, 160, 10)))
    expect(note).to_contain_text("image.png")
    note.get_by_role("button", name="Remove").click()
    expect(attach).not_to_have_class(re.compile(r"\bhas-file\b"))
    assert page.locator("#composer input[type=file]").evaluate("input => input.files.length") == 0
    fresh = page.context.new_page()
    fresh.goto(url)
    expect(messages(fresh)).to_have_count(2)
    expect(messages(fresh).locator(".message__image img")).to_have_count(2)
    expect(messages(fresh).first).to_contain_text("The map, as promised")
    fresh.close()


# What some sources put on the clipboard beside a copied picture.
CLIPBOARD_WITH_TEXT = """([name, type, data, text, markup]) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    if (text !== null) transfer.setData("text/plain", text);
    if (markup !== null) transfer.setData("text/html", markup);
    transfer.items.add(new File([bytes], name, { type }));
    return transfer;
}"""


def paste_with_text(page: Page, name: str, data: str, text: str | None, markup: str | None = None) -> bool:
    """Paste an image that comes with text and/or HTML; True when the page took it over."""
    transfer = page.evaluate_handle(CLIPBOARD_WITH_TEXT, [name, "image/png", data, text, markup])
    return page.evaluate(
        """(transfer) => {
            const textarea = document.querySelector("#composer textarea");
            textarea.focus();
            const init = { clipboardData: transfer, bubbles: true, cancelable: true };
            return !textarea.dispatchEvent(new ClipboardEvent("paste", init));
        }""",
        transfer,
    )


@pytest.mark.parametrize(
    ("text", "markup"),
    [
        ("Screenshot 2026-11-22 at 10.15.03.png", None),  # a file manager adds the name
        ("/home/alice/Pictures/red square.PNG", None),
        (None, '<meta charset="utf-8"><img src="https://x.example/red.png" alt="A red square">'),
        (
            "A red square",  # a browser's "Copy image": the alt text beside the picture alone
            "<html><body><!--StartFragment-->"
            '<img src="https://x.example/red.png" alt="A red square">'
            "<!--EndFragment--></body></html>",
        ),
    ],
)
def test_a_pasted_image_that_comes_with_its_file_name_or_alone_in_html_is_attached(person, text, markup):
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    create_group(alice, "Trip planning", [bob])
    page = alice.page
    wait_connected(page)
    assert paste_with_text(page, "image.png", png((200, 40, 40)), text, markup) is True
    expect(page.locator("#composer-file-name")).to_contain_text("image.png")
    expect(page.locator("#composer textarea")).to_have_value("")


def test_text_copied_with_a_picture_of_itself_is_pasted_as_text(person):
    """A document's text comes with a picture of itself: the text is meant, nothing is attached."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    create_group(alice, "Trip planning", [bob])
    page = alice.page
    wait_connected(page)
    cases = [
        ("Meet at noon by the fountain", None),
        ("notes.png is attached", None),
        ("Look", '<p>Look</p><img src="https://x.example/red.png">'),
        ("One\ntwo.png", '<img src="https://x.example/a.png"><img src="https://x.example/b.png">'),
    ]
    for text, markup in cases:
        assert paste_with_text(page, "image.png", png((200, 40, 40)), text, markup) is False
    time.sleep(QUIET)
    expect(page.locator("#composer .composer__attach")).not_to_have_class(re.compile(r"\bhas-file\b"))
    assert page.locator("#composer input[type=file]").evaluate("input => input.files.length") == 0


def test_the_mention_menu_is_a_combobox_for_the_keyboard(person):
    """The composer is an ARIA combobox: "@" opens its listbox, Up and Down choose (the
    choice is aria-selected and the textarea's aria-activedescendant), Escape closes,
    Enter inserts; focus never leaves the textarea and nothing is sent on the way."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    carol = person("carol", "Carol Cook")
    create_group(alice, "Trip planning", [bob, carol])
    page = alice.page
    wait_connected(page)
    textarea = page.get_by_role("combobox", name="Message")
    expect(textarea).to_have_attribute("aria-autocomplete", "list")
    expect(textarea).to_have_attribute("aria-expanded", "false")
    expect(textarea).not_to_have_attribute("aria-controls", re.compile(".*"))

    textarea.press_sequentially("Ask @")
    menu = page.get_by_role("listbox", name="Mention")
    options = menu.get_by_role("option")
    # The assistant first, then the members; never myself.
    expect(options).to_have_count(3)
    expect(options.nth(0)).to_contain_text("@Assistant")
    expect(options.nth(1)).to_contain_text(f"@{bob.username}")
    expect(options.nth(2)).to_contain_text(f"@{carol.username}")
    expect(textarea).to_have_attribute("aria-expanded", "true")
    expect(textarea).to_have_attribute("aria-controls", "mention-menu")

    def chosen(index: int) -> None:
        for i in range(3):
            expect(options.nth(i)).to_have_attribute("aria-selected", "true" if i == index else "false")
        option_id = options.nth(index).get_attribute("id")
        assert option_id and page.locator(f"#{option_id}").count() == 1
        expect(textarea).to_have_attribute("aria-activedescendant", option_id)
        expect(textarea).to_be_focused()

    chosen(0)
    textarea.press("ArrowDown")
    chosen(1)
    textarea.press("ArrowDown")
    chosen(2)
    textarea.press("ArrowDown")  # round to the top
    chosen(0)
    textarea.press("ArrowUp")  # and back to the bottom
    chosen(2)

    textarea.press("Escape")
    expect(menu).to_have_count(0)
    expect(textarea).to_have_attribute("aria-expanded", "false")
    expect(textarea).not_to_have_attribute("aria-activedescendant", re.compile(".*"))
    expect(textarea).to_have_value("Ask @")

    textarea.press_sequentially("b")  # typing on filters again
    expect(options).to_have_count(1)
    chosen_bob = options.first
    expect(chosen_bob).to_contain_text("Bob Builder")
    expect(chosen_bob).to_have_attribute("aria-selected", "true")
    textarea.press("Enter")  # inserts, does not send
    expect(menu).to_have_count(0)
    expect(textarea).to_have_value(f"Ask @{bob.username} ")
    expect(textarea).to_have_attribute("aria-expanded", "false")
    expect(messages(page)).to_have_count(0)
    expect(textarea).to_be_focused()

    textarea.press_sequentially("about the tickets")
    textarea.press("Enter")
    expect(textarea).to_have_value("")
    expect(messages(page).filter(has_text="about the tickets").locator(".mention")).to_have_text(
        f"@{bob.username}"
    )
    # The new composer (the server's answer replaced it) is a combobox too, and its menu
    # stays open when "@" comes right after the send.
    textarea.press_sequentially("@")
    expect(options).to_have_count(3)
    time.sleep(QUIET)  # the old composer's focusout must not close it
    expect(options).to_have_count(3)
    expect(textarea).to_have_attribute("aria-expanded", "true")


def test_the_message_list_is_a_log_and_keyboard_focus_shows(person):
    """The history is announced as a log; a button reached with Tab gets a visible ring."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    create_group(alice, "Trip planning", [bob])
    page = alice.page
    wait_connected(page)
    send(page, "Hello, log")
    log = page.get_by_role("log", name="Messages")
    expect(log).to_contain_text("Hello, log")
    send_button = page.locator("#composer").get_by_role("button", name="Send")
    page.locator("#composer textarea").focus()
    page.keyboard.press("Tab")  # from the textarea to Send
    expect(send_button).to_be_focused()
    outline = send_button.evaluate(
        "(el) => getComputedStyle(el).outlineStyle + ' ' + getComputedStyle(el).outlineWidth"
    )
    assert outline == "solid 2px", outline
