"""The interface language: the browser's by default, a signed-in person's choice over it."""

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse
from django.utils import translation

from accounts.models import User
from calpico.asgi import application
from calpico.languages import socket_language
from tests.sockets import ORIGIN, apost, delivered, session_cookie

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


# Live pushes: rendered in each language, each socket gets its viewer's.


def _socket(user, room, language: str | None):
    headers = [ORIGIN, (b"cookie", session_cookie(user))]
    if language:
        headers.append((b"accept-language", language.encode()))
    socket = WebsocketCommunicator(application, f"/ws/?room={room.pk}", headers=headers)
    socket.user = user
    return socket


@pytest.mark.django_db(transaction=True)
async def test_a_live_message_reaches_each_viewer_in_their_language(alice, bob, carol, group):
    await sync_to_async(_choose_language)(carol, "fr")
    sockets = {
        "alice (browser: French)": await sync_to_async(_socket)(alice, group, "fr-FR,fr;q=0.9"),
        "bob (browser: English)": await sync_to_async(_socket)(bob, group, "en-US"),
        "carol (chose French, browser: English)": await sync_to_async(_socket)(carol, group, "en"),
    }
    for socket in sockets.values():
        ok, _ = await socket.connect()
        assert ok
        await socket.receive_from(timeout=5)  # hello
    try:
        # Alice's own request is in French: the push must not be.
        with translation.override("fr"):
            await apost(group, alice, "Bonjour")
        received = {who: "".join(await delivered(socket)) for who, socket in sockets.items()}
        assert ">Reply</a>" in received["bob (browser: English)"]
        assert "Répondre" not in received["bob (browser: English)"]
        assert ">Répondre</a>" in received["alice (browser: French)"]
        assert ">Répondre</a>" in received["carol (chose French, browser: English)"]
    finally:
        for socket in sockets.values():
            await socket.disconnect()


def _choose_language(user: User, language: str) -> None:
    user.language = language
    user.save(update_fields=["language"])


def test_a_socket_follows_the_same_rules_as_a_page(alice):
    def scope(user, header: bytes | None) -> dict:
        return {"user": user, "headers": [(b"accept-language", header)] if header else []}

    assert socket_language(scope(alice, None)) == "en"
    assert socket_language(scope(alice, b"fr-CA,en;q=0.5")) == "fr"
    assert socket_language(scope(alice, b"de-DE,de;q=0.9")) == "en"
    alice.language = "fr"
    assert socket_language(scope(alice, b"en-US")) == "fr"
