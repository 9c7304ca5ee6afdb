"""The interface language: the browser's by default, a signed-in person's choice over it."""

import datetime as dt
import zoneinfo

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import translation

from accounts.models import User
from calpico.asgi import application
from calpico.languages import format_names, socket_language
from rooms import live, services
from rooms.models import Message
from rooms.system_events import EVENTS, join_names
from tests.sockets import ORIGIN, apost, delivered, membership, session_cookie

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


def test_a_language_nobody_uses_is_not_rendered_for_live_events(alice, group):
    # Rendering every fragment once more per language doubled a post's cost; a language is
    # rendered once a page or a socket has used it.
    message = services.do_post_message(membership(group, alice), "Hello").message
    assert "i18n" not in live.message_event(message)
    french = Client(headers={"accept-language": "fr"})
    french.force_login(alice)
    assert french.get(reverse("rooms:index")).status_code == 200
    assert ">Répondre</a>" in live.message_event(message)["i18n"]["fr"]["message_html"]


def test_every_language_is_rendered_while_the_cache_cannot_tell(alice, group, monkeypatch):
    monkeypatch.setattr(type(cache), "unreachable", True, raising=False)
    message = services.do_post_message(membership(group, alice), "Hello").message
    assert ">Répondre</a>" in live.message_event(message)["i18n"]["fr"]["message_html"]


@pytest.mark.django_db(transaction=True)
async def test_a_french_socket_alone_gets_french_events(alice, bob, group):
    # A page that reconnects after a restart, with no page view since: its socket marks French.
    socket = await sync_to_async(_socket)(bob, group, "fr-FR")
    ok, _ = await socket.connect()
    assert ok
    await socket.receive_from(timeout=5)  # hello
    try:
        await apost(group, alice, "Hello")
        assert ">Répondre</a>" in "".join(await delivered(socket))
    finally:
        await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_notices_kept_while_away_are_headed_in_the_viewers_language(alice, bob, carol, group):
    from rooms.services.moderation import do_notify

    await sync_to_async(_choose_language)(carol, "fr")
    for user in (alice, bob, carol):
        await sync_to_async(do_notify)(user.pk, "A moderator reviewed a message you reported.")
    sockets = {
        "alice (browser: French)": await sync_to_async(_socket)(alice, group, "fr-FR,fr;q=0.9"),
        "bob (browser: English)": await sync_to_async(_socket)(bob, group, "en-US"),
        "carol (chose French, browser: English)": await sync_to_async(_socket)(carol, group, "en"),
    }
    try:
        received = {}
        for who, socket in sockets.items():
            ok, _ = await socket.connect()
            assert ok
            await socket.receive_from(timeout=5)  # hello
            received[who] = "".join(await delivered(socket))
        assert ">From the moderators<" in received["bob (browser: English)"]
        assert ">De la part des modérateurs<" in received["alice (browser: French)"]
        assert ">De la part des modérateurs<" in received["carol (chose French, browser: English)"]
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


# System messages: stored as events, shown in the reader's language.


def test_system_messages_are_shown_in_each_readers_language(alice_client, bob_client, group):
    url = group.get_absolute_url()
    # English first: the message HTML is cached, and the French page must not reuse it.
    english = alice_client.get(url).text
    assert "Alice Liddell created the group “Trip planning”" in english
    assert "Alice Liddell added Bob Builder and carol" in english
    french = bob_client.get(url, **FRENCH).text
    assert "Alice Liddell a créé le groupe «\u00a0Trip planning\u00a0»" in french
    assert "Alice Liddell a ajouté Bob Builder et carol" in french
    assert "Alice Liddell added Bob Builder and carol" in alice_client.get(url).text


def test_a_system_message_keeps_its_event_and_english_text(group):
    message = Message.objects.filter(room=group, kind=Message.Kind.SYSTEM).order_by("seq").first()
    assert message.event == "group_created"
    assert message.event_params == {"actor": "Alice Liddell", "title": "Trip planning"}
    assert message.body == "Alice Liddell created the group “Trip planning”"
    with translation.override("fr"):
        assert message.system_text == "Alice Liddell a créé le groupe «\u00a0Trip planning\u00a0»"
        assert message.preview == "Alice Liddell a créé le groupe «\u00a0Trip planning\u00a0»"


def test_a_system_message_from_before_events_shows_its_stored_text(alice_client, group):
    Message.objects.filter(room=group, kind=Message.Kind.SYSTEM).update(event="", event_params={})
    page = alice_client.get(group.get_absolute_url(), **FRENCH).text
    assert "Alice Liddell created the group “Trip planning”" in page


def test_an_unknown_or_broken_event_falls_back_to_the_stored_text(group):
    message = Message.objects.filter(room=group, kind=Message.Kind.SYSTEM).order_by("seq").first()
    message.event_params = {}
    assert message.system_text == message.body
    message.event = "no_such_event"
    assert message.system_text == message.body


def test_names_are_listed_in_the_readers_language():
    assert join_names(["Bob"]) == "Bob"
    assert join_names(["Bob", "Carol", "Dave"]) == "Bob, Carol and Dave"
    with translation.override("fr"):
        assert join_names(["Bob", "Carol", "Dave"]) == "Bob, Carol et Dave"


def test_every_event_has_a_french_text():
    with translation.override("fr"):
        for code, english in EVENTS.items():
            assert translation.gettext(english) != english, code


# The browser's time zone, remembered for the dates the server writes.


def test_the_browsers_time_zone_is_remembered(alice, alice_client):
    response = alice_client.post(reverse("accounts:time_zone"), {"time_zone": "Europe/Paris"})
    assert response.status_code == 204
    alice.refresh_from_db()
    assert alice.time_zone == "Europe/Paris"
    assert b'data-time-zone="Europe/Paris"' in alice_client.get(reverse("rooms:index")).content


@pytest.mark.parametrize("name", ["", "Mars/Olympus_Mons", "../../etc/passwd", "x" * 500])
def test_a_time_zone_that_does_not_exist_is_refused(alice, alice_client, name):
    response = alice_client.post(reverse("accounts:time_zone"), {"time_zone": name})
    assert response.status_code == 400
    alice.refresh_from_db()
    assert alice.time_zone == ""


def test_only_a_signed_in_person_has_a_time_zone(client):
    response = client.post(reverse("accounts:time_zone"), {"time_zone": "Europe/Paris"})
    assert response.status_code == 302
    assert b"data-time-zone" not in client.get(reverse("landing")).content


def test_server_written_times_are_in_the_remembered_zone(alice, alice_client, group):
    message = Message.objects.filter(room=group).order_by("seq").first()
    paris = message.created_at.astimezone(zoneinfo.ZoneInfo("Europe/Paris")).strftime("%H:%M")
    utc = message.created_at.astimezone(dt.UTC).strftime("%H:%M")
    assert f">{utc}</time>" in alice_client.get(group.get_absolute_url()).text
    alice.time_zone = "Europe/Paris"
    alice.save(update_fields=["time_zone"])
    assert f">{paris}</time>" in alice_client.get(group.get_absolute_url()).text


@pytest.mark.parametrize(
    "name, french",
    [
        ("Alice", "Un message d’Alice"),
        ("alice", "Un message d’alice"),
        ("Éloïse", "Un message d’Éloïse"),
        ("Ugo", "Un message d’Ugo"),
        ("Yves", "Un message d’Yves"),
        ("Henri", "Un message de Henri"),
        ("Bob", "Un message de Bob"),
        ("", "Un message de "),
        ("😀", "Un message de 😀"),
    ],
)
def test_format_names_elides_french_de_before_a_vowel(name, french):
    with translation.override("fr"):
        assert format_names("Un message de %(name)s", name=name) == french
        # Only "de" followed by the name: other words and other values stay.
        assert format_names("Idée de %(room)s, de %(name)s", room="Bob", name=name) == (
            "Idée de Bob, " + french.removeprefix("Un message ")
        )
    with translation.override("en"):
        assert format_names("de %(name)s", name="Alice") == "de Alice"


def test_desktop_notifications_of_live_toasts_are_in_the_readers_language(alice, bob, group):
    """A toast's desktop notification (data-notify-title) reads like the toast, in French too."""
    french = Client(headers={"accept-language": "fr"})
    french.force_login(bob)
    assert french.get(reverse("rooms:index")).status_code == 200
    message = services.do_post_message(membership(group, alice), "Hello @bob").message
    event = live.message_event(message)
    assert 'data-notify-title="Alice Liddell in Trip planning"' in event["toast_html"]
    assert 'data-notify-title="Alice Liddell mentioned you in Trip planning"' in event["toast_html_mention"]
    fr = event["i18n"]["fr"]
    assert 'data-notify-title="Alice Liddell dans Trip planning"' in fr["toast_html"]
    assert 'data-notify-title="Alice Liddell vous a mentionné dans Trip planning"' in fr["toast_html_mention"]
    assert '>Alice Liddell vous a mentionné <span class="toast__room">dans' in fr["toast_html_mention"]


def test_the_desktop_notification_of_being_added_is_in_the_readers_language(group):
    from django.template.loader import render_to_string

    with translation.override("fr"):
        toast = render_to_string("rooms/live/added_toast.html", {"room": group})
    assert 'data-notify-title="Vous avez été ajouté à Trip planning"' in toast


@pytest.mark.parametrize(
    "event, params, french",
    [
        ("owner_made", {"actor": "Bob", "user": "Alice"}, "Bob a fait d’Alice le propriétaire"),
        ("owner_made", {"actor": "Alice", "user": "Bob"}, "Alice a fait de Bob le propriétaire"),
        ("ai_budget_80", {"month": 4}, "Cette conversation a utilisé 80\u00a0% de son budget IA d’avril."),
        ("ai_budget_80", {"month": 5}, "Cette conversation a utilisé 80\u00a0% de son budget IA de mai."),
    ],
)
def test_french_system_messages_elide_de_before_a_vowel(event, params, french):
    """A system message (also what a push to a group's admins says) writes "d’Alice",
    "d’avril", never "de Alice"."""
    from rooms.system_events import render

    with translation.override("fr"):
        assert render(event, params) == french
