"""A message's actions that post (Delete, Remove, Stop, Retry, Block) work without
JavaScript, and a message carries no CSRF token of its own.

A message is rendered once for every viewer (and pushed over the socket without a
request), so its actions are GET forms: without JavaScript they lead to a confirmation
page whose own form carries a token; with JavaScript htmx posts them with the token from
<body hx-headers>.
"""

import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Block
from assistant import runner
from assistant import services as assistant_services
from assistant.models import AssistantRun
from rooms import services
from rooms.live_groups import room_group
from rooms.models import Message
from tests.conftest import HTMX, membership

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def strict_client(user) -> Client:
    """A browser without JavaScript: Django checks CSRF as it does for real requests."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def confirm_by_the_page(client: Client, url: str):
    """Open the confirmation page at `url` and press its button, as a person without JavaScript does."""
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    body = body[body.index('class="card card--narrow confirm"') :]  # past the top bar's Log out form
    (form,) = re.findall(r'<form method="post" action="([^"]+)">', body)
    data = {"csrfmiddlewaretoken": TOKEN.search(body).group(1)}
    data.update(re.findall(r'<input type="hidden" name="(next)" value="([^"]*)">', body))
    return client.post(form, data)


def message_list(page: str) -> str:
    """The room page's history, without the private panel, the composer and the top bar (which
    post forms of their own)."""
    end = page.index('id="private-panel"') if 'id="private-panel"' in page else page.index('id="composer"')
    return page[page.index('id="messages"') : end]


@pytest.fixture
def bobs_message(group, bob):
    return services.do_post_message(membership(group, bob), "Shall we take the 8:15?").message


@pytest.fixture
def failed_reply(fake_openai, alice, group) -> Message:
    fake_openai.queue(status=500)
    services.do_post_message(membership(group, alice), "@assistant hello")
    runner.run_pending()
    return Message.objects.get(room=group, kind=Message.Kind.ASSISTANT, state=Message.State.FAILED)


# No token in a message


def test_the_message_list_carries_no_csrf_token(alice_client, group, alice, bobs_message):
    """Messages on the page hold no token; the page sends it once, in <body hx-headers>."""
    services.do_post_message(membership(group, alice), "Yes, the 8:15")
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert "csrfmiddlewaretoken" not in message_list(page)
    assert re.search(r'<body [^>]*hx-headers=\'\{"X-CSRFToken": "[^"]+"\}\'', page)


def test_a_messages_actions_lead_to_confirmation_pages_without_javascript(alice_client, group, bobs_message):
    """Each action is a GET form to its confirmation page, which htmx posts instead."""
    page = alice_client.get(group.get_absolute_url()).content.decode()
    delete = reverse("rooms:delete_message", args=[group.pk, bobs_message.pk])
    block = reverse("accounts:block", args=["bob"])
    assert re.search(rf'<form method="get" action="{delete}"\s+hx-post="{delete}"', page)
    assert f'<form method="get" action="{block}" hx-post="{block}" hx-confirm="Block Bob Builder?' in page
    assert 'method="post"' not in message_list(page)


def test_a_pushed_message_carries_no_csrf_token(bob, group, events):
    """A message pushed over the socket is the same HTML as on the page: no token, nothing to patch in."""
    with events() as sent:
        services.do_post_message(membership(group, bob), "Shall we take the 8:15?")
    (event,) = sent.to(room_group(group.pk))
    pushed = "".join(value for value in event.values() if isinstance(value, str))
    assert "Shall we take the 8:15?" in event["message_html"]
    assert "csrfmiddlewaretoken" not in pushed
    assert 'method="post"' not in pushed


# Delete and Remove


def test_deleting_my_message_without_javascript(alice, group):
    """Delete leads to "Delete this message?"; its form posts with its own token."""
    message = services.do_post_message(membership(group, alice), "wrong room, sorry").message
    client = strict_client(alice)
    url = reverse("rooms:delete_message", args=[group.pk, message.pk])
    page = client.get(url).content.decode()
    assert "Delete this message?" in page and "wrong room, sorry" in page
    assert f'href="{group.get_absolute_url()}#m-{message.pk}">Cancel</a>' in page
    response = confirm_by_the_page(client, url)
    assert response.status_code == 302 and response.url == f"{group.get_absolute_url()}#m-{message.pk}"
    message.refresh_from_db()
    assert message.is_deleted and message.removed_by == ""


def test_the_delete_page_is_no_way_around_csrf(alice, group):
    """The confirmation page asks; posting without its token is still refused."""
    message = services.do_post_message(membership(group, alice), "keep me").message
    client = strict_client(alice)
    response = client.post(reverse("rooms:delete_message", args=[group.pk, message.pk]))
    assert response.status_code == 403
    message.refresh_from_db()
    assert not message.is_deleted


def test_an_admin_removes_a_message_without_javascript(alice, group, bobs_message):
    """The group's owner gets "Remove this message?" for someone else's message."""
    client = strict_client(alice)
    url = reverse("rooms:delete_message", args=[group.pk, bobs_message.pk])
    assert "Remove this message?" in client.get(url).content.decode()
    assert confirm_by_the_page(client, url).status_code == 302
    bobs_message.refresh_from_db()
    assert bobs_message.is_deleted and bobs_message.removed_by == "admin"


def test_nobody_is_asked_to_delete_another_persons_message(carol_client, group, bobs_message):
    """Carol (a member, not an admin) gets 403 for the page, as for the post."""
    response = carol_client.get(reverse("rooms:delete_message", args=[group.pk, bobs_message.pk]))
    assert response.status_code == 403
    assert b"Shall we take" not in response.content


def test_the_delete_page_of_a_deleted_message_goes_back_to_it(bob_client, group, bob, bobs_message):
    """Deleted meanwhile (in another tab): back to the message, nothing to ask."""
    services.do_delete_message(bob, bobs_message)
    response = bob_client.get(reverse("rooms:delete_message", args=[group.pk, bobs_message.pk]))
    assert response.status_code == 302
    assert response.url == f"{group.get_absolute_url()}#m-{bobs_message.pk}"


# The assistant's Stop and Retry


def test_retrying_a_failed_reply_without_javascript(bob, group, failed_reply):
    """Retry leads to "Retry this reply?"; its form asks the assistant again."""
    client = strict_client(bob)
    page = client.get(group.get_absolute_url()).content.decode()
    retry = reverse("assistant:retry", args=[group.pk, failed_reply.pk])
    assert f'<form class="message__run-action" method="get" action="{retry}" hx-post="{retry}"' in page
    assert "Retry this reply?" in client.get(retry).content.decode()
    response = confirm_by_the_page(client, retry)
    assert response.status_code == 302
    failed_reply.refresh_from_db()
    assert failed_reply.state == Message.State.STREAMING
    assert AssistantRun.objects.filter(status=AssistantRun.Status.QUEUED).count() == 1


def test_stopping_a_reply_without_javascript(alice, bob, group, failed_reply):
    """Stop leads to "Stop this reply?"; its form stops the reply."""
    assistant_services.do_retry_run(alice, AssistantRun.objects.get())
    client = strict_client(bob)
    page = client.get(group.get_absolute_url()).content.decode()
    stop = reverse("assistant:stop", args=[group.pk, failed_reply.pk])
    assert f'<form class="message__run-action" method="get" action="{stop}" hx-post="{stop}"' in page
    assert "Stop this reply?" in client.get(stop).content.decode()
    assert confirm_by_the_page(client, stop).status_code == 302
    failed_reply.refresh_from_db()
    assert failed_reply.state == Message.State.STOPPED and failed_reply.note == "Stopped."


def test_stop_and_retry_pages_of_a_finished_reply_go_back_to_it(bob_client, group, failed_reply):
    """Nothing to stop on a failed reply, nothing to retry once retried: back to the message."""
    back = f"{group.get_absolute_url()}#m-{failed_reply.pk}"
    response = bob_client.get(reverse("assistant:stop", args=[group.pk, failed_reply.pk]))
    assert response.status_code == 302 and response.url == back
    bob_client.post(reverse("assistant:retry", args=[group.pk, failed_reply.pk]))
    response = bob_client.get(reverse("assistant:retry", args=[group.pk, failed_reply.pk]))
    assert response.status_code == 302 and response.url == back


# Block


def test_blocking_from_a_message_without_javascript(alice, bob, group, bobs_message):
    """Block leads to "Block Bob Builder?" and back to the room afterwards."""
    client = strict_client(alice)
    url = reverse("accounts:block", args=["bob"]) + f"?next={group.get_absolute_url()}"
    page = client.get(url).content.decode()
    assert "Block Bob Builder?" in page
    assert f'href="{group.get_absolute_url()}">Cancel</a>' in page
    response = confirm_by_the_page(client, url)
    assert response.status_code == 302 and response.url == group.get_absolute_url()
    assert Block.objects.filter(blocker=alice, blocked=bob).exists()


def test_the_block_page_never_offers_to_go_off_site(alice_client, bob):
    """A foreign `next` is dropped: Cancel and the form lead to Bob's profile instead."""
    url = reverse("accounts:block", args=["bob"]) + "?next=//evil.example/"
    page = alice_client.get(url).content.decode()
    assert "evil.example" not in page
    assert f'href="{bob.get_absolute_url()}">Cancel</a>' in page


def test_blocking_with_htmx_reloads_the_room_with_the_notice(alice_client, alice, bob, group):
    """With JavaScript the message's Block posts with htmx; the page then loads the room afresh."""
    response = alice_client.post(
        reverse("accounts:block", args=["bob"]), {"next": group.get_absolute_url()}, **HTMX
    )
    assert response.status_code == 200 and response["HX-Redirect"] == group.get_absolute_url()
    assert Block.objects.filter(blocker=alice, blocked=bob).exists()
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert "You blocked Bob Builder. They won" in page


def test_the_message_template_leaves_the_assistant_s_actions_to_the_assistant():
    """Rooms does not know the assistant's URLs: its Stop, Retry and Share come from the
    assistant's template tags (assistant_tags), so the apps keep depending one way."""
    from django.conf import settings

    template = (settings.BASE_DIR / "templates" / "rooms" / "_message.html").read_text()
    assert "'assistant:" not in template and '"assistant:' not in template
