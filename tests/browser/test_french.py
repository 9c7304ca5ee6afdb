"""The interface in French for a browser that asks for it, English for one that doesn't, in
the same room: pages, the JavaScript's own words and the dates."""

import re
import secrets
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, VIEWPORT, Person, sign_up
from tests.browser.test_live import messages, send, wait_connected

pytestmark = pytest.mark.browser

SHOTS = Path("/work/wt/shots")
FRENCH_MONTHS = "janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre"


def sign_up_in_french(page: Page, username: str, display_name: str) -> None:
    page.goto("/accounts/signup/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.get_by_role("button", name="Création de compte").click()
    expect(page).to_have_url(re.compile(r"/settings/profile/$"))
    expect(page.locator("h1")).to_have_text("Paramètres du profil")
    page.get_by_label("Nom affiché").fill(display_name)
    page.get_by_role("button", name="Enregistrer", exact=True).click()
    expect(page.locator(".flash")).to_contain_text("Votre profil est enregistré.")


def test_a_french_browser_gets_the_interface_in_french(browser, live_app, screenshot):
    problems: list[str] = []
    contexts = []

    def open_page(locale: str, zone: str) -> Page:
        context = browser.new_context(base_url=live_app, viewport=VIEWPORT, locale=locale, timezone_id=zone)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on(
            "console", lambda m: m.type in ("error", "warning") and problems.append(f"{locale}: {m.text}")
        )
        page.on("pageerror", lambda error: problems.append(f"{locale}: {error}"))
        return page

    try:
        suffix = secrets.token_hex(3)
        amelie = Person(open_page("fr-FR", "Europe/Paris"), f"amelie_{suffix}", "Amélie Poulain")
        sign_up_in_french(amelie.page, amelie.username, amelie.name)
        bob = Person(open_page("en-US", "America/New_York"), f"bob_{suffix}", "Bob Builder")
        sign_up(bob.page, bob.username, bob.name)

        url, _ = create_group_in_french(amelie, "Vacances", [bob])
        page, other = amelie.page, bob.page
        other.goto(url)
        wait_connected(page)
        wait_connected(other)
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        expect(other.locator("html")).to_have_attribute("lang", "en")

        # The page's own words.
        expect(page.get_by_role("link", name="Nouveau groupe")).to_be_visible()
        expect(page.locator("#composer button[type=submit]")).to_have_text("Envoyer")
        expect(page.locator("#room-member-count")).to_have_text("2\u00a0membres")
        expect(other.get_by_role("link", name="New group")).to_be_visible()
        expect(other.locator("#composer button[type=submit]")).to_have_text("Send")

        # What happened in the room, in each reader's language.
        expect(page.locator(".message--system").first).to_have_text(
            re.compile("Amélie Poulain a créé le groupe «\u00a0Vacances\u00a0»")
        )
        expect(other.locator(".message--system").first).to_have_text(
            re.compile("Amélie Poulain created the group “Vacances”")
        )

        send(page, "On part samedi ?")
        send(other, "Saturday works for me")
        expect(messages(page).filter(has_text="Saturday works for me")).to_have_count(1)

        # The JavaScript's words come from the catalogue in the page's language.
        other.locator("#composer textarea").press_sequentially("Sat")
        expect(page.locator("#typing")).to_have_text("Bob Builder écrit…")
        other.locator("#composer textarea").fill("")
        page.locator("#composer textarea").press_sequentially("Oui")
        expect(other.locator("#typing")).to_have_text("Amélie Poulain is typing…")
        page.locator("#composer textarea").fill("")

        # Times in the viewer's language: the full date in a message's tooltip.
        expect(page.locator("#messages article.message time").first).to_have_attribute(
            "title", re.compile(rf"\d+ ({FRENCH_MONTHS}) \d{{4}}")
        )

        # Each browser's time zone is remembered, for the dates the server writes.
        page.reload()
        other.reload()
        expect(page.locator("body")).to_have_attribute("data-time-zone", "Europe/Paris")
        expect(other.locator("body")).to_have_attribute("data-time-zone", "America/New_York")
        wait_connected(page)

        SHOTS.mkdir(parents=True, exist_ok=True)
        page.mouse.move(0, 0)
        page.screenshot(path=SHOTS / "french-room-1280.png", animations="disabled")
        screenshot(page, "french-room")
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(url)
        wait_connected(page)
        page.screenshot(path=SHOTS / "french-room-390.png", animations="disabled")
        page.set_viewport_size(VIEWPORT)
        page.goto("/settings/profile/")
        expect(page.get_by_label("Langue")).to_be_visible()
        page.screenshot(path=SHOTS / "french-settings-1280.png", animations="disabled")
    finally:
        for context in contexts:
            context.close()
    assert problems == []


def create_group_in_french(owner: Person, title: str, members: list[Person]) -> tuple[str, int]:
    page = owner.page
    page.goto("/rooms/new/")
    expect(page.locator("h1")).to_have_text("Nouveau groupe")
    page.fill("input[name=title]", title)
    page.fill("input[name=members]", " ".join(m.username for m in members))
    page.get_by_role("button", name="Créer le groupe").click()
    expect(page).to_have_url(re.compile(r"/r/\d+/$"))
    return page.url, int(re.search(r"/r/(\d+)/$", page.url).group(1))
