"""The security baseline: headers, CSRF, and a clean `check --deploy`."""

import html
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def test_pages_send_a_content_security_policy_without_inline_script(alice_client):
    policy = alice_client.get(reverse("rooms:index"))["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy


def test_pages_have_no_inline_script_or_style(alice_client, group):
    for url in (reverse("rooms:index"), group.get_absolute_url(), reverse("accounts:profile_settings")):
        body = alice_client.get(url).content.decode()
        assert "<script>" not in body and "<script " not in body.replace("<script src=", "")
        assert " style=" not in body and "<style" not in body
        assert " onclick=" not in body and "hx-on" not in body


def test_posting_needs_a_csrf_token(alice, group):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(reverse("rooms:post_message", args=[group.pk]), {"body": "forged"})
    assert response.status_code == 403
    assert not group.messages.filter(body="forged").exists()


def test_production_settings_pass_check_deploy(tmp_path):
    env = {
        **os.environ,
        "CALPICO_VAR_DIR": str(tmp_path),
        "DEBUG": "false",
        "HTTPS": "true",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "chat.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_embedded_mode_generates_and_keeps_a_secret_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env["CALPICO_VAR_DIR"] = str(tmp_path)
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    command = [
        sys.executable,
        "-c",
        f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='calpico.settings'; {code}",
    ]
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert first == second and len(first.strip()) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


# The general /media/ view: profile pictures only, by their stored name


@pytest.fixture
def stored_attachment(settings):
    """A message image on disk, as rooms.attachments stores it (served to members only)."""
    folder = Path(settings.MEDIA_ROOT) / "attachments"
    folder.mkdir(parents=True)
    (folder / "secret.webp").write_bytes(b"RIFF-not-for-you")
    avatars = Path(settings.MEDIA_ROOT) / "avatars"
    avatars.mkdir()
    (avatars / "face.webp").write_bytes(b"RIFF-a-face")
    return "secret.webp"


def test_media_serves_profile_pictures_to_signed_in_people(mallory_client, stored_attachment):
    response = mallory_client.get("/media/avatars/face.webp")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"RIFF-a-face"


@pytest.mark.parametrize(
    "path",
    [
        "/media/attachments/secret.webp",
        "/media//attachments/secret.webp",
        "/media///attachments/secret.webp",
        "/media/%2Fattachments/secret.webp",
        "/media/avatars/%2e%2e/attachments/secret.webp",
        "/media/avatars/%2E%2E/attachments/secret.webp",
        "/media/avatars/../attachments/secret.webp",
        "/media/avatars/./../attachments/secret.webp",
        "/media/avatars//../attachments/secret.webp",
        "/media/avatars%2F..%2Fattachments%2Fsecret.webp",
        "/media/avatars/..%2Fattachments%2Fsecret.webp",
        "/media/avatars/..%5Cattachments%5Csecret.webp",
        "/media/avatars\\..\\attachments\\secret.webp",
        "/media/./attachments/secret.webp",
        "/media/%2e/attachments/secret.webp",
        "/media/avatars/./face.webp",
        "/media/avatars//face.webp",
        "/media/avatars/face.webp%00",
    ],
)
def test_media_refuses_paths_that_are_not_a_plain_avatar_name(mallory_client, stored_attachment, path):
    """Message images are served by the room view to members only; no spelling of their
    path gets them through the general media view."""
    response = mallory_client.get(path)
    assert response.status_code == 404
    assert b"RIFF" not in b"".join(getattr(response, "streaming_content", [response.content]))


# Where "next" may send people


BAD_TARGETS = [
    "//evil.example",
    "/\\evil.example",
    "/\\/evil.example",
    "\\\\evil.example",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    " //evil.example",
    "\t//evil.example",
    "///evil.example",
]
GOOD_TARGETS = ["/rooms/", "/r/1/", "/settings/blocked/", "/u/bob/?tab=1#top"]


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_block_and_unblock_never_redirect_off_site(alice_client, bob, target):
    for name in ("accounts:block", "accounts:unblock"):
        response = alice_client.post(reverse(name, args=["bob"]), {"next": target})
        assert response.status_code == 302
        assert response["Location"] == bob.get_absolute_url()


@pytest.mark.parametrize("target", GOOD_TARGETS)
def test_block_and_unblock_go_back_to_the_page_they_came_from(alice_client, bob, target):
    for name in ("accounts:block", "accounts:unblock"):
        response = alice_client.post(reverse(name, args=["bob"]), {"next": target})
        assert response["Location"] == target


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_logging_in_never_redirects_off_site(client, alice, target):
    response = client.post(reverse("account_login"), {"login": "alice", "password": PASSWORD, "next": target})
    assert response.status_code == 302
    assert response["Location"] == reverse("rooms:index")


@pytest.mark.parametrize("target", GOOD_TARGETS)
def test_logging_in_goes_on_to_the_page_asked_for(client, alice, target):
    response = client.post(reverse("account_login"), {"login": "alice", "password": PASSWORD, "next": target})
    assert response["Location"] == target


# A new password ends every other session, and their open pages with them


@pytest.fixture
def fresh_layer():
    """Each socket test gets a channel layer of its own."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def page_socket(client: Client, room=None, *, hello=True):
    """An open page of the browser `client` (its session cookie), past its hello."""
    from channels.testing import WebsocketCommunicator

    from calpico.asgi import application

    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    path = "/ws/" + (f"?room={room.pk}" if room is not None else "")
    socket = WebsocketCommunicator(
        application, path, headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", cookie)]
    )
    ok, _ = await socket.connect()
    assert ok
    if hello:
        assert json.loads(await socket.receive_from(timeout=5))["type"] == "hello"
    return socket


async def closed_with(socket, code: int) -> None:
    output = await socket.receive_output(timeout=5)
    while output["type"] == "websocket.send":
        output = await socket.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": code}


async def still_live(socket, room, author) -> None:
    """The socket still gets the room's messages, and answers a ping."""
    from rooms import services
    from tests.conftest import membership

    await sync_to_async(lambda: services.do_post_message(membership(room, author), "still here"))()
    received = await socket.receive_from(timeout=5)
    while "still here" not in received:
        received = await socket.receive_from(timeout=5)
    await socket.send_to(text_data=json.dumps({"type": "ping"}))
    while (reply := await socket.receive_from(timeout=5)) and not reply.startswith("{"):
        pass
    assert json.loads(reply)["type"] == "pong"


NEW_PASSWORD = "a brand new passphrase"


def change_password(client: Client):
    return client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )


def copy_of(client: Client) -> Client:
    """Another browser holding the same session cookie (a stolen one)."""
    thief = Client()
    thief.cookies["sessionid"] = client.cookies["sessionid"].value
    return thief


@pytest.mark.django_db(transaction=True)
async def test_changing_the_password_closes_the_other_sessions_pages_but_not_this_one(
    fresh_layer, alice, bob, group
):
    """A stolen session stops reading live chat the moment its owner changes the password.
    Every page of the account is told to reconnect (4012): only the browser that made the
    change, which holds the renewed session cookie, gets back in."""
    from rooms.consumers import CLOSE_RECONNECT, CLOSE_UNAUTHENTICATED

    mine, stolen = await sync_to_async(signed_in)(alice), await sync_to_async(signed_in)(alice)
    my_page = await page_socket(mine, group)
    stolen_pages = [await page_socket(stolen, group), await page_socket(stolen)]
    assert (await sync_to_async(change_password)(mine)).status_code == 302
    for socket in [my_page, *stolen_pages]:
        await closed_with(socket, CLOSE_RECONNECT)
    # The other session itself is over, for pages and sockets; this one goes on.
    reopened = await page_socket(stolen, group, hello=False)
    await closed_with(reopened, CLOSE_UNAUTHENTICATED)
    assert (await sync_to_async(stolen.get)(reverse("rooms:index"))).status_code == 302
    assert (await sync_to_async(mine.get)(reverse("rooms:index"))).status_code == 200
    again = await page_socket(mine, group)
    await still_live(again, group, bob)
    await again.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_an_admin_setting_a_password_closes_the_accounts_pages(fresh_layer, alice, bob, group):
    """A staff member answering "my account was taken over" sets a new password in the admin:
    the sessions are over, and so is the live chat the taker still had open."""
    from rooms.consumers import CLOSE_RECONNECT, CLOSE_UNAUTHENTICATED

    taken = await sync_to_async(signed_in)(alice)
    page = await page_socket(taken, group)
    staff = await sync_to_async(make_user)("staff")
    staff.is_staff = staff.is_superuser = True
    await sync_to_async(staff.save)()
    admin = await sync_to_async(signed_in)(staff)
    response = await sync_to_async(admin.post)(
        reverse("admin:auth_user_password_change", args=[alice.pk]),
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302
    await closed_with(page, CLOSE_RECONNECT)
    reopened = await page_socket(taken, group, hello=False)
    await closed_with(reopened, CLOSE_UNAUTHENTICATED)


@pytest.mark.django_db(transaction=True)
async def test_a_copied_session_cookie_stops_reading_when_the_password_changes(
    fresh_layer, alice, bob, group
):
    """The thief holds the very cookie of the browser that changes the password: both pages
    are told to reconnect; the old cookie no longer signs anyone in, the renewed one does."""
    from rooms.consumers import CLOSE_RECONNECT, CLOSE_UNAUTHENTICATED

    mine = await sync_to_async(signed_in)(alice)
    thief = copy_of(mine)
    my_page = await page_socket(mine, group)
    thief_pages = [await page_socket(thief, group), await page_socket(thief)]
    assert (await sync_to_async(change_password)(mine)).status_code == 302
    assert mine.cookies["sessionid"].value != thief.cookies["sessionid"].value
    for socket in [my_page, *thief_pages]:
        await closed_with(socket, CLOSE_RECONNECT)
    # Reconnecting as live.js does after 4012, each with the cookie its browser holds.
    for _ in thief_pages:
        await closed_with(await page_socket(thief, group, hello=False), CLOSE_UNAUTHENTICATED)
    assert (await sync_to_async(thief.get)(reverse("rooms:index"))).status_code == 302
    my_page = await page_socket(mine, group)
    await still_live(my_page, group, bob)
    await my_page.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_signing_out_sends_other_devices_back_in_and_keeps_this_browser_out(
    fresh_layer, alice, bob, group
):
    """Every page of the account reconnects (4012): a device still signed in gets back in
    and keeps receiving, the browser that signed out is refused (4401)."""
    from rooms.consumers import CLOSE_RECONNECT, CLOSE_UNAUTHENTICATED

    leaving, phone = await sync_to_async(signed_in)(alice), await sync_to_async(signed_in)(alice)
    leaving_page, phone_page = await page_socket(leaving, group), await page_socket(phone, group)
    stale_cookie = copy_of(leaving)
    assert (await sync_to_async(leaving.post)(reverse("account_logout"))).status_code == 302
    for socket in (leaving_page, phone_page):
        await closed_with(socket, CLOSE_RECONNECT)
    await closed_with(await page_socket(stale_cookie, group, hello=False), CLOSE_UNAUTHENTICATED)
    phone_page = await page_socket(phone, group)
    await still_live(phone_page, group, bob)
    await phone_page.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_resetting_the_password_closes_every_page_of_the_account(fresh_layer, alice, bob, group):
    from django.core import mail

    from rooms.consumers import CLOSE_UNAUTHENTICATED

    alice.email = "alice@example.com"
    await sync_to_async(alice.save)()
    first, second = await sync_to_async(signed_in)(alice), await sync_to_async(signed_in)(alice)
    pages = [await page_socket(first, group), await page_socket(second)]
    bobs_page = await page_socket(await sync_to_async(signed_in)(bob), group)

    visitor = Client()
    await sync_to_async(visitor.post)(reverse("account_reset_password"), {"email": "alice@example.com"})
    link = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/\S+/)", mail.outbox[-1].body).group(1)
    form = await sync_to_async(visitor.get)(link, follow=True)
    response = await sync_to_async(visitor.post)(
        form.redirect_chain[-1][0] if form.redirect_chain else link,
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    await sync_to_async(alice.refresh_from_db)()
    assert alice.check_password(NEW_PASSWORD)
    for socket in pages:
        await closed_with(socket, CLOSE_UNAUTHENTICATED)
    for client in (first, second):
        assert (await sync_to_async(client.get)(reverse("rooms:index"))).status_code == 302
    await still_live(bobs_page, group, alice)  # someone else's pages are not touched
    await bobs_page.disconnect()


# Invisible and direction-changing characters

INVISIBLE_ONLY = [
    "\u200b",  # zero-width space
    "\u200c\u200d",  # zero-width non-joiner and joiner
    "\u2060",  # word joiner
    "\ufeff",  # byte order mark
    "\u00ad\u00ad",  # soft hyphens
    "\u200e\u200f\u061c",  # bidi marks
    "\u202e",  # right-to-left override
    "\u2066\u2069",  # an empty isolate
    " \u200b \n\u200b ",  # mixed with whitespace
    "\u3164",  # Hangul filler
    "\u2800",  # braille blank
    "\ufe0f",  # a variation selector alone
]


def post_text(client, room, body):
    from rooms.models import Message

    before = Message.objects.filter(room=room, kind="text").count()
    response = client.post(
        reverse("rooms:post_message", args=[room.pk]), {"body": body}, HTTP_HX_REQUEST="true"
    )
    return response, Message.objects.filter(room=room, kind="text").count() - before


@pytest.mark.parametrize("body", INVISIBLE_ONLY)
def test_a_message_of_invisible_characters_only_is_refused(alice_client, group, body):
    response, stored = post_text(alice_client, group, body)
    assert response.status_code == 422
    assert "only invisible characters" in response.content.decode()
    assert stored == 0


@pytest.mark.parametrize("body", ["a\u200bb", "👩\u200d💻", "שלום\u200e!", "co\u00adoperate", "✌\ufe0f"])
def test_text_with_something_visible_is_posted_as_typed(alice_client, group, body):
    response, stored = post_text(alice_client, group, body)
    assert response.status_code == 200 and stored == 1
    assert group.messages.get(kind="text").body == body


@pytest.mark.parametrize("body", ["\u200b", "\u2060\ufeff", "\u202e"])
def test_an_edit_to_invisible_characters_only_is_refused_and_keeps_the_original(
    alice_client, alice, group, body
):
    from rooms import services
    from tests.conftest import membership

    message = services.do_post_message(membership(group, alice), "keep me").message
    response = alice_client.post(reverse("rooms:edit_message", args=[group.pk, message.pk]), {"body": body})
    assert response.status_code == 422
    assert "only invisible characters" in response.content.decode()
    message.refresh_from_db()
    assert message.body == "keep me" and message.edited_at is None


# Markup around nothing: the text has visible characters, the message would show none.
SHOWS_NOTHING = [
    "[](https://x.example)",  # an empty link
    "[]()",
    "[\u200b](https://x.example)",
    "**\u200b**",
    "*\u200b* _\u200b_",
    "`\u200b`",
    "```\n\u200b\n```",
    "> \u200b",
    "- \u200b\n- [](https://x.example)",
]


@pytest.mark.parametrize("body", SHOWS_NOTHING)
def test_a_message_whose_markup_shows_nothing_is_refused_and_the_text_is_kept(alice_client, group, body):
    response, stored = post_text(alice_client, group, body)
    assert response.status_code == 422
    page = response.content.decode()
    assert "would show nothing" in page
    assert stored == 0
    composer = re.search(r"<textarea[^>]*>(.*?)</textarea>", page, re.S)
    assert composer is not None and html.unescape(composer.group(1)).strip() == body.strip()


@pytest.mark.parametrize("body", ["[](https://x.example)", "**\u200b**"])
def test_an_edit_to_markup_that_shows_nothing_is_refused_and_keeps_the_original(
    alice_client, alice, group, body
):
    from rooms import services
    from tests.conftest import membership

    message = services.do_post_message(membership(group, alice), "keep me").message
    response = alice_client.post(reverse("rooms:edit_message", args=[group.pk, message.pk]), {"body": body})
    assert response.status_code == 422
    assert "would show nothing" in response.content.decode()
    message.refresh_from_db()
    assert message.body == "keep me" and message.edited_at is None


@pytest.mark.parametrize("body", ["[a](https://x.example)", "** **", "![]()", "`x`", "&nbsp;", "@carol"])
def test_markup_around_something_visible_is_posted_as_typed(alice_client, group, body):
    """Shown as typed ("** **"), or with something visible beside it ("![]()" shows its "!")."""
    response, stored = post_text(alice_client, group, body)
    assert response.status_code == 200 and stored == 1
    assert group.messages.get(kind="text").body == body


def test_an_image_with_markup_that_shows_nothing_is_posted_without_text(alice, group):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from rooms import services
    from rooms.attachments import make_attachment
    from tests.conftest import image_bytes, membership

    upload = SimpleUploadedFile("red.png", image_bytes(), content_type="image/png")
    message = services.do_post_message(
        membership(group, alice), "[](https://x.example)", image=make_attachment(upload)
    ).message
    assert message.body == "" and message.image


@pytest.mark.parametrize("title", ["\u202eevil", "Trip \u2066cnalp\u2069", "a\u202ab\u202c", "\u202dx"])
def test_group_names_refuse_direction_overrides(alice_client, group, title):
    response = alice_client.post(reverse("rooms:new_group"), {"title": title, "members": ""})
    assert response.status_code == 422
    assert "reverse the direction" in response.content.decode()
    response = alice_client.post(reverse("rooms:rename", args=[group.pk]), {"title": title})
    assert response.status_code == 422
    assert "reverse the direction" in response.content.decode()
    group.refresh_from_db()
    assert group.title == "Trip planning"


def test_group_names_of_invisible_characters_only_are_refused(alice_client, group):
    response = alice_client.post(reverse("rooms:rename", args=[group.pk]), {"title": "\u200b\u2060"})
    assert response.status_code == 422
    assert "Give the group a name." in response.content.decode()
    group.refresh_from_db()
    assert group.title == "Trip planning"


@pytest.mark.parametrize(
    ("name", "error"), [("\u202eBot", "reverse the direction"), ("\u200b", "Give the assistant a name")]
)
def test_assistant_names_refuse_direction_overrides_and_invisible_names(alice_client, group, name, error):
    response = alice_client.post(
        reverse("assistant:settings", args=[group.pk]), {"name": name, "reply_mode": "mention"}
    )
    assert response.status_code == 422
    assert error in response.content.decode()
