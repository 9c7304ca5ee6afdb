"""Notifications when Calpico is closed: the installable app, this device's subscription,
pushes sent through durable jobs to a push service (tests/fake_push.py checks VAPID and
decrypts each payload), retries and expiry, and never twice."""

import datetime as dt
import json
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs import runner
from jobs.models import Job
from notifications import jobs as push_jobs
from notifications.models import PushSubscription
from rooms import services
from tests.conftest import PASSWORD, client_for, make_user, membership, post
from tests.fake_push import FakePushService

pytestmark = pytest.mark.django_db

CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36"
)


@pytest.fixture
def push_service(settings):
    with FakePushService() as service:
        settings.PUSH_SERVICE_HOSTS = [*settings.PUSH_SERVICE_HOSTS, "127.0.0.1"]
        yield service


def subscribe(client, subscription, user_agent=CHROME_UA):
    return client.post(
        reverse("notifications:subscribe"),
        json.dumps(subscription),
        content_type="application/json",
        HTTP_USER_AGENT=user_agent,
    )


@pytest.fixture
def bob_device(push_service, bob_client):
    """Bob's browser, subscribed."""
    subscription = push_service.subscription()
    assert subscribe(bob_client, subscription).status_code == 200
    return subscription


def make_due(kind=push_jobs.PUSH):
    Job.objects.filter(kind=kind, status=Job.Status.QUEUED).update(run_after=timezone.now())


# The installable app


def test_the_manifest_describes_an_installable_app(client):
    """Anyone (the browser fetches it without cookies) gets the manifest, with its icons."""
    response = client.get("/manifest.webmanifest")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/manifest+json"
    manifest = response.json()
    assert manifest["display"] == "standalone"
    assert manifest["start_url"] == "/rooms/" and manifest["scope"] == "/"
    assert {"192x192", "512x512"} <= {icon["sizes"] for icon in manifest["icons"]}
    assert any(icon["purpose"] == "maskable" for icon in manifest["icons"])
    for icon in manifest["icons"]:
        assert client.get(icon["src"]).status_code == 200


def test_the_service_worker_is_served_from_the_root_uncached(client):
    response = client.get("/sw.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Cache-Control"] == "no-cache"
    body = response.content.decode()
    assert 'addEventListener("push"' in body and 'addEventListener("notificationclick"' in body
    assert 'const OFFLINE_URL = "/offline/"' in body


def test_the_offline_page_needs_no_sign_in(client):
    response = client.get("/offline/")
    assert response.status_code == 200
    assert "You're offline" in response.content.decode()


def test_every_page_links_the_manifest(alice_client):
    page = alice_client.get(reverse("rooms:index")).content.decode()
    assert '<link rel="manifest" href="/manifest.webmanifest">' in page


# This device


def test_a_device_subscribes_and_is_listed_with_its_browser(push_service, bob_client, bob):
    """The settings list the device ("Chrome on Linux"), which can be removed."""
    subscription = push_service.subscription()
    response = subscribe(bob_client, subscription)
    assert response.status_code == 200
    assert response.json()["browser"] == "Chrome on Linux"
    page = bob_client.get(reverse("rooms:notifications")).content.decode()
    assert "Notify this device when Calpico is closed" in page
    assert "Chrome on Linux" in page
    device = PushSubscription.objects.get(user=bob)
    assert f'data-endpoint="{subscription["endpoint"]}"' in page
    response = bob_client.post(reverse("notifications:remove_device", args=[device.pk]))
    assert response.status_code == 302
    assert not PushSubscription.objects.exists()


def test_a_device_turned_off_is_forgotten(push_service, bob_client, bob_device):
    response = bob_client.post(
        reverse("notifications:unsubscribe_device"),
        json.dumps({"endpoint": bob_device["endpoint"]}),
        content_type="application/json",
    )
    assert response.json() == {"removed": True}
    assert not PushSubscription.objects.exists()


def test_subscribing_again_takes_the_device_over(push_service, alice_client, bob_client, alice, bob_device):
    """One browser, one row: whoever subscribes with it last gets its notifications."""
    assert subscribe(alice_client, bob_device).status_code == 200
    assert PushSubscription.objects.get().user == alice


def test_a_page_confirming_a_device_never_takes_it_over(push_service, alice_client, bob, bob_device):
    # The endpoint alone proves nothing (it is not a secret of the browser's): Bob keeps it.
    data = {"endpoint": bob_device["endpoint"], "confirm": True}
    response = alice_client.post(
        reverse("notifications:subscribe"), json.dumps(data), content_type="application/json"
    )
    # A routine answer, not an error: every page of a browser whose device is not listed
    # (signed out and in again, removed from another device) asks, and a 404 would be an
    # error in its console each time.
    assert response.status_code == 200
    assert response.json() == {"confirmed": False}
    assert PushSubscription.objects.get().user == bob
    # Its pages stop asking at every load (they ask again in an hour).
    assert 'data-push-session="known"' in alice_client.get(reverse("rooms:index")).content.decode()
    alice_client.post(reverse("account_logout"))
    assert PushSubscription.objects.get().user == bob


def test_signing_in_as_someone_else_on_a_subscribed_browser_stops_the_last_persons_pushes(
    push_service, alice, bob, client, direct, bob_device
):
    """Bob's session expired (or his cookies were cleared) without signing out; Alice signs in
    on his browser. Her first page confirms the browser's subscription, keys and all: Bob's
    messages stop reaching that browser, and it is not made Alice's either (she never asked)."""
    client.force_login(alice)
    page = client.get(reverse("rooms:index")).content.decode()
    assert 'data-push-session="new"' in page
    response = client.post(
        reverse("notifications:subscribe"),
        json.dumps({**bob_device, "confirm": True}),
        content_type="application/json",
    )
    assert response.json() == {"confirmed": False}
    assert not PushSubscription.objects.exists()
    services.do_post_message(membership(direct, alice), "For Bob only")
    runner.run_pending()
    assert push_service.requests == 0


def test_one_endpoint_is_never_notified_for_two_people(
    push_service, alice, bob, carol, group, alice_client, bob_device
):
    """Alice subscribes with the browser Bob subscribed: one row, Alice's. A message for
    both reaches that browser once, for her, and says so (the worker checks it)."""
    assert subscribe(alice_client, bob_device).status_code == 200
    services.do_post_message(membership(group, carol), "Hello both")
    runner.run_pending()
    [delivery] = push_service.wait_for(1)
    assert delivery.endpoint == bob_device["endpoint"]
    assert delivery.payload["to"] == alice.pk
    assert push_service.requests == 1


@pytest.mark.parametrize(
    "change, error",
    [
        ({"endpoint": "https://evil.example/push/1"}, "not one this server sends to"),
        ({"endpoint": "http://fcm.googleapis.com/fcm/send/1"}, "not one this server sends to"),
        ({"endpoint": 12}, "not one this server sends to"),
        # PostgreSQL stores no NUL character; a push service's address has none anyway.
        ({"endpoint": "https://fcm.googleapis.com/fcm/send/a\x00b"}, "not one this server sends to"),
        (
            {"keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}},
            "keys for notifications are not valid",
        ),
        ({"keys": {"p256dh": "B" + "A" * 86, "auth": "AAAA"}}, "keys for notifications are not valid"),
        ({"keys": "nope"}, "keys for notifications are not valid"),
    ],
)
def test_bad_subscriptions_get_a_clear_error(push_service, bob_client, change, error):
    subscription = {
        **push_service.subscription(),
        "endpoint": "https://fcm.googleapis.com/fcm/send/abc",
        **change,
    }
    response = subscribe(bob_client, subscription)
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert not PushSubscription.objects.exists()


def test_a_body_that_is_not_json_gets_a_clear_error(bob_client):
    response = bob_client.post(
        reverse("notifications:subscribe"), "not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert "JSON object" in response.json()["error"]


def test_signed_out_browsers_cannot_subscribe(client, push_service):
    response = subscribe(client, push_service.subscription())
    assert response.status_code == 302
    assert not PushSubscription.objects.exists()


# Sending


def test_a_direct_message_reaches_the_device_encrypted_after_commit(
    push_service, alice_client, bob, bob_device, direct, django_capture_on_commit_callbacks
):
    """Nothing is sent on the post path; the job sends it, signed and encrypted."""
    with django_capture_on_commit_callbacks(execute=True):
        assert post(alice_client, direct, "Lunch at noon?").status_code in (200, 204, 302)
    assert push_service.requests == 0
    runner.run_pending()
    [delivery] = push_service.wait_for(1)
    message = direct.messages.get(body="Lunch at noon?")
    assert delivery.payload == {
        "to": bob.pk,
        "title": "Alice Liddell",
        "body": "Lunch at noon?",
        "tag": f"calpico-room-{direct.pk}",
        "url": f"/r/{direct.pk}/m/{message.seq}/",
        "reason": "direct",
    }
    assert delivery.claims["aud"] == push_service.origin
    assert delivery.headers["topic"] == f"room-{direct.pk}"
    assert int(delivery.headers["ttl"]) > 0
    assert Job.objects.filter(status=Job.Status.DONE, kind=push_jobs.PUSH).count() == 1


def test_without_text_a_notification_says_only_who_wrote_where(push_service, alice, bob, group, bob_device):
    bob.push_show_text = False
    bob.save()
    services.do_post_message(membership(group, alice), "The secret plan")
    runner.run_pending()
    [delivery] = push_service.wait_for(1)
    assert delivery.payload["title"] == "Trip planning"
    assert delivery.payload["body"] == "New message from Alice Liddell in Trip planning"
    assert b"secret" not in delivery.plaintext


def test_a_burst_is_one_notification_with_a_count(push_service, alice, direct, bob_device):
    """Pushes still queued for a room are replaced by the newest, which counts them."""
    for text in ("one", "two", "three"):
        services.do_post_message(membership(direct, alice), text)
    runner.run_pending()
    [delivery] = push_service.wait_for(1)
    assert delivery.payload["body"] == "3 new messages\nthree"


def test_a_busy_push_service_is_tried_again_later(push_service, alice, direct, bob_device):
    push_service.queue(500, 429)
    services.do_post_message(membership(direct, alice), "Are you there?")
    runner.run_pending()
    job = Job.objects.get(kind=push_jobs.PUSH)
    assert job.status == Job.Status.QUEUED and job.attempts == 1
    assert job.run_after > timezone.now() + dt.timedelta(seconds=5)  # backing off
    assert "500" in job.error
    make_due()
    runner.run_pending()
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.attempts == 2 and "429" in job.error
    make_due()
    runner.run_pending()
    [delivery] = push_service.wait_for(1)
    assert delivery.payload["body"] == "Are you there?"
    job.refresh_from_db()
    assert job.status == Job.Status.DONE


def test_a_push_service_that_never_answers_times_out_and_is_retried(
    push_service, settings, alice, direct, bob_device
):
    settings.PUSH_TIMEOUT_SECONDS = 0.2
    push_service.delay = 2.0
    services.do_post_message(membership(direct, alice), "Hello?")
    runner.run_pending()
    job = Job.objects.get(kind=push_jobs.PUSH)
    assert job.status == Job.Status.QUEUED and "Timeout" in job.error


def test_pushes_give_up_after_their_last_attempt(push_service, settings, alice, direct, bob_device):
    settings.PUSH_MAX_ATTEMPTS = 2
    push_service.queue(503, 503)
    services.do_post_message(membership(direct, alice), "Hi")
    runner.run_pending()
    make_due()
    runner.run_pending()
    job = Job.objects.get(kind=push_jobs.PUSH)
    assert job.status == Job.Status.FAILED
    assert PushSubscription.objects.exists()  # busy is not gone


@pytest.mark.parametrize("status", [404, 410])
def test_a_subscription_the_service_forgot_is_deleted(push_service, alice, direct, bob_device, status):
    if status == 410:
        push_service.gone(bob_device["endpoint"])
    else:
        push_service.queue(404)
    services.do_post_message(membership(direct, alice), "Hi")
    runner.run_pending()
    assert not PushSubscription.objects.exists()
    assert Job.objects.get(kind=push_jobs.PUSH).status == Job.Status.DONE


def test_every_device_of_a_person_is_notified(push_service, alice, bob_client, direct, bob_device):
    second = push_service.subscription()
    subscribe(bob_client, second, user_agent="Mozilla/5.0 (Android 14) Firefox/140.0")
    services.do_post_message(membership(direct, alice), "Both?")
    runner.run_pending()
    deliveries = push_service.wait_for(2)
    assert {d.endpoint for d in deliveries} == {bob_device["endpoint"], second["endpoint"]}


def test_a_job_taken_over_records_nothing(push_service, alice, direct, bob_device):
    """A fan-out job that another process took over meanwhile records no pushes: it and
    its pushes commit together, only by whoever holds it."""
    services.do_post_message(membership(direct, alice), "Once")
    from jobs import queue

    job = queue.claim_next("first")
    Job.objects.filter(pk=job.pk).update(worker="second")  # recovered and claimed elsewhere
    runner.run_job(job, "first")
    assert not Job.objects.filter(kind=push_jobs.PUSH).exists()


def test_a_moderators_notice_is_pushed(push_service, bob, bob_device):
    from rooms.services.moderation import do_notify

    do_notify(bob.pk, "A moderator acted on a message you reported: removed.")
    runner.run_pending()
    [delivery] = push_service.wait_for(1)
    assert delivery.payload["title"] == "Calpico"
    assert delivery.payload["body"] == "A moderator acted on a message you reported: removed."


def test_being_added_to_a_group_is_pushed(push_service, alice, bob, carol, bob_device):
    room = services.do_create_group(alice, "Book club", [carol])
    Job.objects.all().delete()
    services.do_add_members(alice, room, [bob])
    runner.run_pending()
    [delivery] = push_service.wait_for(1)
    assert delivery.payload["title"] == "Book club"
    assert delivery.payload["body"] == "Alice Liddell added you to Book club"
    assert delivery.payload["reason"] == "added"


def test_french_readers_get_french_notifications(push_service, alice, bob, group, bob_device):
    bob.language = "fr"
    bob.push_show_text = False
    bob.save()
    services.do_post_message(membership(group, alice), "Salut")
    runner.run_pending()
    [delivery] = push_service.wait_for(1)
    # "de" is elided before a vowel (calpico.languages.format_names).
    assert delivery.payload["body"] == "Nouveau message d’Alice Liddell dans Trip planning"


def test_finished_notification_jobs_are_deleted_after_a_day(push_service, alice, direct, bob_device):
    services.do_post_message(membership(direct, alice), "Hi")
    runner.run_pending()
    assert Job.objects.filter(kind__startswith="notifications.", status=Job.Status.DONE).count() == 2
    assert push_jobs.purge_finished() == 0  # kept a day
    Job.objects.update(finished_at=timezone.now() - dt.timedelta(days=2))
    export = Job.objects.create(
        kind="privacy.export", status=Job.Status.DONE, finished_at=timezone.now() - dt.timedelta(days=2)
    )
    assert push_jobs.purge_finished() == 2
    assert list(Job.objects.all()) == [export]  # other apps' jobs are theirs to keep


# What a push says is decided again when it is sent: a retry can come long after the post.


def _post_then_busy(push_service, alice, room, text):
    push_service.queue(503)
    services.do_post_message(membership(room, alice), text)
    runner.run_pending()
    assert push_service.deliveries == [] and Job.objects.get(kind=push_jobs.PUSH).status == Job.Status.QUEUED
    return room.messages.get(body=text)


def _retry(push_service):
    make_due()
    runner.run_pending()
    assert Job.objects.get(kind=push_jobs.PUSH).status == Job.Status.DONE
    return push_service.deliveries


def test_a_message_deleted_before_its_push_went_is_not_pushed(push_service, alice, direct, bob_device):
    message = _post_then_busy(push_service, alice, direct, "Sent to the wrong person")
    services.do_delete_message(alice, message)
    assert _retry(push_service) == []


def test_a_message_edited_before_its_push_went_is_pushed_as_it_reads_now(
    push_service, alice, direct, bob_device
):
    message = _post_then_busy(push_service, alice, direct, "My PIN is 1234")
    services.do_edit_message(alice, message, "Call me")
    [delivery] = _retry(push_service)
    assert delivery.payload["body"] == "Call me"
    assert b"1234" not in delivery.plaintext


def test_someone_removed_before_the_push_went_is_not_pushed(push_service, alice, bob, group, bob_device):
    _post_then_busy(push_service, alice, group, "Plans without Bob")
    services.do_remove_member(alice, group, bob)
    assert _retry(push_service) == []


def test_a_person_blocked_before_the_push_went_is_not_heard(push_service, alice, bob, direct, bob_device):
    from accounts.models import Block

    _post_then_busy(push_service, alice, direct, "Answer me")
    Block.objects.create(blocker=bob, blocked=alice)
    assert _retry(push_service) == []


def test_a_message_read_before_the_push_went_is_not_pushed(push_service, alice, bob, direct, bob_device):
    message = _post_then_busy(push_service, alice, direct, "Seen already")
    services.do_mark_read(membership(direct, bob), message.seq)
    assert _retry(push_service) == []


def test_text_turned_off_before_the_push_went_is_not_shown(push_service, alice, bob, direct, bob_device):
    _post_then_busy(push_service, alice, direct, "The secret plan")
    bob.push_show_text = False
    bob.save()
    [delivery] = _retry(push_service)
    assert b"secret" not in delivery.plaintext


def test_a_device_taken_over_before_the_push_went_gets_nothing_of_the_last_owner(
    push_service, alice, carol_client, direct, bob_device
):
    """Carol signs in on Bob's browser and turns notifications on: Bob's queued push is not
    shown to her."""
    _post_then_busy(push_service, alice, direct, "For Bob only")
    assert subscribe(carol_client, bob_device).status_code == 200
    assert _retry(push_service) == []


def test_someone_taken_out_of_a_group_before_being_told_they_were_added_is_not_told(
    push_service, alice, bob, carol, bob_device
):
    room = services.do_create_group(alice, "Book club", [carol])
    Job.objects.all().delete()
    push_service.queue(503)
    services.do_add_members(alice, room, [bob])
    runner.run_pending()
    services.do_remove_member(alice, room, bob)
    assert _retry(push_service) == []


def test_a_push_queued_before_pushes_said_whom_they_are_for_says_it_when_sent(
    push_service, alice, bob, carol, bob_device
):
    """A push recorded before `to` was in payloads (a busy push service, a deploy) is sent
    with it: the worker drops it if someone other than Bob is signed in on his browser."""
    room = services.do_create_group(alice, "Book club", [carol])
    Job.objects.all().delete()
    push_service.queue(503)
    services.do_add_members(alice, room, [bob])
    runner.run_pending()
    job = Job.objects.get(kind=push_jobs.PUSH)
    del job.payload["notification"]["to"]
    job.save(update_fields=["payload"])
    [delivery] = _retry(push_service)
    assert delivery.payload["to"] == bob.pk
    assert delivery.payload["body"] == "Alice Liddell added you to Book club"


def test_a_push_service_redirecting_elsewhere_is_not_followed(push_service, bob_client, alice, direct):
    """The endpoint's host was checked; a redirect would make the server post to a host
    nobody checked (its own network, say)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    reached = []

    class Inside(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            reached.append(self.path)
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

    inside = ThreadingHTTPServer(("127.0.0.1", 0), Inside)

    class Redirecting(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{inside.server_address[1]}/admin")
            self.send_header("Content-Length", "0")
            self.end_headers()

    outside = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (inside, outside):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        device = {
            **push_service.subscription(),
            "endpoint": f"http://127.0.0.1:{outside.server_address[1]}/push/x",
        }
        assert subscribe(bob_client, device).status_code == 200
        services.do_post_message(membership(direct, alice), "Hi")
        runner.run_pending()
        assert reached == []
        assert Job.objects.get(kind=push_jobs.PUSH).status == Job.Status.DONE  # refused, not retried
    finally:
        for server in (inside, outside):
            server.shutdown()
            server.server_close()


def test_the_purge_keeps_up_with_rooms_where_everyone_has_a_device(monkeypatch):
    """A purge comes every PURGE_EVERY message jobs, and each message leaves a job per
    device notified: a 50-member room leaves 50 times more than a batch's share. Every
    purge clears all that ended over a day ago, a batch at a time, not just one batch."""
    monkeypatch.setattr(push_jobs, "PURGE_BATCH", 10)
    old = timezone.now() - dt.timedelta(days=2)
    Job.objects.bulk_create(
        [Job(kind=push_jobs.PUSH, status=Job.Status.DONE, finished_at=old, payload={}) for _ in range(35)]
    )
    assert push_jobs.purge_finished() == 35
    assert not Job.objects.exists()


# Signing out


def test_signing_out_stops_this_devices_notifications(push_service, alice, bob, bob_client, direct):
    """On a shared computer, whoever uses the browser next must not see Bob's messages pop up."""
    device = push_service.subscription()
    assert subscribe(bob_client, device).status_code == 200
    other = push_service.subscription()  # Bob's phone
    PushSubscription.objects.create(
        user=bob, endpoint=other["endpoint"], p256dh=other["keys"]["p256dh"], auth=other["keys"]["auth"]
    )
    assert bob_client.post(reverse("account_logout")).status_code == 302
    assert list(PushSubscription.objects.values_list("endpoint", flat=True)) == [other["endpoint"]]
    services.do_post_message(membership(direct, alice), "Still there?")
    runner.run_pending()
    assert [d.endpoint for d in push_service.wait_for(1)] == [other["endpoint"]]


def test_a_device_confirmed_in_a_new_session_is_forgotten_when_it_signs_out(
    push_service, bob, bob_client, client, bob_device
):
    """A browser signed in again (a new session) confirms its device: signing out of that
    session stops it too. The page asks for that confirmation while the session does not
    know the device."""
    client.force_login(bob)
    page = client.get(reverse("rooms:index")).content.decode()
    assert 'data-push-session="new"' in page
    confirm = {**bob_device, "confirm": True}
    response = client.post(
        reverse("notifications:subscribe"), json.dumps(confirm), content_type="application/json"
    )
    assert response.status_code == 200
    assert 'data-push-session="known"' in client.get(reverse("rooms:index")).content.decode()
    client.post(reverse("account_logout"))
    assert not PushSubscription.objects.exists()


def test_the_jobs_table_never_holds_a_messages_text(push_service, alice, direct, bob_device):
    """A deleted or edited message's text is gone from the messages table at once; the push
    jobs (kept a day) must not keep a copy: a message's push is written as it is sent."""
    message = _post_then_busy(push_service, alice, direct, "Delete me soon")
    assert "Delete me soon" not in json.dumps(list(Job.objects.values_list("payload", flat=True)))
    [delivery] = _retry(push_service)
    assert delivery.payload["body"] == "Delete me soon"
    services.do_delete_message(alice, message)
    assert "Delete me soon" not in json.dumps(list(Job.objects.values_list("payload", flat=True)))


def test_nobody_removes_or_forgets_another_persons_device(push_service, alice_client, bob, bob_device):
    device = PushSubscription.objects.get(user=bob)
    response = alice_client.post(reverse("notifications:remove_device", args=[device.pk]))
    assert response.status_code == 302
    response = alice_client.post(
        reverse("notifications:unsubscribe_device"),
        json.dumps({"endpoint": bob_device["endpoint"]}),
        content_type="application/json",
    )
    assert response.json() == {"removed": False}
    assert PushSubscription.objects.get() == device
    page = alice_client.get(reverse("rooms:notifications")).content.decode()
    assert bob_device["endpoint"] not in page


# The server's VAPID key


def test_the_vapid_key_is_written_once_readable_by_the_server_only(settings, tmp_path, monkeypatch):
    """Generated into var/ with no moment when another account on the host could read it
    (the file is created private, not made private afterwards)."""
    import os
    import stat
    from pathlib import Path

    from notifications import vapid

    settings.VAPID_PRIVATE_KEY = ""
    settings.VAPID_PRIVATE_KEY_FILE = tmp_path / "vapid_private_key.pem"
    monkeypatch.setattr(Path, "chmod", lambda self, mode: None)  # "afterwards" never comes
    old = os.umask(0o022)
    try:
        first = vapid._load()
    finally:
        os.umask(old)
    mode = stat.S_IMODE(settings.VAPID_PRIVATE_KEY_FILE.stat().st_mode)
    assert mode == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["vapid_private_key.pem"]
    assert vapid._load().public_key.public_numbers() == first.public_key.public_numbers()


# Passwords: a change ends the account's other sessions, and their devices' notifications

NEW_PASSWORD = "a brand new passphrase"


def _phone(push_service, user):
    """Another device of the person's, subscribed from a session of its own."""
    device = push_service.subscription()
    PushSubscription.objects.create(
        user=user, endpoint=device["endpoint"], p256dh=device["keys"]["p256dh"], auth=device["keys"]["auth"]
    )
    return device


def test_changing_the_password_turns_off_the_other_devices_not_this_one(
    push_service, alice, bob, bob_client, direct, bob_device
):
    """Like Signal or WhatsApp: whoever held one of Bob's other sessions (the reason to
    change a password) stops reading his notifications; the browser he changed it on keeps
    its own, and the page says what happened."""
    phone = _phone(push_service, bob)
    response = bob_client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        follow=True,
    )
    assert response.status_code == 200
    assert "Notifications were turned off on your other devices." in response.content.decode()
    assert list(PushSubscription.objects.values_list("endpoint", flat=True)) == [bob_device["endpoint"]]
    services.do_post_message(membership(direct, alice), "New password?")
    runner.run_pending()
    assert [d.endpoint for d in push_service.wait_for(1)] == [bob_device["endpoint"]]
    assert phone["endpoint"] not in {d.endpoint for d in push_service.deliveries}


def test_a_password_changed_in_french_says_so_in_french(push_service, bob, bob_client, bob_device):
    bob.language = "fr"
    bob.save()
    _phone(push_service, bob)
    response = bob_client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        follow=True,
    )
    assert "Les notifications ont été désactivées sur vos autres appareils." in response.content.decode()


def test_a_password_change_on_a_browser_without_notifications_turns_them_all_off(
    push_service, bob, bob_client, client, bob_device
):
    client.force_login(bob)
    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        follow=True,
    )
    assert "Notifications were turned off on your other devices." in response.content.decode()
    assert not PushSubscription.objects.exists()


def test_a_password_change_that_turns_nothing_off_says_nothing(bob_client):
    response = bob_client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        follow=True,
    )
    assert response.status_code == 200
    assert "Notifications were turned off" not in response.content.decode()


def test_a_password_set_in_the_admin_turns_off_the_persons_devices(push_service, alice, bob, bob_device):
    """A staff member answering "my account was taken over": the taker's devices stop too."""
    _phone(push_service, bob)
    other = PushSubscription.objects.create(
        user=alice, endpoint="https://127.0.0.1/alice", p256dh="x", auth="y"
    )
    staff = make_user("staff")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    admin = client_for(staff)
    response = admin.post(
        reverse("admin:auth_user_password_change", args=[bob.pk]),
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
        follow=True,
    )
    assert response.status_code == 200
    assert "Notifications were turned off on the devices of Bob Builder." in response.content.decode()
    assert list(PushSubscription.objects.all()) == [other]


def test_a_staff_member_setting_their_own_password_in_the_admin_keeps_this_device(
    push_service, bob, bob_client, bob_device
):
    bob.is_staff = bob.is_superuser = True
    bob.save()
    _phone(push_service, bob)
    response = bob_client.post(
        reverse("admin:auth_user_password_change", args=[bob.pk]),
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
        follow=True,
    )
    assert response.status_code == 200
    assert "Notifications were turned off on your other devices." in response.content.decode()
    assert list(PushSubscription.objects.values_list("endpoint", flat=True)) == [bob_device["endpoint"]]


def test_setting_a_first_password_turns_off_the_other_devices_not_this_one(push_service, bob, client):
    """allauth's "set password" (an account without a usable one) is a password change too."""
    bob.set_unusable_password()
    bob.save()
    client.force_login(bob)
    here = push_service.subscription()
    assert subscribe(client, here).status_code == 200
    _phone(push_service, bob)
    response = client.post(
        reverse("account_set_password"), {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}, follow=True
    )
    assert response.status_code == 200
    bob.refresh_from_db()
    assert bob.check_password(NEW_PASSWORD)
    assert "Notifications were turned off on your other devices." in response.content.decode()
    assert list(PushSubscription.objects.values_list("endpoint", flat=True)) == [here["endpoint"]]


def test_a_staff_member_changing_their_password_on_the_admin_site_keeps_only_this_device(
    push_service, bob, bob_client, bob_device
):
    """The admin site has its own "Change password" page (Django's, not allauth's): the
    other devices go there too."""
    bob.is_staff = True
    bob.save()
    _phone(push_service, bob)
    response = bob_client.post(
        reverse("admin:password_change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        follow=True,
    )
    assert response.status_code == 200
    bob.refresh_from_db()
    assert bob.check_password(NEW_PASSWORD)
    assert "Notifications were turned off on your other devices." in response.content.decode()
    assert list(PushSubscription.objects.values_list("endpoint", flat=True)) == [bob_device["endpoint"]]


def test_resetting_the_password_turns_off_every_device(push_service, bob, bob_device):
    """Whoever reset it proved only the email address: no session and no device is kept."""
    from django.core import mail

    _phone(push_service, bob)
    bob.email = "bob@example.com"
    bob.save()
    visitor = Client()
    visitor.post(reverse("account_reset_password"), {"email": "bob@example.com"})
    link = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/\S+/)", mail.outbox[-1].body).group(1)
    form = visitor.get(link, follow=True)
    response = visitor.post(
        form.redirect_chain[-1][0] if form.redirect_chain else link,
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        follow=True,
    )
    assert response.status_code == 200
    bob.refresh_from_db()
    assert bob.check_password(NEW_PASSWORD)
    assert "Notifications were turned off on all your devices." in response.content.decode()
    assert not PushSubscription.objects.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"endpoint": "https://fcm.googleapis.com/fcm/send/\x00"},
        {"keys": {"p256dh": "\x00", "auth": "\x00"}},
        {"keys": {"p256dh": 1, "auth": ["x"]}},
        {"keys": ["p256dh"]},
        {"endpoint": "https://fcm.googleapis.com/fcm/send/" + "a" * 3000},
        {"endpoint": None},
    ],
)
def test_a_confirmation_with_bad_fields_is_a_routine_answer(
    push_service, alice_client, bob, bob_device, change
):
    """Whatever a page sends to confirm (NUL characters PostgreSQL refuses, keys of the
    wrong type, an endpoint too long to be listed), it gets an answer, never a 500, and
    Bob's device stays."""
    response = alice_client.post(
        reverse("notifications:subscribe"),
        json.dumps({**bob_device, **change, "confirm": True}),
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json() == {"confirmed": False}
    assert PushSubscription.objects.get().user == bob


@pytest.mark.parametrize("keys", [{"p256dh": "B" + "A" * 86}, {"auth": "AAAAAAAAAAAAAAAAAAAAAA"}, {}])
def test_a_confirmation_with_another_browsers_keys_deletes_nothing(
    push_service, alice_client, bob, bob_device, keys
):
    """The keys are the proof: Bob's endpoint with keys other than his own leaves his device."""
    forged = {"endpoint": bob_device["endpoint"], "keys": {**bob_device["keys"], **keys}, "confirm": True}
    if keys:
        assert forged["keys"] != bob_device["keys"]
    else:
        forged["keys"] = {"p256dh": bob_device["keys"]["p256dh"]}
    response = alice_client.post(
        reverse("notifications:subscribe"), json.dumps(forged), content_type="application/json"
    )
    assert response.json() == {"confirmed": False}
    assert PushSubscription.objects.get().user == bob


def test_forgetting_an_endpoint_with_a_nul_character_is_a_routine_answer(bob_client, bob_device):
    response = bob_client.post(
        reverse("notifications:unsubscribe_device"),
        json.dumps({"endpoint": bob_device["endpoint"] + "\x00"}),
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json() == {"removed": False}
    assert PushSubscription.objects.exists()


def test_a_message_composes_notifications_only_for_people_something_can_reach(
    push_service, monkeypatch, alice, bob, carol, bob_device
):
    """In a big room most members have no device and no email: the job composes nothing for
    them (it was most of a message's cost), and still reaches everyone who can be reached."""
    from notifications import email, rules

    dave, erin = make_user("dave"), make_user("erin")
    room = services.do_create_group(alice, "Many readers", [bob, carol, dave, erin])
    carol.email_missed = True
    carol.save()
    composed = []
    compose = rules._compose

    def counting(message, room, author, user, reason, unread):
        composed.append(user.username)
        return compose(message, room, author, user, reason, unread)

    monkeypatch.setattr(rules, "_compose", counting)
    services.do_post_message(membership(room, alice), "@carol @dave @erin see the plan")
    runner.run_pending()
    assert sorted(composed[:2]) == ["bob", "carol"]  # the job; the push's send composes bob's again
    assert "dave" not in composed and "erin" not in composed
    [delivery] = push_service.wait_for(1)
    assert delivery.payload["to"] == bob.pk
    assert Job.objects.filter(kind=email.MISSED_EMAIL, payload__user_id=carol.pk).exists()
    assert not Job.objects.filter(kind=email.MISSED_EMAIL, payload__user_id=dave.pk).exists()
