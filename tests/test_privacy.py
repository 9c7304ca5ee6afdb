"""Download my data and Delete my account: what a person can take, and what goes."""

import datetime as dt
import io
import json
import os
import warnings
import zipfile

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import services as accounts
from accounts.models import RetiredUsername, User
from assistant.models import Memory
from assistant.private import do_open_private_room
from jobs import runner
from jobs.models import Job
from notifications.models import PushSubscription
from privacy import services
from privacy.export import export_path
from privacy.models import DataExport
from rooms import services as rooms
from rooms.attachments import make_attachment, read_upload
from rooms.live_groups import user_group
from rooms.models import Invite, Membership, Message, ModerationAction, Room
from tests.conftest import PASSWORD, client_for, image_bytes, membership

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _exports_root(settings, tmp_path):
    settings.EXPORTS_ROOT = tmp_path / "exports"


def picture(colour=(200, 30, 30)) -> SimpleUploadedFile:
    return SimpleUploadedFile("p.png", image_bytes(colour=colour), content_type="image/png")


def build_export(user) -> DataExport:
    export = services.do_request_export(user)
    runner.run_pending()
    export.refresh_from_db()
    return export


def contents(export: DataExport) -> zipfile.ZipFile:
    return zipfile.ZipFile(export_path(export))


# Download my data


def test_the_export_holds_what_the_person_owns_and_nothing_of_others(alice, bob, group, settings):
    accounts.do_set_avatar(alice, picture())
    mine = rooms.do_post_message(membership(group, alice), "Where do we go? **Lisbon**").message
    rooms.do_post_message(membership(group, bob), "Bob's secret plans")
    with_image = rooms.do_post_message(
        membership(group, alice), "", image=make_attachment(picture((0, 90, 0)))
    )
    deleted = rooms.do_post_message(membership(group, alice), "oops").message
    rooms.do_delete_message(alice, deleted)
    private = do_open_private_room(alice)
    rooms.do_post_assistant_message(private.pk, persona="Assistant", body="Private answer")
    Memory.objects.create(user=alice, text="Likes trains")
    accounts.do_block(alice, bob)
    PushSubscription.objects.create(
        user=alice,
        endpoint="https://fcm.googleapis.com/fcm/send/x",
        p256dh="k",
        auth="a",
        user_agent="Firefox/140.0 (X11; Linux)",
    )

    export = build_export(alice)
    assert (export.status, export.progress) == (DataExport.Status.READY, 100)
    assert export.expires_at - export.finished_at == dt.timedelta(days=7)
    path = export_path(export)
    assert path.is_relative_to(settings.EXPORTS_ROOT)
    assert path.stat().st_mode & 0o077 == 0
    archive = contents(export)
    names = set(archive.namelist())
    expected = {"README.md", "profile.json", "avatar.webp", "rooms.json", "messages.json", "messages.md",
                "my-assistant.json", "my-assistant.md", "memories.json"}  # fmt: skip
    assert expected | {f"images/{with_image.message.pk}.webp"} <= names
    assert archive.read("avatar.webp") == alice.avatar_large.open("rb").read()
    profile = json.loads(archive.read("profile.json"))
    assert profile["username"] == "alice"
    assert profile["blocked"] == ["bob"]
    assert profile["read_receipts"] is True
    assert profile["push_show_text"] is True and profile["email_missed"] is False
    assert [device["browser"] for device in profile["push_devices"]] == ["Firefox on Linux"]
    assert "fcm.googleapis.com" not in archive.read("profile.json").decode()
    written = json.loads(archive.read("messages.json"))
    assert [m["text"] for m in written] == ["Where do we go? **Lisbon**", ""]
    assert written[0]["room"] == "Trip planning" and written[0]["number"] == mine.seq
    everything = b"".join(archive.read(name) for name in names)
    assert b"Bob's secret plans" not in everything
    assert b"oops" not in everything
    assert "Private answer" in archive.read("my-assistant.md").decode()
    assert json.loads(archive.read("memories.json"))[0]["text"] == "Likes trains"
    assert [room["name"] for room in json.loads(archive.read("rooms.json"))] == ["Trip planning"]
    readme = archive.read("README.md").decode()
    assert "Not included: messages other people wrote" in readme


def test_the_owner_downloads_it_and_nobody_else(alice, bob, alice_client, bob_client):
    export = build_export(alice)
    url = reverse("privacy:download_export", args=[export.pk])
    response = alice_client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"]
    assert zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).testzip() is None
    assert bob_client.get(url).status_code == 404
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


@pytest.mark.parametrize("export_id", ["0", "99999999999999999999", "-1", "abc", "1.5"])
def test_bad_export_ids_are_not_found(alice_client, export_id):
    assert alice_client.get(f"/settings/account/export/{export_id}/download/").status_code == 404


def test_an_export_not_ready_or_expired_is_not_found(alice, alice_client):
    pending = services.do_request_export(alice)
    url = reverse("privacy:download_export", args=[pending.pk])
    assert alice_client.get(url).status_code == 404
    runner.run_pending()
    DataExport.objects.filter(pk=pending.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert alice_client.get(url).status_code == 404


def test_the_page_asks_and_shows_progress_then_the_link(alice, alice_client):
    page = alice_client.get(reverse("privacy:account"))
    assert page.status_code == 200
    assert b"Ask for my data" in page.content
    asked = alice_client.post(reverse("privacy:request_export"), HTTP_HX_REQUEST="true")
    assert asked.status_code == 200
    assert b'hx-trigger="every 2s"' in asked.content
    assert b"<progress" in asked.content
    runner.run_pending()
    status = alice_client.get(reverse("privacy:export_status"), HTTP_HX_REQUEST="true")
    assert b"every 2s" not in status.content
    assert b"Download ZIP" in status.content


def test_asking_twice_while_one_is_built_makes_one(alice):
    assert services.do_request_export(alice) == services.do_request_export(alice)
    assert Job.objects.count() == 1


def test_a_few_exports_a_day(alice, alice_client):
    for _ in range(services.EXPORTS_PER_DAY):
        build_export(alice)
    response = alice_client.post(reverse("privacy:request_export"), follow=True)
    assert "try again tomorrow" in response.content.decode()
    in_place = alice_client.post(reverse("privacy:request_export"), HTTP_HX_REQUEST="true")
    assert "try again tomorrow" in in_place.content.decode()
    assert DataExport.objects.count() == services.EXPORTS_PER_DAY


def test_the_views_refuse_other_methods(alice_client):
    assert alice_client.get(reverse("privacy:request_export")).status_code == 405
    assert alice_client.post(reverse("privacy:account")).status_code == 405
    assert alice_client.post(reverse("privacy:export_status")).status_code == 405


def test_an_export_is_deleted_when_it_expires(alice):
    export = build_export(alice)
    path = export_path(export)
    assert path.exists()
    assert runner.run_pending() == 0  # the expiry waits its seven days
    Job.objects.filter(kind=services.EXPIRE_JOB).update(run_after=timezone.now() - dt.timedelta(seconds=1))
    assert runner.run_pending() == 1
    assert not path.exists()
    assert not DataExport.objects.exists()


def test_an_export_that_keeps_failing_says_so(alice, monkeypatch):
    def broken(export, context):
        raise OSError("disk full")

    monkeypatch.setattr("privacy.export.build", broken)
    export = services.do_request_export(alice)
    for _ in range(3):
        Job.objects.update(run_after=timezone.now() - dt.timedelta(seconds=1))
        runner.run_pending()
    export.refresh_from_db()
    assert export.status == DataExport.Status.FAILED


def test_an_export_never_leaves_its_directory(alice, settings):
    export = services.do_request_export(alice)
    export.token = "../../escaped"
    with pytest.raises(ValueError):
        export_path(export)


# Delete my account


def delete(client, password=PASSWORD, confirmation="delete my account", **extra):
    data = {"password": password, "confirmation": confirmation, **extra}
    return client.post(reverse("privacy:delete_account"), data)


def test_a_wrong_password_or_confirmation_deletes_nothing(alice, alice_client):
    wrong = delete(alice_client, password="not it")
    assert wrong.status_code == 422
    assert "That is not your password." in wrong.content.decode()
    unconfirmed = delete(alice_client, confirmation="delete my acount")
    assert unconfirmed.status_code == 422
    long = delete(alice_client, confirmation="x" * 10_000)
    assert long.status_code == 422
    assert User.objects.filter(pk=alice.pk).exists()
    assert alice_client.get(reverse("privacy:delete_account")).status_code == 302


def test_guessing_the_password_is_limited(settings, alice, alice_client):
    codes = [delete(alice_client, password=f"guess {n}").status_code for n in range(12)]
    assert codes[-1] == 429
    assert User.objects.filter(pk=alice.pk).exists()


def test_deleting_an_account(alice, bob, carol, alice_client, events, settings):
    accounts.do_set_avatar(alice, picture())
    avatar = settings.MEDIA_ROOT / alice.avatar_large.name
    group = rooms.do_create_group(alice, "Alice's group", [bob, carol])
    kept = rooms.do_post_message(membership(group, alice), "I was here").message
    direct = rooms.do_open_direct_room(bob, alice)
    rooms.do_accept_request(membership(direct, alice))
    in_direct = rooms.do_post_message(membership(direct, alice), "hi bob").message
    rooms.do_post_message(membership(direct, bob), "hi alice")
    private = do_open_private_room(alice)
    Memory.objects.create(user=alice, text="secret")
    invite = Invite.objects.create(room=group, created_by=alice)
    export = build_export(alice)
    alice_id = alice.pk
    other_session = client_for(alice)

    with events() as sent:
        response = delete(alice_client)
    assert response.status_code == 302 and response["Location"] == reverse("landing")
    assert not User.objects.filter(pk=alice_id).exists()
    # Signed out everywhere, sockets closed.
    assert not any(s.get_decoded().get(SESSION_KEY) == str(alice_id) for s in Session.objects.all())
    assert other_session.get(reverse("rooms:index")).status_code == 302
    assert [e["type"] for e in sent.to(user_group(alice_id))][-1] == "session.ended"
    # The group goes on, with its longest-standing member as owner.
    group.refresh_from_db()
    assert group.owner == bob
    assert Message.objects.filter(
        room=group, kind=Message.Kind.SYSTEM, body__contains="is now the owner"
    ).exists()
    # Messages stay, from "Deleted account", and open pages are told.
    kept.refresh_from_db()
    assert kept.author is None and kept.body == "I was here" and kept.deleted_at is None
    changed = [e for _, e in sent.of_type("room.message_changed") if e["message_id"] == kept.pk]
    assert changed and "Deleted account" in changed[0]["html"]
    # Bob's direct room is still his, and reads well.
    assert Message.objects.get(pk=in_direct.pk).author is None
    page = client_for(bob).get(direct.get_absolute_url())
    assert page.status_code == 200 and "Deleted account" in page.content.decode()
    # What was only hers is gone.
    assert not Room.objects.filter(pk=private.pk).exists()
    assert not Memory.objects.exists()
    assert not Invite.objects.filter(pk=invite.pk).exists()
    assert not DataExport.objects.filter(pk=export.pk).exists()
    assert not export_path(export).exists()
    assert not avatar.exists()
    # Her username waits 30 days.
    assert RetiredUsername.objects.get(username="alice").available_after > timezone.now() + dt.timedelta(
        days=29
    )


def test_deleting_an_account_with_its_messages(alice, bob, group, alice_client, settings, events):
    text = rooms.do_post_message(membership(group, alice), "delete me").message
    image = rooms.do_post_message(membership(group, alice), "", image=make_attachment(picture())).message
    file = settings.MEDIA_ROOT / image.image.name
    bobs = rooms.do_post_message(membership(group, bob), "bob stays").message
    with events() as sent:
        delete(alice_client, delete_messages="on")
    assert {e["message_id"] for _, e in sent.of_type("room.message_changed")} >= {text.pk, image.pk}
    for message in (text, image):
        message.refresh_from_db()
        assert message.is_deleted and message.body == "" and not message.image
        assert message.preview == "message deleted"
    assert not file.exists()
    bobs.refresh_from_db()
    assert bobs.body == "bob stays" and not bobs.is_deleted


def test_deleting_an_account_with_its_messages_deletes_their_files(
    alice, bob, group, alice_client, settings, django_capture_on_commit_callbacks
):
    """A file, not only a picture: gone from storage, and its name from the row."""
    upload = SimpleUploadedFile("my-results.pdf", b"%PDF-1.4 private", content_type="application/pdf")
    message = rooms.do_post_message(membership(group, alice), "", file=read_upload(upload)).message
    stored = settings.MEDIA_ROOT / message.file.name
    assert stored.exists()
    with django_capture_on_commit_callbacks(execute=True):
        delete(alice_client, delete_messages="on")
    message.refresh_from_db()
    assert message.is_deleted and not message.file and message.file_name == "" and message.file_size is None
    assert not stored.exists()


def test_files_in_rooms_that_go_with_the_account_are_deleted(
    alice, bob, alice_client, settings, django_capture_on_commit_callbacks
):
    """An unanswered request's files (and the private room's) leave storage with the room."""
    room = rooms.do_open_direct_room(alice, bob)
    upload = SimpleUploadedFile("notes.txt", b"hello stranger", content_type="text/plain")
    message = rooms.do_post_message(membership(room, alice), "", file=read_upload(upload)).message
    stored = settings.MEDIA_ROOT / message.file.name
    with django_capture_on_commit_callbacks(execute=True):
        delete(alice_client)
    assert not Room.objects.filter(pk=room.pk).exists()
    assert not stored.exists()


def test_a_message_request_nobody_answered_goes_with_the_account(alice, bob, alice_client):
    room = rooms.do_open_direct_room(alice, bob)
    rooms.do_post_message(membership(room, alice), "hello stranger")
    assert Membership.objects.get(room=room, user=bob).request == Membership.Request.PENDING
    delete(alice_client)
    assert not Room.objects.filter(pk=room.pk).exists()


def test_the_username_is_not_reusable_for_30_days(alice, alice_client):
    delete(alice_client)
    data = {"username": "Alice", "password1": "a very long password 1", "password2": "a very long password 1"}
    refused = Client().post(reverse("account_signup"), data)
    assert "That username is taken." in refused.content.decode()
    assert not User.objects.filter(username__iexact="alice").exists()
    RetiredUsername.objects.update(available_after=timezone.now() - dt.timedelta(seconds=1))
    Client().post(reverse("account_signup"), data)
    assert User.objects.filter(username="Alice").exists()


def test_an_admin_deletes_an_account_with_an_audit_entry(alice, bob, group):
    admin = User.objects.create_superuser("root", password=PASSWORD)
    client = client_for(admin)
    changelist = reverse("admin:accounts_user_changelist")
    asked = client.post(changelist, {"action": "delete_account", "_selected_action": [bob.pk]})
    assert asked.status_code == 200 and b"Why" in asked.content
    client.post(
        changelist,
        {
            "action": "delete_account",
            "_selected_action": [bob.pk],
            "confirm": "yes",
            "reason": "spam account",
        },
    )
    assert not User.objects.filter(pk=bob.pk).exists()
    entry = ModerationAction.objects.get(action="delete account")
    assert entry.moderator == admin
    assert "@bob" in entry.reason and "spam account" in entry.reason
    # Django's own delete, which would skip all of the above, is not offered.
    assert client.get(reverse("admin:accounts_user_delete", args=[alice.pk])).status_code == 403


def test_only_moderators_delete_other_accounts(alice, bob):
    with pytest.raises(PermissionDenied):
        services.do_delete_account(bob, moderator=alice)
    assert User.objects.filter(pk=bob.pk).exists()


def test_the_settings_page_needs_a_sign_in():
    for name in ("privacy:account", "privacy:export_status"):
        response = Client().get(reverse(name))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert Client().post(reverse("privacy:delete_account"), {"password": "x"}).status_code == 302


def test_the_export_holds_the_files_the_person_attached(alice, group):
    from rooms.attachments import file_attachment

    upload = SimpleUploadedFile("../Trip plan.pdf", b"%PDF-1.4 plans", content_type="application/pdf")
    sent = rooms.do_post_message(membership(group, alice), "the plan", file=file_attachment(upload)).message
    archive = contents(build_export(alice))
    name = f"files/{sent.pk}-Trip plan.pdf"
    assert archive.read(name) == b"%PDF-1.4 plans"
    written = json.loads(archive.read("messages.json"))
    assert written[0]["file"] == name
    assert "`files/`" in archive.read("README.md").decode()
    assert f"[Trip plan.pdf]({name})" in archive.read("messages.md").decode()


def test_two_builds_of_one_export_do_not_share_a_partial_file(alice, monkeypatch):
    """Two processes running the same export (a job taken again after a stale heartbeat)
    each write their own temporary file in the directory; neither reads the other's."""
    import tempfile

    from privacy import export as building

    made = []
    real = tempfile.mkstemp

    def recording(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(building.tempfile, "mkstemp", recording)
    export = build_export(alice)
    assert len(made) == 1
    partial = made[0][1]
    assert partial != str(export_path(export).with_suffix(".partial"))
    assert os.path.dirname(partial) == str(export_path(export).parent)
    assert not os.path.exists(partial)


def test_under_asgi_the_export_streams_in_chunks(alice):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    export = build_export(alice)
    with export_path(export).open("ab") as grown:
        grown.write(b"\0" * (3 * 1024 * 1024))  # bigger than one chunk
    size = export_path(export).stat().st_size
    client = AsyncClient()
    client.force_login(alice)

    async def download():
        response = await client.get(reverse("privacy:download_export", args=[export.pk]))
        return response, [chunk async for chunk in response.streaming_content]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        response, chunks = async_to_sync(download)()
    assert response.status_code == 200 and response.is_async
    assert len(chunks) > 1 and sum(len(chunk) for chunk in chunks) == size
    assert response["Content-Length"] == str(size)
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="calpico-alice-')
    assert response["Cache-Control"] == "private, no-store"


def test_only_staff_allowed_to_delete_users_may_delete_accounts(alice, bob):
    from django.contrib.auth.models import Permission

    staff = User.objects.create_user("helper", password=PASSWORD, is_staff=True)
    accounts_perms = Permission.objects.filter(content_type__app_label="accounts")
    staff.user_permissions.add(*accounts_perms.filter(codename__in=["view_user", "change_user"]))
    client = client_for(staff)
    changelist = reverse("admin:accounts_user_changelist")
    page = client.get(changelist)
    assert page.status_code == 200
    assert b"delete_account" not in page.content
    for action in ("delete_account", "delete_account_and_messages"):
        client.post(
            changelist,
            {"action": action, "_selected_action": [bob.pk], "confirm": "yes", "reason": "no"},
        )
    assert User.objects.filter(pk=bob.pk).exists()
    staff.user_permissions.add(accounts_perms.get(codename="delete_user"))
    staff = User.objects.get(pk=staff.pk)
    assert b"delete_account" in client_for(staff).get(changelist).content


def test_a_held_username_fits_every_username():
    assert (
        RetiredUsername._meta.get_field("username").max_length == User._meta.get_field("username").max_length
    )
