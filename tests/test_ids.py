"""Ids from outside (a URL, a form, a query string, a socket frame) are never trusted to be
numbers a database can hold: any id that is not a whole number from 1 to 2**63 - 1 is "no
such thing" (404, a form error, close code 4404), never a 500.

The sweep walks every URL pattern of the project, so a pattern added later is covered too.
"""

import json
import re

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import transaction
from django.db.models import IntegerField
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RegexPattern

from accounts.models import User
from assistant.models import PrivateAnswer
from assistant.private import do_add_memory
from calpico.asgi import application
from e2ee.models import Device
from notifications.models import PushSubscription
from privacy.models import DataExport
from rooms import services
from rooms.access import MAX_ID, parse_id, parse_seq
from rooms.consumers import CLOSE_NOT_FOUND
from rooms.forms import MessageForm
from rooms.models import ModerationAction
from rooms.services import invites
from tests.conftest import client_for, membership

pytestmark = pytest.mark.django_db

# Out of range for a 64-bit integer (20 digits, and 2**63 itself), negative, zero, not a
# number, and digits that are not ASCII (int() reads "١٢" as 12).
BAD_IDS = ["99999999999999999999", str(2**63), "-1", "0", "abc", "١٢"]
# Every name a form, a query string or a URL of the project uses for an id or a seq.
ID_FIELDS = [
    "room",
    "room_id",
    "user_id",
    "message_id",
    "reply_to",
    "invite_id",
    "memory_id",
    "answer_id",
    "seq",
    "since",
    "before",
    "after",
]


def test_parse_id_takes_whole_numbers_a_bigint_holds():
    assert parse_id("1") == 1 and parse_id(42) == 42 and parse_id(str(MAX_ID)) == MAX_ID == 2**63 - 1
    for bad in [*BAD_IDS, "", " 1", "1 ", "+1", "1_000", "1.0", "²", None, True, 1.0, [1], -5, 0, 2**63]:
        assert parse_id(bad) is None, bad
    assert parse_seq("0") == 0 and parse_seq(0) == 0 and parse_seq(str(MAX_ID)) == MAX_ID
    for bad in [*BAD_IDS[:3], "abc", "١٢", None, False, -1, 2**63]:
        assert parse_seq(bad) is None, bad


# The sweep


def _routes(patterns, prefix=""):
    """(template, names) for every URL pattern: `r/{room_id}/m/{message_id}/`."""
    for pattern in patterns:
        route = str(pattern.pattern)
        if isinstance(pattern.pattern, RegexPattern):  # named groups become placeholders
            route = re.sub(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)", r"{\1}", route)
            route = route.lstrip("^").rstrip("$")
        else:
            route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + route)
        else:
            assert isinstance(pattern, URLPattern)
            yield "/" + prefix + route, re.findall(r"\{(\w+)\}", prefix + route)


@pytest.fixture
def world(alice, bob, carol, group):
    """A valid value for every URL parameter of the project, in a room alice owns."""
    message = services.do_post_message(membership(group, bob), "hello").message
    invite = invites.do_create_invite(alice, membership(group, alice), expiry="7d", uses="unlimited")
    memory = do_add_memory(alice, "Likes tea")
    answer = PrivateAnswer.objects.create(room=group, user=alice, kind="private", question="Tea?")
    export = DataExport.objects.create(user=alice)
    device = Device.objects.create(user=alice, signature_key="A" * 43 + "=")
    push_device = PushSubscription.objects.create(
        user=alice, endpoint="https://fcm.googleapis.com/fcm/send/sweep", p256dh="k", auth="a"
    )
    return {
        "export_id": export.pk,
        "room_id": group.pk,
        "message_id": message.pk,
        "seq": message.seq,
        "invite_id": invite.pk,
        "memory_id": memory.pk,
        "answer_id": answer.pk,
        "username": "bob",
        "token": invite.token,
        "device_id": str(device.pk),
        "subscription_id": push_device.pk,
        # The admin's and allauth's own parameters.
        "object_id": str(message.pk),
        "content_type_id": "1",
        "id": str(bob.pk),
        "app_label": "rooms",
        "url": "rooms/",
        "key": "x",
        "uidb36": "x",
        "path": "avatars/x.webp",
    }


def _requests_to_try(world, admin_only=False):
    """Each pattern with every parameter valid and bad ids in the query string (GET) and the
    form (POST); then with one parameter at a time bad."""
    for template, names in _routes(get_resolver().url_patterns):
        if admin_only and not template.startswith("/admin/"):
            continue
        unknown = set(names) - set(world)
        assert not unknown, f"{template}: give the sweep a valid value for {unknown}"
        valid = {name: world[name] for name in names}
        for bad in BAD_IDS:
            fields = {name: bad for name in ID_FIELDS}
            yield "get", template.format(**valid), fields
            yield "post", template.format(**valid), {"body": "hi", **fields}
        for name in names:
            for bad in BAD_IDS:
                yield "get", template.format(**{**valid, name: bad}), {}


@pytest.mark.parametrize("who", ["anonymous", "member", "staff"])
def test_no_url_answers_500_to_a_bad_id(who, world, alice, settings):
    """Every URL pattern with a bad value in each of its parameters, and with bad ids in
    the query string and the form (every name in ID_FIELDS at once: each view reads only its
    own). Each request is rolled back, so none changes what the next one sees (a member who
    "leaves" the room is still in it for the next request)."""
    settings.RATE_FAILED_JOINS_PER_HOUR = 0
    client = Client(raise_request_exception=False)
    if who == "staff":
        alice.is_staff = alice.is_superuser = True
        alice.save()
    if who != "anonymous":
        client.force_login(alice)
    session = client.cookies.get("sessionid")
    failures = []
    for method, url, data in _requests_to_try(world, admin_only=who == "staff"):
        if session is not None:
            client.cookies["sessionid"] = session.value  # a sign-out is rolled back too
        with transaction.atomic():
            response = getattr(client, method)(url, data)
            if response.status_code == 405 and method == "get":
                response = client.post(url, data)
            transaction.set_rollback(True)
        if response.status_code >= 500:
            failures.append(f"{method.upper()} {url} {data}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_room_urls_with_bad_ids_are_404(alice_client, world, bad):
    for url in [
        f"/r/{bad}/",
        f"/r/{world['room_id']}/m/{bad}/",
        f"/r/{world['room_id']}/invites/{bad}/revoke/",
        f"/assistant/memories/{bad}/edit/",
    ]:
        method = alice_client.post if "revoke" in url else alice_client.get
        assert method(url).status_code == 404, url


# Ids in query strings and forms


@pytest.mark.parametrize("bad", BAD_IDS)
def test_the_sidebar_ignores_a_bad_room_parameter(alice_client, group, bad):
    response = alice_client.get(f"/rooms/sidebar/?room={bad}")
    assert response.status_code == 200
    assert b"Trip planning" in response.content


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_bad_before_or_reply_to_shows_the_room_as_usual(alice_client, group, bad):
    room_url = reverse("rooms:room", args=[group.pk])
    assert alice_client.get(f"{room_url}?before={bad}").status_code == 200
    assert alice_client.get(f"{room_url}?reply_to={bad}").status_code == 200
    composer = alice_client.get(reverse("rooms:composer", args=[group.pk]) + f"?reply_to={bad}")
    assert composer.status_code == 200 and b"Replying to" not in composer.content


@pytest.mark.parametrize("view", ["rooms:remove_member", "rooms:transfer_ownership", "rooms:set_admin"])
@pytest.mark.parametrize("bad", BAD_IDS)
def test_member_forms_refuse_a_bad_user_id_with_a_message(alice_client, group, view, bad):
    members = sorted(group.memberships.values_list("user_id", "role"))
    response = alice_client.post(reverse(view, args=[group.pk]), {"user_id": bad, "admin": "on"}, follow=True)
    assert response.status_code == 200
    assert "Choose a member." in [str(m) for m in response.context["messages"]]
    group.refresh_from_db()
    assert group.owner.username == "alice"
    assert sorted(group.memberships.values_list("user_id", "role")) == members


@pytest.mark.parametrize("bad", [b for b in BAD_IDS if b != "0"])  # 0 is a seq: nothing read
def test_mark_read_refuses_a_bad_seq(alice_client, group, bad):
    response = alice_client.post(reverse("rooms:mark_read", args=[group.pk]), {"seq": bad})
    assert response.status_code == 400
    assert b"whole number" in response.content


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_bad_reply_to_is_a_form_error_and_the_text_stays(alice_client, group, bad):
    form = MessageForm({"body": "keep me", "reply_to": bad})
    assert not form.is_valid() and "reply_to" in form.errors
    response = alice_client.post(
        reverse("rooms:post_message", args=[group.pk]), {"body": "keep me", "reply_to": bad}
    )
    assert response.status_code == 422
    assert b"keep me" in response.content
    assert not group.messages.filter(body="keep me").exists()


# Ids in socket frames


@pytest.fixture
def _fresh_layer():
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def _socket(user, query: str) -> WebsocketCommunicator:
    def cookie():
        return f"sessionid={client_for(user).cookies['sessionid'].value}".encode()

    return WebsocketCommunicator(
        application,
        f"/ws/{query}",
        headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", await sync_to_async(cookie)())],
    )


async def _closed_with(socket, code: int) -> None:
    output = await socket.receive_output(timeout=5)
    while output["type"] == "websocket.send":
        output = await socket.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": code}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bad", BAD_IDS)
async def test_a_socket_for_a_bad_room_id_closes_with_4404(alice, _fresh_layer, bad):
    socket = await _socket(alice, f"?room={bad}")
    ok, _ = await socket.connect()
    assert ok
    await _closed_with(socket, CLOSE_NOT_FOUND)


BAD_FRAME_IDS = [99999999999999999999, 2**63, -1, 0, "12", 1.5, True, None]
BAD_FRAME_SEQS = [99999999999999999999, 2**63, -1, "12", 1.5, True, None]  # 0 is a seq


def _bad_frames():
    for bad in BAD_FRAME_IDS:
        yield {"type": "typing", "room": bad}, "typing needs a room"
        yield {"type": "read", "room": bad, "seq": 1}, "read needs a room"
        yield {"type": "resume", "room": bad, "last_seq": 0}, "resume needs"
    for bad in BAD_FRAME_SEQS:
        yield {"type": "read", "room": "ROOM", "seq": bad}, "read needs a room"
        yield {"type": "resume", "room": "ROOM", "last_seq": bad}, "resume needs"
        yield {"type": "resume", "room": "ROOM", "last_seq": 0, "oldest_seq": bad}, "resume needs"
    for bad in ["yesterday", "2026-11-22T10:15:03", 12, "9" * 41]:
        yield {"type": "resume", "room": "ROOM", "last_seq": 0, "since": bad}, "since is a time"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("frame", "error"), list(_bad_frames()))
async def test_bad_ids_and_seqs_in_frames_get_an_error_and_the_socket_stays_open(
    alice, group, _fresh_layer, frame, error
):
    frame = {key: group.pk if value == "ROOM" else value for key, value in frame.items()}
    socket = await _socket(alice, f"?room={group.pk}")
    ok, _ = await socket.connect()
    assert ok
    assert json.loads(await socket.receive_from(timeout=5))["type"] == "hello"
    await socket.send_to(text_data=json.dumps(frame))
    answer = json.loads(await socket.receive_from(timeout=5))
    assert answer["type"] == "error" and error in answer["message"], answer
    await socket.send_to(text_data='{"type": "ping"}')
    assert json.loads(await socket.receive_from(timeout=5)) == {"type": "pong"}
    await socket.disconnect()


# The admin: changelist filters and actions


def _admin_query_parameters(client, model_admin):
    """Every query parameter an admin changelist reads an id or a number from: its
    filters' own parameters, and each foreign key, primary key and integer field in the
    ways a lookup names them."""
    opts = model_admin.model._meta
    changelist = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert changelist.status_code == 200, opts.label
    names = {"pk", "pk__in", "p"}
    for spec in changelist.context["cl"].filter_specs:
        names.update(spec.expected_parameters())
    for field in opts.concrete_fields:
        if field.is_relation or field.primary_key:
            names.update({field.name, f"{field.name}__exact", f"{field.name}__in", field.attname})
            if field.is_relation:
                names.add(f"{field.name}__{field.target_field.name}__exact")
        elif isinstance(field, IntegerField):
            names.update({field.name, f"{field.name}__in", f"{field.name}__gt"})
    return sorted(names)


def _as_staff(alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    return client


def test_no_admin_changelist_filter_answers_500_to_a_bad_id(world, alice):
    """Each registered admin's changelist with each id parameter bad, one at a time."""
    client = _as_staff(alice)
    failures = []
    for model, model_admin in admin.site._registry.items():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for name in _admin_query_parameters(client, model_admin):
            for bad in BAD_IDS:
                with transaction.atomic():
                    response = client.get(url, {name: bad})
                    transaction.set_rollback(True)
                if response.status_code >= 500:
                    failures.append(f"GET {url}?{name}={bad}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "url",
    [
        "/admin/rooms/message/?room=99999999999999999999",
        "/admin/rooms/membership/?user=99999999999999999999",
        "/admin/assistant/assistantrun/?room=99999999999999999999",
        "/admin/rooms/message/?id__exact=99999999999999999999",
        "/admin/accounts/user/?pk=99999999999999999999",
    ],
)
def test_an_out_of_range_admin_filter_is_an_incorrect_lookup(world, alice, url):
    response = _as_staff(alice).get(url)
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


@pytest.mark.parametrize(
    "url",
    [
        "/admin/rooms/message/99999999999999999999/change/",
        "/admin/rooms/message/99999999999999999999/history/",
        "/admin/assistant/memory/99999999999999999999/delete/",
        "/admin/assistant/assistantsettings/99999999999999999999/change/",
    ],
)
def test_an_admin_object_url_with_an_out_of_range_id_is_no_such_object(world, alice, url):
    response = _as_staff(alice).get(url, follow=True)
    assert response.status_code == 200
    assert any("doesn’t exist" in str(m) for m in response.context["messages"])
    # Django's password page answers a missing user with a 404.
    assert _as_staff(alice).get("/admin/accounts/user/99999999999999999999/password/").status_code == 404


def test_an_admin_filter_by_a_good_id_still_filters(world, alice):
    client = _as_staff(alice)
    shown = client.get("/admin/rooms/message/", {"room__id__exact": world["room_id"]})
    assert shown.status_code == 200 and "hello" in shown.content.decode()
    in_list = client.get("/admin/rooms/message/", {"pk__in": f"{world['message_id']},{MAX_ID}"})
    assert in_list.status_code == 200 and "hello" in in_list.content.decode()


def test_no_admin_action_answers_500_to_a_bad_selected_id(world, alice, bob):
    """Each action of each registered admin, at each of its steps (the first post, the
    confirmation, the confirmed post), with a bad id among the selected ones."""
    client = _as_staff(alice)
    request = client.get("/admin/").wsgi_request
    failures = []
    for model, model_admin in admin.site._registry.items():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for action in model_admin.get_actions(request):
            for bad in BAD_IDS:
                for step in [{"index": "0"}, {}, {"confirm": "yes", "post": "yes"}]:
                    data = {"action": action, ACTION_CHECKBOX_NAME: [str(bob.pk), bad], **step}
                    with transaction.atomic():
                        response = client.post(url, data)
                        transaction.set_rollback(True)
                    if response.status_code >= 500:
                        failures.append(f"POST {url} {data}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_an_admin_action_with_a_bad_selected_id_changes_nothing(world, alice, bob, bad):
    response = _as_staff(alice).post(
        "/admin/accounts/user/",
        {"action": "suspend", "_selected_action": [str(bob.pk), bad], "confirm": "yes", "reason": "spam"},
        follow=True,
    )
    assert response.status_code == 200
    assert any("not an id" in str(m) for m in response.context["messages"])
    assert User.objects.get(pk=bob.pk).is_active
    assert not ModerationAction.objects.exists()
