"""Rate limits against spam: clear messages saying when to retry, nothing lost."""

from html import unescape

import pytest

from rooms import ratelimits
from rooms.models import Message
from tests.conftest import HTMX, post


@pytest.fixture(autouse=True)
def _message_limits(settings):
    settings.RATE_MESSAGES_PER_10_SECONDS = 3
    settings.RATE_MESSAGES_PER_HOUR = 5


def test_a_burst_is_refused_with_when_to_retry_and_the_text_kept(alice_client, group, monkeypatch):
    # One window for all four posts, however slow the machine (a real clock could cross
    # into the next window and let the fourth through).
    monkeypatch.setattr(ratelimits.time, "time", lambda: 1_000_000.0)
    for i in range(3):
        assert post(alice_client, group, f"quick {i}").status_code == 302
    response = post(alice_client, group, "one too many", headers=HTMX)
    assert response.status_code == 422
    page = unescape(response.content.decode())
    assert "You are sending messages too often. Try again in" in page and "second" in page
    assert "one too many</textarea>" in page
    assert Message.objects.filter(room=group, kind="text").count() == 3


def test_the_sustained_rate_holds_after_the_burst_window(alice_client, group, monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(ratelimits.time, "time", lambda: clock[0])
    for i in range(5):
        assert post(alice_client, group, f"m{i}").status_code == 302
        clock[0] += 11  # a new burst window every time
    response = post(alice_client, group, "sixth")
    assert response.status_code == 422
    assert "Try again in" in unescape(response.content.decode()) and "minute" in unescape(
        response.content.decode()
    )


def test_each_person_has_their_own_allowance(alice_client, bob_client, group):
    for i in range(3):
        post(alice_client, group, f"a{i}")
    assert post(bob_client, group, "bob is fine").status_code == 302


def test_a_retried_send_does_not_count_twice(alice_client, group):
    import uuid

    client_id = str(uuid.uuid4())
    for _ in range(5):
        assert post(alice_client, group, "same", client_id=client_id).status_code == 302
    assert post(alice_client, group, "another").status_code == 302


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "1 second"),
        (45, "45 seconds"),
        (61, "2 minutes"),
        (3599, "60 minutes"),
        (3600, "1 hour"),
        (7200, "2 hours"),
    ],
)
def test_waits_are_said_in_plain_words(seconds, words):
    assert ratelimits.describe_wait(seconds) == words
