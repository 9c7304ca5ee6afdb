"""The interface language: the browser's by default, a signed-in person's choice over it."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User

FRENCH = {"HTTP_ACCEPT_LANGUAGE": "fr-FR,fr;q=0.9,en;q=0.5"}


def test_a_client_asking_for_no_language_gets_english(alice_client):
    response = alice_client.get(reverse("rooms:index"))
    assert response["Content-Language"] == "en"
    assert b'<html lang="en">' in response.content
    assert "New group" in response.text


def test_a_browser_asking_for_french_gets_french(alice_client):
    response = alice_client.get(reverse("rooms:index"), **FRENCH)
    assert response["Content-Language"] == "fr"
    assert b'<html lang="fr">' in response.content
    assert "Nouveau groupe" in response.text


def test_an_unknown_language_falls_back_to_english(client):
    response = client.get(reverse("landing"), HTTP_ACCEPT_LANGUAGE="xx-YY")
    assert response["Content-Language"] == "en"


def test_the_language_chosen_in_settings_wins_over_the_browser(alice, alice_client):
    response = alice_client.post(
        reverse("accounts:profile_settings"),
        {"action": "profile", "display_name": "Alice", "language": "fr"},
        follow=True,
    )
    alice.refresh_from_db()
    assert alice.language == "fr"
    assert b'<html lang="fr">' in response.content
    # Also for a browser asking for English.
    response = alice_client.get(reverse("rooms:index"), HTTP_ACCEPT_LANGUAGE="en")
    assert response["Content-Language"] == "fr"

    # '' follows the browser again.
    alice_client.post(
        reverse("accounts:profile_settings"), {"action": "profile", "display_name": "Alice", "language": ""}
    )
    alice.refresh_from_db()
    assert alice.language == ""
    assert alice_client.get(reverse("rooms:index"), **FRENCH)["Content-Language"] == "fr"
    assert alice_client.get(reverse("rooms:index"))["Content-Language"] == "en"


def test_a_language_that_is_not_offered_is_refused(alice, alice_client):
    response = alice_client.post(
        reverse("accounts:profile_settings"), {"action": "profile", "display_name": "Alice", "language": "de"}
    )
    assert response.status_code == 422
    alice.refresh_from_db()
    assert alice.language == ""


def test_signed_out_pages_follow_the_browser(client):
    response = client.get(reverse("account_login"), **FRENCH)
    assert response["Content-Language"] == "fr"
    assert b'<html lang="fr">' in response.content


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_javascript_catalog_is_served_without_signing_in(language):
    response = Client().get(reverse("javascript-catalog"), HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    assert "gettext" in response.text


def test_the_french_catalog_translates_the_interface_strings():
    response = Client().get(reverse("javascript-catalog"), **FRENCH)
    assert "Reconnexion\\u2026" in response.text or "Reconnexion…" in response.text


def test_a_user_starts_following_the_browser(db):
    assert User.objects.create_user("dora", password="x").language == ""
