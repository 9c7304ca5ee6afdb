"""The notification settings and the offline page in French, at a desktop's and a phone's
width, with a clean console."""

import secrets
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import VIEWPORT
from tests.browser.test_french import sign_up_in_french

pytestmark = pytest.mark.browser

SHOTS = Path("/work/wt/shots")


def test_the_notification_settings_in_french_on_a_desktop_and_a_phone(browser, live_app):
    problems: list[str] = []
    context = browser.new_context(base_url=live_app, viewport=VIEWPORT, locale="fr-FR")
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        sign_up_in_french(page, f"amelie_{secrets.token_hex(3)}", "Amélie Poulain")
        page.goto("/settings/notifications/")
        expect(page.locator("#push-section")).to_contain_text("Quand Calpico est fermé")
        expect(page.get_by_label("Afficher le texte des messages dans les notifications")).to_be_checked()
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.reload()
            # Nothing sticks out sideways on a phone.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            if SHOTS.is_dir():
                page.screenshot(path=str(SHOTS / f"rev15-push-settings-fr-{width}.png"), full_page=True)
        page.goto("/offline/")
        expect(page.locator("h1")).to_be_visible()
        if SHOTS.is_dir():
            page.screenshot(path=str(SHOTS / "rev15-offline-fr-390.png"))
        assert problems == []
    finally:
        context.close()
