"""The delivery service of encrypted rooms (e2ee/, docs/e2ee.md) from the HTTP side: who may
use the key endpoints, what bad input gets, and that the server takes ciphertext only.
The cryptography itself runs in the browser (tests/browser/test_e2ee.py)."""

import base64
import html
import json
import os
import re
import uuid

import pytest
from django.urls import reverse

from e2ee.models import Device, Group, Handshake, KeyPackage
from rooms.models import Message, Room
from tests.conftest import post

pytestmark = pytest.mark.django_db


def mls(wire_format: int, size: int = 60) -> str:
    """Base64 of bytes shaped like an MLSMessage of this wire format (contents random)."""
    return base64.b64encode(b"\x00\x01" + wire_format.to_bytes(2, "big") + os.urandom(size)).decode()


def key_package() -> str:
    return mls(5)


def signature_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def api(client, url: str, data=None):
    if data is None:
        return client.get(url)
    body = data if isinstance(data, (str, bytes)) else json.dumps(data)
    return client.post(url, body, content_type="application/json")


def start(client, username: str) -> Room:
    response = client.post(reverse("e2ee:start", args=[username]))
    assert response.status_code == 302
    return Room.objects.get(pk=int(response["Location"].strip("/").split("/")[-1]))


def register(client, packages: int = 2) -> dict:
    response = api(
        client,
        reverse("e2ee:register_device"),
        {
            "signature_key": signature_key(),
            "label": "Chromium",
            "key_packages": [key_package() for _ in range(packages)],
        },
    )
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def encrypted(alice_client, alice, bob) -> Room:
    return start(alice_client, "bob")


def test_starting_an_encrypted_conversation_makes_a_second_room_beside_the_plain_one(
    alice_client, alice, bob
):
    plain = alice_client.post(reverse("rooms:open_direct", args=["bob"]))["Location"]
    room = start(alice_client, "bob")
    assert room.encrypted and room.is_direct
    assert room.get_absolute_url() != plain
    assert start(alice_client, "BOB") == room  # one per pair
    page = alice_client.get(room.get_absolute_url()).content.decode()
    assert 'class="lock-icon"' in page and 'id="e2ee"' in page and "js/e2ee.js" in page
    assert "composer__attach" not in page  # files are not encrypted yet, so not offered


def test_the_server_refuses_plain_text_and_stores_ciphertext_as_an_encrypted_message(
    alice_client, bob_client, encrypted, events
):
    response = post(alice_client, encrypted, "hello in the clear")
    assert response.status_code == 422
    assert "only messages encrypted by your browser" in response.content.decode()
    for bad in ["aGVsbG8=", mls(5), "not base64!", mls(2)[:6]]:
        assert post(alice_client, encrypted, bad).status_code == 422
    assert not Message.objects.filter(room=encrypted).exclude(kind=Message.Kind.SYSTEM).exists()
    ciphertext = mls(2)
    assert post(alice_client, encrypted, ciphertext).status_code == 302
    message = Message.objects.get(room=encrypted, kind=Message.Kind.ENCRYPTED)
    assert message.body == ciphertext and message.html == ""
    assert message.preview == "Encrypted message"
    page = alice_client.get(encrypted.get_absolute_url()).content.decode()
    assert f'data-e2ee="{ciphertext}"' in page
    # Never searchable, never editable on the server.
    found = alice_client.get(reverse("rooms:search"), {"q": ciphertext[4:16]}).content.decode()
    assert message.get_absolute_url() not in found
    edit = alice_client.get(reverse("rooms:edit_message", args=[encrypted.pk, message.pk]))
    assert edit.status_code == 403  # only text messages are editable at all


def test_the_assistant_cannot_be_enabled_in_an_encrypted_room(alice_client, encrypted):
    page = html.unescape(alice_client.get(reverse("rooms:settings", args=[encrypted.pk])).content.decode())
    assert "the assistant can't be enabled here" in page
    response = alice_client.post(
        reverse("assistant:settings", args=[encrypted.pk]),
        {"name": "Helper", "personality": "", "reply_mode": "always"},
    )
    assert response.status_code == 403
    assert "the assistant can't be enabled here" in html.unescape(response.content.decode())
    assert not Message.objects.filter(room=encrypted, kind=Message.Kind.SYSTEM).exists()


def test_a_new_device_is_told_to_the_rooms_and_its_key_packages_are_handed_out_once(
    alice_client, bob_client, carol_client, encrypted, bob
):
    registered = register(bob_client)
    device = Device.objects.get(pk=registered["device_id"])
    assert device.user == bob and len(registered["key_package_ids"]) == 2
    notice = Message.objects.get(room=encrypted, kind=Message.Kind.SYSTEM)
    assert notice.system_text == "Bob Builder added a new device"

    alice_device = register(alice_client)["device_id"]
    state = api(alice_client, reverse("e2ee:state", args=[encrypted.pk]) + f"?device={alice_device}").json()
    assert state["group"] is None and {d["id"] for d in state["devices"]} == {alice_device, str(device.pk)}
    assert api(alice_client, reverse("e2ee:group", args=[encrypted.pk]), {"device": alice_device}).json()[
        "created"
    ]
    again = api(alice_client, reverse("e2ee:group", args=[encrypted.pk]), {"device": alice_device})
    assert again.status_code == 200 and again.json()["created"] is False

    claim_url = reverse("e2ee:claim", args=[encrypted.pk])
    first = api(alice_client, claim_url, {"device": alice_device, "device_ids": [str(device.pk)]}).json()
    second = api(alice_client, claim_url, {"device": alice_device, "device_ids": [str(device.pk)]}).json()
    third = api(alice_client, claim_url, {"device": alice_device, "device_ids": [str(device.pk)]}).json()
    ids = [p["id"] for p in first["key_packages"] + second["key_packages"]]
    assert sorted(ids) == registered["key_package_ids"] and third["key_packages"] == []

    # A commit in the current epoch is taken; one for an epoch gone is answered with the epoch.
    commit_url = reverse("e2ee:commit", args=[encrypted.pk])
    body = {
        "device": alice_device,
        "epoch": 0,
        "commit": mls(2),
        "welcome": mls(3),
        "key_package_ids": [ids[0]],
    }
    accepted = api(alice_client, commit_url, body)
    assert accepted.status_code == 201 and accepted.json() == {"accepted": True, "epoch": 1}
    late = api(alice_client, commit_url, {**body, "welcome": None})
    assert late.status_code == 200 and late.json()["accepted"] is False and late.json()["epoch"] == 1
    assert Group.objects.get(room=encrypted).epoch == 1
    welcome = api(bob_client, reverse("e2ee:state", args=[encrypted.pk]) + f"?device={device.pk}").json()[
        "welcome"
    ]
    assert welcome == {"epoch": 1, "data": body["welcome"], "key_package_id": ids[0]}
    assert Handshake.objects.filter(room=encrypted, kind="commit").count() == 1


def test_outsiders_and_other_peoples_devices_get_404(
    alice_client, bob_client, mallory_client, encrypted, alice
):
    alice_device = register(alice_client)["device_id"]
    mallory_device = register(mallory_client)["device_id"]
    for name in ["state", "messages"]:
        url = reverse(f"e2ee:{name}", args=[encrypted.pk]) + f"?device={mallory_device}"
        assert api(mallory_client, url).status_code == 404
    for name in ["group", "claim", "commit"]:
        url = reverse(f"e2ee:{name}", args=[encrypted.pk])
        assert (
            api(mallory_client, url, {"device": mallory_device, "device_ids": [alice_device]}).status_code
            == 404
        )
    # Bob is in the room, but the device is Alice's.
    assert (
        api(bob_client, reverse("e2ee:state", args=[encrypted.pk]) + f"?device={alice_device}").status_code
        == 404
    )
    upload = api(
        bob_client, reverse("e2ee:key_packages", args=[alice_device]), {"key_packages": [key_package()]}
    )
    assert upload.status_code == 404
    # Mallory's device is not a member's: claiming it from the room gets nothing.
    claimed = api(
        alice_client,
        reverse("e2ee:claim", args=[encrypted.pk]),
        {"device": alice_device, "device_ids": [mallory_device]},
    )
    assert claimed.json()["key_packages"] == []
    # A plain room has no encryption endpoints.
    plain = alice_client.post(reverse("rooms:open_direct", args=["bob"]))["Location"]
    plain_id = int(plain.strip("/").split("/")[-1])
    assert (
        api(alice_client, reverse("e2ee:state", args=[plain_id]) + f"?device={alice_device}").status_code
        == 404
    )
    assert alice_client.get(reverse("e2ee:register_device")).status_code == 405


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        {"signature_key": "short", "key_packages": [key_package()]},
        {"signature_key": signature_key(), "key_packages": []},
        {"signature_key": signature_key(), "key_packages": [key_package()] * 11},
        {"signature_key": signature_key(), "key_packages": ["%%%"]},
        {"signature_key": signature_key(), "key_packages": [mls(2)]},
        {"signature_key": signature_key(), "key_packages": [mls(5, 5000)]},
        {"signature_key": signature_key(), "key_packages": [42]},
    ],
)
def test_bad_device_registrations_get_a_400_with_the_reason(alice_client, body):
    response = api(alice_client, reverse("e2ee:register_device"), body)
    assert response.status_code == 400
    assert response.json()["error"]
    assert not Device.objects.exists()


def test_bad_commits_and_claims_get_a_400(alice_client, encrypted):
    device = register(alice_client)["device_id"]
    api(alice_client, reverse("e2ee:group", args=[encrypted.pk]), {"device": device})
    commit_url = reverse("e2ee:commit", args=[encrypted.pk])
    for body in [
        {"device": device, "epoch": "0", "commit": mls(2)},
        {"device": device, "epoch": -1, "commit": mls(2)},
        {"device": device, "epoch": 0, "commit": mls(3)},
        {"device": device, "epoch": 0, "commit": mls(2), "welcome": mls(3), "key_package_ids": [999]},
        {"device": device, "epoch": 0, "commit": mls(2), "welcome": mls(3), "key_package_ids": "1"},
    ]:
        response = api(alice_client, commit_url, body)
        assert response.status_code == 400, body
    claim = api(
        alice_client, reverse("e2ee:claim", args=[encrypted.pk]), {"device": device, "device_ids": ["nope"]}
    )
    assert claim.status_code == 400
    since = api(alice_client, reverse("e2ee:state", args=[encrypted.pk]) + f"?device={device}&since=x")
    assert since.status_code == 400
    assert api(alice_client, reverse("e2ee:state", args=[encrypted.pk]) + "?device=x").status_code == 404


def test_key_uploads_are_rate_limited(alice_client, settings):
    settings.RATE_E2EE_KEYS_PER_HOUR = 3
    device = register(alice_client, packages=2)["device_id"]
    url = reverse("e2ee:key_packages", args=[device])
    assert api(alice_client, url, {"key_packages": [key_package()]}).status_code == 201
    limited = api(alice_client, url, {"key_packages": [key_package()]})
    assert limited.status_code == 429 and limited["Retry-After"]
    assert KeyPackage.objects.filter(device_id=device).count() == 3


def test_messages_endpoint_lists_ciphertext_in_order_for_members_only(alice_client, bob_client, encrypted):
    first, second = mls(2), mls(2)
    post(alice_client, encrypted, first)
    post(alice_client, encrypted, second)
    url = reverse("e2ee:messages", args=[encrypted.pk])
    listed = api(bob_client, url).json()
    assert [m["data"] for m in listed["messages"]] == [first, second] and listed["more"] is False
    after = api(bob_client, f"{url}?after={listed['messages'][0]['seq']}").json()
    assert [m["data"] for m in after["messages"]] == [second]
    assert api(bob_client, f"{url}?after=x").status_code == 400


def test_an_encrypted_group_has_at_most_e2ee_max_members(alice_client, alice, bob, carol, settings):
    settings.E2EE_MAX_MEMBERS = 2
    refused = alice_client.post(
        reverse("rooms:new_group"), {"title": "Secrets", "members": "bob carol", "encrypted": "on"}
    )
    assert refused.status_code == 422
    assert "An encrypted group has at most 2 members" in html.unescape(refused.content.decode())
    made = alice_client.post(
        reverse("rooms:new_group"), {"title": "Secrets", "members": "bob", "encrypted": "on"}
    )
    room = Room.objects.get(title="Secrets")
    assert made.status_code == 302 and room.encrypted and room.is_group
    added = alice_client.post(reverse("rooms:add_members", args=[room.pk]), {"members": "carol"})
    assert added.status_code == 422
    assert not room.memberships.filter(user=carol).exists()
    page = alice_client.get(room.get_absolute_url()).content.decode()
    assert 'id="e2ee"' in page and "private-panel" not in page  # no catch-up, no private asks
    assert post(alice_client, room, "plain words").status_code == 422


def test_private_answers_are_refused_in_an_encrypted_room(alice_client, encrypted, settings):
    settings.OPENAI_API_KEY = "sk-test"
    for name, data in [("ask_privately", {"question": "what?"}), ("catch_up", {"since": "0"})]:
        response = alice_client.post(
            reverse(f"assistant:{name}", args=[encrypted.pk]), data, HTTP_HX_REQUEST="true"
        )
        assert response.status_code == 422
        assert "the assistant can't be enabled here" in html.unescape(response.content.decode())
    assert not Message.objects.filter(room=encrypted).exclude(kind=Message.Kind.SYSTEM).exists()


def test_past_e2ee_max_devices_the_oldest_device_is_retired(bob_client, encrypted, bob, settings):
    settings.E2EE_MAX_DEVICES = 2
    first, second, third = (register(bob_client)["device_id"] for _ in range(3))
    assert set(Device.objects.filter(user=bob).values_list("pk", flat=True)) == {
        uuid.UUID(second),
        uuid.UUID(third),
    }
    assert not KeyPackage.objects.filter(device_id=first).exists()
    gone = api(bob_client, reverse("e2ee:state", args=[encrypted.pk]) + f"?device={first}")
    assert gone.status_code == 404 and gone.json()["device_gone"] is True
    # The room lists the devices left: members' browsers take the retired one out of the group.
    state = api(bob_client, reverse("e2ee:state", args=[encrypted.pk]) + f"?device={third}").json()
    assert {d["id"] for d in state["devices"]} == {second, third}


def test_a_person_removes_one_of_their_devices_and_the_rooms_are_told(
    alice_client, bob_client, encrypted, bob
):
    mine = register(bob_client)["device_id"]
    alices = register(alice_client)["device_id"]
    url = reverse("e2ee:remove_device", args=[alices])
    assert api(bob_client, url, {}).status_code == 404  # not Bob's
    assert api(bob_client, reverse("e2ee:remove_device", args=[mine]), {}).json() == {"removed": True}
    assert not Device.objects.filter(pk=mine).exists()
    assert Message.objects.filter(room=encrypted, event="e2ee_device_removed").get().system_text == (
        "Bob Builder removed a device"
    )


def test_the_composer_of_an_encrypted_room_never_sends_its_text_without_the_browsers_encryption(
    alice_client, encrypted
):
    """Without e2ee.js (no JavaScript, the module not loaded yet or failing), the composer's
    form must not carry what was typed: the textarea belongs to no form, the Reply and
    Cancel links do not send the draft along, and the composer never echoes a draft."""
    post(alice_client, encrypted, mls(2))
    page = alice_client.get(encrypted.get_absolute_url()).content.decode()
    textarea = re.search(r"<textarea[^>]*>", page).group(0)
    owner = re.search(r'\bform="([^"]+)"', textarea)
    assert owner, textarea
    assert f'id="{owner.group(1)}"' not in page  # so it is submitted with no form at all
    assert 'hx-include="#id_body"' not in page
    composer = alice_client.get(reverse("rooms:composer", args=[encrypted.pk]), {"body": "my secret plan"})
    assert composer.status_code == 200 and "my secret plan" not in composer.content.decode()


def test_a_plain_rooms_composer_keeps_its_draft_and_its_form(alice_client, alice, bob):
    room_url = alice_client.post(reverse("rooms:open_direct", args=["bob"]))["Location"]
    page = alice_client.get(room_url).content.decode()
    assert 'form="' not in re.search(r"<textarea[^>]*>", page).group(0)
    room_id = int(room_url.strip("/").split("/")[-1])
    composer = alice_client.get(reverse("rooms:composer", args=[room_id]), {"body": "my draft"})
    assert "my draft" in composer.content.decode()


def test_the_state_says_how_many_of_the_devices_key_packages_are_left_after_others_claimed_them(
    alice_client, bob_client, encrypted
):
    """A device's browser keeps the private half of every key package it uploaded, claimed or
    not: only the server knows how many are still to be handed out, so it says, and the
    browser tops up from that (static/js/e2ee.js). Otherwise claims that never became a
    Welcome (a lost commit race, or someone claiming on purpose) leave the device with none
    for good, and nobody can add it to a conversation again."""
    bob_device = register(bob_client, packages=3)["device_id"]
    alice_device = register(alice_client)["device_id"]
    state_url = reverse("e2ee:state", args=[encrypted.pk]) + f"?device={bob_device}"
    assert api(bob_client, state_url).json()["key_packages_left"] == 3
    claim_url = reverse("e2ee:claim", args=[encrypted.pk])
    for _ in range(3):
        api(alice_client, claim_url, {"device": alice_device, "device_ids": [bob_device]})
    assert api(bob_client, state_url).json()["key_packages_left"] == 0
