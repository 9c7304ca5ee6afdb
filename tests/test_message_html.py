"""A message's HTML is rendered once and shared: by the live event, the poster's response
and every room page after (rooms/fragments.py). Whatever changes what a message shows
must show on the next page, and what differs per viewer must stay per viewer."""

import re

import pytest
from django.core.cache import caches
from django.test import Client, override_settings
from django.urls import reverse, set_script_prefix
from django.utils import translation

from accounts.services import do_block, do_update_profile
from rooms import fragments, services
from rooms.models import Message
from rooms.templatetags.id_urls import id_address
from tests.conftest import HTMX, membership, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def group(alice, bob):
    return services.do_create_group(alice, "Trip", [bob])


@pytest.fixture
def renders(monkeypatch):
    """The messages rendered from the template, by id, in order."""
    rendered: list[int] = []
    real = fragments._render

    def counting(message):
        rendered.append(message.pk)
        return real(message)

    monkeypatch.setattr(fragments, "_render", counting)
    return rendered


def article(page: str, message: Message) -> str:
    found = re.search(rf'<article [^>]*id="m-{message.pk}".*?</article>', page, re.S)
    assert found, f"message {message.pk} is not on the page"
    return found.group(0)


def test_a_room_page_renders_each_message_once_then_reuses_it(alice_client, bob_client, group, bob, renders):
    """The first view renders what it shows; every later view, anyone's, renders nothing."""
    for i in range(5):
        services.do_post_message(membership(group, bob), f"message {i}")
    caches["fragments"].clear()  # the posts kept their messages' HTML; start cold
    renders.clear()
    first = alice_client.get(group.get_absolute_url()).content.decode()
    assert sorted(renders) == sorted(Message.objects.filter(room=group).values_list("pk", flat=True))
    renders.clear()
    again = bob_client.get(group.get_absolute_url()).content.decode()
    assert renders == []
    for message in Message.objects.filter(room=group, kind=Message.Kind.TEXT):
        # The same HTML, but that the second viewer (bob) wrote them.
        assert article(first, message) == article(again, message).replace(" is-mine", "")


def test_the_post_renders_its_message_once_for_the_room_its_response_and_the_next_page(
    alice_client, group, renders, events
):
    with events() as sent:
        response = post(alice_client, group, "hello everyone", headers=HTMX)
    assert response.status_code == 200
    message = Message.objects.get(room=group, body="hello everyone")
    # Once: nobody has used French yet, so the live event carries English only
    # (rooms.live.localized; tests/test_i18n.py has the French reader).
    assert renders.count(message.pk) == 1
    (event,) = [e for _, e in sent.of_type("room.message")]
    assert article(event["message_html"], message) in article(response.content.decode(), message).replace(
        " is-mine", ""
    )
    alice_client.get(group.get_absolute_url())
    assert renders.count(message.pk) == 1


def test_my_messages_are_marked_mine_for_me_only(alice_client, bob_client, group, alice):
    services.do_post_message(membership(group, alice), "mine")
    message = Message.objects.get(body="mine")
    url = group.get_absolute_url()
    assert 'class="message is-mine' in article(alice_client.get(url).content.decode(), message)
    assert "is-mine" not in article(bob_client.get(url).content.decode(), message)


def test_an_edit_a_new_name_and_an_edited_quote_show_on_the_next_page(bob_client, group, alice, bob):
    asked = services.do_post_message(membership(group, alice), "shall we leave at 9?").message
    answer = services.do_post_message(membership(group, bob), "yes", reply_to_id=asked.pk).message
    page = bob_client.get(group.get_absolute_url()).content.decode()
    assert "shall we leave at 9?" in article(page, answer)

    services.do_edit_message(alice, asked, "shall we leave at 10?")
    page = bob_client.get(group.get_absolute_url()).content.decode()
    assert "shall we leave at 10?" in article(page, asked)
    assert "shall we leave at 10?" in article(page, answer)  # the quote follows the edit

    do_update_profile(alice, display_name="Alice in Wonderland")
    page = bob_client.get(group.get_absolute_url()).content.decode()
    assert "Alice in Wonderland" in article(page, asked)
    assert "Alice in Wonderland" in article(page, answer)  # the quote's author too

    services.do_delete_message(alice, Message.objects.get(pk=asked.pk))
    page = bob_client.get(group.get_absolute_url()).content.decode()
    assert "message deleted" in article(page, asked)
    assert "shall we leave" not in page


def test_a_reply_that_moves_on_shows_its_new_state(bob_client, group):
    reply = services.do_post_assistant_message(group.pk, persona="Planner", announce=False)
    assert "Planner is thinking" in article(bob_client.get(group.get_absolute_url()).content.decode(), reply)
    Message.objects.filter(pk=reply.pk).update(
        state=Message.State.DONE, body="Leave at 9.", html="<p>Leave at 9.</p>"
    )
    page = bob_client.get(group.get_absolute_url()).content.decode()
    assert "Leave at 9." in article(page, reply)
    assert "thinking" not in article(page, reply)


def test_pages_render_everything_when_the_cache_keeps_nothing(alice_client, group, bob, settings):
    dummy = {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
    settings.CACHES = {**settings.CACHES, "fragments": dummy}
    services.do_post_message(membership(group, bob), "still shown")
    assert "still shown" in alice_client.get(group.get_absolute_url()).content.decode()


def test_older_history_comes_from_the_same_html(alice_client, group, bob, renders):
    for i in range(60):
        services.do_post_message(membership(group, bob), f"old {i}")
    first = alice_client.get(group.get_absolute_url(), {"before": 20}, **HTMX).content.decode()
    renders.clear()
    again = alice_client.get(group.get_absolute_url(), {"before": 20}, **HTMX).content.decode()
    assert "old 0" in again and renders == []
    assert first == again


def test_reactions_are_drawn_for_each_viewer_around_the_shared_message(alice, bob, carol, group):
    """Shared HTML never carries one viewer's chips to another: mine is marked for me
    only, and someone who blocked me does not see my reaction."""
    services.do_add_members(alice, group, [carol])
    message = services.do_post_message(membership(group, bob), "dinner at 8?").message
    services.do_toggle_reaction(membership(group, alice), message, "👍")
    do_block(carol, alice)
    pages = {}
    for user in (alice, bob, carol):
        client = Client()
        client.force_login(user)
        pages[user.username] = article(client.get(group.get_absolute_url()).content.decode(), message)
    assert 'class="reaction is-mine"' in pages["alice"]
    assert "reaction is-mine" not in pages["bob"] and "👍" in pages["bob"]
    assert "Alice Liddell" not in pages["carol"]


@pytest.mark.parametrize("script_prefix", ["/", "/chat/"])
@pytest.mark.parametrize(
    ("name", "ids"),
    [
        ("rooms:room", [7]),
        ("rooms:composer", [7]),
        ("rooms:edit_message", [7, 123]),
        ("rooms:delete_message", [2**63 - 1, 1]),
        ("rooms:react", [7, 123]),
        ("assistant:stop", [7, 123]),
        ("assistant:quiet", [7]),
    ],
)
def test_the_message_partials_id_urls_are_the_addresses_reverse_gives(name, ids, script_prefix):
    """`{% id_url %}` (rooms/templatetags/id_urls.py) reverses each name once with stand-in
    ids; what it gives must be what `{% url %}` gives, under any script prefix."""
    set_script_prefix(script_prefix)
    try:
        assert id_address(name, *ids) == reverse(name, args=ids)
        assert id_address(name, *ids).startswith(script_prefix)
        with pytest.raises(ValueError):
            id_address(name, *ids[:-1], "1/../x")  # never text, only ids
    finally:
        set_script_prefix("/")


def test_id_urls_follow_the_url_configuration_and_the_language_in_force():
    """Each URL configuration (a test's override_settings(ROOT_URLCONF=...) leaves
    get_urlconf() at None, as the default) and each language (i18n_patterns, translated
    routes) has its own addresses: none is served from another's cache."""
    names = [("rooms:edit_message", [7, 123]), ("assistant:quiet", [7])]
    for name, ids in names:
        assert id_address(name, *ids) == reverse(name, args=ids)
    with override_settings(ROOT_URLCONF="tests.id_url_urls"):
        for language in ("en", "fr"):
            with translation.override(language):
                for name, ids in names:
                    address = id_address(name, *ids)
                    assert address == reverse(name, args=ids)
                    assert address.startswith(f"/{language}/elsewhere/")
    for name, ids in names:
        assert id_address(name, *ids) == reverse(name, args=ids)


@pytest.mark.parametrize("value", [True, -7, 7.9, "-7", " 7", "7 ", "+7", "٧", "7.0", None, 2**63])
def test_id_urls_take_nothing_but_ids(value):
    """What `int()` would read as another number (a bool, a float, a sign, spaces, other
    scripts' digits) is refused, as {% url %} refuses what the pattern does not match."""
    with pytest.raises(ValueError):
        id_address("rooms:edit_message", 7, value)
    assert id_address("rooms:edit_message", "7", 123) == reverse("rooms:edit_message", args=[7, 123])
