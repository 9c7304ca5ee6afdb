"""Email for what was missed: direct messages and mentions left unread for
EMAIL_MISSED_AFTER_MINUTES, to a verified address, at most one an hour, with a signed
one-click way out. Through Django's locmem backend, and once through a real SMTP server."""

import email
import mailbox
import socket
import subprocess
import sys
import time

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from jobs import runner
from jobs.models import Job
from notifications import email as missed
from rooms import services
from tests.conftest import membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_wants_email(bob):
    EmailAddress.objects.create(user=bob, email="bob@example.com", verified=True, primary=True)
    bob.email_missed = True
    bob.save()
    return bob


def run_due():
    """Run what is queued, then bring the emails forward to now (the delay has passed)."""
    runner.run_pending()
    Job.objects.filter(kind=missed.MISSED_EMAIL, status=Job.Status.QUEUED).update(run_after=timezone.now())
    runner.run_pending()


def test_a_direct_message_left_unread_is_emailed_after_the_delay(settings, alice, bob_wants_email, direct):
    settings.SITE_URL = "https://chat.example.org"
    message = services.do_post_message(membership(direct, alice), "Call me back").message
    runner.run_pending()
    job = Job.objects.get(kind=missed.MISSED_EMAIL)
    assert job.run_after >= timezone.now() + timezone.timedelta(minutes=14)
    assert mail.outbox == []
    run_due()
    [sent] = mail.outbox
    assert sent.to == ["bob@example.com"]
    assert sent.subject == "You missed 1 message on Calpico"
    assert "Alice Liddell sent you a message: Call me back" in sent.body
    assert f"https://chat.example.org/r/{direct.pk}/m/{message.seq}/" in sent.body
    unsubscribe = sent.extra_headers["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://chat.example.org/notifications/stop-email/")
    assert sent.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Call me back" in sent.alternatives[0][0]


def test_what_was_read_in_time_is_not_emailed(alice, bob_wants_email, direct):
    message = services.do_post_message(membership(direct, alice), "Hi").message
    runner.run_pending()
    services.do_mark_read(membership(direct, bob_wants_email), message.seq)
    run_due()
    assert mail.outbox == []


def test_mentions_are_emailed_even_from_muted_groups_but_other_group_messages_are_not(
    alice, bob_wants_email, group
):
    services.do_set_muted(membership(group, bob_wants_email), True)
    services.do_post_message(membership(group, alice), "Plain news")
    services.do_post_message(membership(group, alice), "@bob your turn")
    run_due()
    [sent] = mail.outbox
    assert "Alice Liddell mentioned you in Trip planning: @bob your turn" in sent.body
    assert "Plain news" not in sent.body


def test_at_most_one_email_an_hour_and_never_the_same_message_twice(alice, bob_wants_email, direct):
    services.do_post_message(membership(direct, alice), "First")
    run_due()
    assert len(mail.outbox) == 1
    services.do_post_message(membership(direct, alice), "Second")
    run_due()
    assert len(mail.outbox) == 1  # within the hour
    later = Job.objects.get(kind=missed.MISSED_EMAIL, status=Job.Status.QUEUED)
    sent_at = type(bob_wants_email).objects.get(pk=bob_wants_email.pk).missed_email_at
    assert later.run_after == sent_at + missed.AT_MOST_EVERY
    # An hour on (everything an hour older): the next lists only what came since the last.
    type(bob_wants_email).objects.filter(pk=bob_wants_email.pk).update(
        missed_email_at=sent_at - missed.AT_MOST_EVERY
    )
    direct.messages.update(created_at=F("created_at") - missed.AT_MOST_EVERY)
    later.run_after = timezone.now()
    later.save()
    runner.run_pending()
    assert len(mail.outbox) == 2
    assert "Second" in mail.outbox[1].body and "First" not in mail.outbox[1].body


def test_without_text_in_notifications_the_email_has_none_either(alice, bob_wants_email, direct):
    bob_wants_email.push_show_text = False
    bob_wants_email.save()
    services.do_post_message(membership(direct, alice), "Secret")
    run_due()
    assert "Secret" not in mail.outbox[0].body and "Alice Liddell sent you a message" in mail.outbox[0].body


def test_an_address_not_verified_gets_nothing(alice, bob, direct):
    EmailAddress.objects.create(user=bob, email="bob@example.com", verified=False, primary=True)
    bob.email_missed = True
    bob.save()
    services.do_post_message(membership(direct, alice), "Hi")
    run_due()
    assert mail.outbox == []


def test_emails_cannot_be_turned_on_without_a_verified_address(bob, bob_client):
    response = bob_client.post(
        reverse("notifications:choices"), {"email_missed": "on", "push_show_text": "on"}, follow=True
    )
    assert "Verify an email address first" in response.content.decode()
    bob.refresh_from_db()
    assert not bob.email_missed and bob.push_show_text


def test_the_choices_are_saved(bob_wants_email, bob_client):
    bob_client.post(reverse("notifications:choices"), {"email_missed": "on"})
    bob_wants_email.refresh_from_db()
    assert bob_wants_email.email_missed and not bob_wants_email.push_show_text
    page = bob_client.get(reverse("rooms:notifications")).content.decode()
    assert "To bob@example.com, when they stay unread for 15 minutes, at most once an hour." in page


def test_the_unsubscribe_link_asks_then_stops_the_emails_without_signing_in(client, bob_wants_email):
    url = reverse("notifications:unsubscribe", args=[missed.unsubscribe_token(bob_wants_email)])
    page = client.get(url)
    assert page.status_code == 200 and "Stop missed-message emails?" in page.content.decode()
    bob_wants_email.refresh_from_db()
    assert bob_wants_email.email_missed  # opening the link changes nothing
    # A mail program's one-click POST (RFC 8058): no CSRF token, no session.
    response = client.post(url, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and "No more missed-message emails" in response.content.decode()
    bob_wants_email.refresh_from_db()
    assert not bob_wants_email.email_missed


def test_a_forged_unsubscribe_link_is_refused(client, bob_wants_email):
    token = missed.unsubscribe_token(bob_wants_email)
    response = client.post(reverse("notifications:unsubscribe", args=[token[:-2] + "xx"]))
    assert response.status_code == 400
    bob_wants_email.refresh_from_db()
    assert bob_wants_email.email_missed


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server(tmp_path):
    """aiosmtpd in a process of its own, keeping what it receives in a maildir."""
    port = _free_port()
    maildir = tmp_path / "mail"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Mailbox",
            str(maildir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield port, maildir
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_email_goes_out_through_a_real_smtp_server(settings, smtp_server, alice, bob_wants_email, direct):
    port, maildir = smtp_server
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 10
    services.do_post_message(membership(direct, alice), "Over SMTP")
    run_due()
    [received] = list(mailbox.Maildir(maildir, factory=None))
    parsed = email.message_from_bytes(received.as_bytes())
    assert parsed["To"] == "bob@example.com"
    assert parsed["Subject"] == "You missed 1 message on Calpico"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = next(part for part in parsed.walk() if part.get_content_type() == "text/plain")
    assert "Over SMTP" in text.get_payload(decode=True).decode()


def test_an_encrypted_direct_message_is_emailed_without_its_text(alice, bob_wants_email):
    import base64

    room = services.do_open_direct_room(alice, bob_wants_email, encrypted=True)
    services.do_accept_request(membership(room, bob_wants_email))
    ciphertext = base64.b64encode(b"\x00\x01\x00\x02" + b"\x07" * 60).decode()
    services.do_post_message(membership(room, alice), ciphertext)
    run_due()
    [sent] = mail.outbox
    assert "Alice Liddell sent you a message\n" in sent.body
    assert ciphertext not in sent.body and "Encrypted message" not in sent.body


def test_two_processes_sending_for_the_same_person_at_once_send_one_email(
    monkeypatch, alice, bob_wants_email, direct
):
    """Two fan-out jobs in two processes can each queue an email job for Bob; when both run
    together, the second finds this hour's email taken while the first is still sending."""
    from django.core.mail.backends.locmem import EmailBackend

    services.do_post_message(membership(direct, alice), "Are you coming?")
    runner.run_pending()
    send = EmailBackend.send_messages
    nested: list[bool | None] = []

    def send_while_another_process_sends(self, messages):
        if not nested:
            nested.append(None)
            nested[0] = missed.send_missed(bob_wants_email.pk)
        return send(self, messages)

    monkeypatch.setattr(EmailBackend, "send_messages", send_while_another_process_sends)
    assert missed.send_missed(bob_wants_email.pk) is True
    assert nested == [False]
    assert len(mail.outbox) == 1


def test_an_email_the_mail_server_refused_goes_out_on_the_retry(monkeypatch, alice, bob_wants_email, direct):
    from django.core.mail.backends.locmem import EmailBackend

    services.do_post_message(membership(direct, alice), "Are you coming?")
    runner.run_pending()
    send = EmailBackend.send_messages

    def refuse(self, messages):
        raise OSError("Connection refused")

    monkeypatch.setattr(EmailBackend, "send_messages", refuse)
    with pytest.raises(OSError):
        missed.send_missed(bob_wants_email.pk)
    monkeypatch.setattr(EmailBackend, "send_messages", send)
    assert missed.send_missed(bob_wants_email.pk) is True
    [sent] = mail.outbox
    assert "Are you coming?" in sent.body


def test_a_french_reader_gets_the_email_in_french(alice, bob_wants_email, direct):
    bob_wants_email.language = "fr"
    bob_wants_email.save()
    services.do_post_message(membership(direct, alice), "Tu viens ?")
    run_due()
    [sent] = mail.outbox
    assert sent.subject == "Vous avez manqué 1 message sur Calpico"
    html = sent.alternatives[0][0]
    assert '<html lang="fr">' in html
    assert "Tu viens ?" in sent.body
