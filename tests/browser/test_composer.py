"""The composer in a real browser: what a person sends is stored, whatever way they came
back to the page, and images go in by paste or drop as well as by the file picker."""

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_live import create_group, messages, send, wait_connected

pytestmark = pytest.mark.browser


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
