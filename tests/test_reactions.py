"""Reactions: toggling an emoji on a message, who may, the limits, what pages are told, what
a room page costs with them, and reacting without JavaScript."""

import json
import re
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.services import do_block
from rooms import emoji as emoji_data
from rooms import ratelimits, services
from rooms.live_groups import room_group
from rooms.models import Message, Reaction, Room
from rooms.queries import history_page
from rooms.services.reactions import MAX_EMOJI_PER_MESSAGE
from tests.conftest import HTMX, membership
from tests.sockets import answered, apost, connected, delivered, html, json_frames

pytestmark = pytest.mark.django_db

THUMBS_UP = "\U0001f44d\ufe0f"  # as the data set spells it
HEART = "\u2764\ufe0f"


def say(room, user, text="Lunch at noon?") -> Message:
    return services.do_post_message(membership(room, user), text).message


def react(room, user, message, emoji=THUMBS_UP):
    return services.do_toggle_reaction(membership(room, user), message, emoji)


def react_url(message) -> str:
    return reverse("rooms:react", args=[message.room_id, message.pk])


def chips(message) -> dict[str, list[str]]:
    """The message's chips as a reader sees them: emoji -> names, in order."""
    fresh = Message.objects.get(pk=message.pk)
    return {chip.emoji: [r.name for r in chip.reactors] for chip in fresh.reaction_chips}


# Toggling


def test_reacting_twice_with_the_same_emoji_takes_it_back(alice, bob, group):
    """Giving an emoji adds one row; giving it again removes it."""
    message = say(group, alice)
    assert react(group, bob, message).added is True
    assert Reaction.objects.filter(message=message, user=bob, emoji=THUMBS_UP).count() == 1
    assert chips(message) == {THUMBS_UP: ["Bob Builder"]}
    assert react(group, bob, message).added is False
    assert not Reaction.objects.filter(message=message).exists()
    assert chips(message) == {}


def test_chips_count_people_in_the_order_they_reacted(alice, bob, carol, group):
    """One chip per emoji, emoji in the order first given, people in the order they came."""
    message = say(group, alice)
    react(group, carol, message, HEART)
    react(group, bob, message)
    react(group, alice, message, HEART)
    assert chips(message) == {HEART: ["carol", "Alice Liddell"], THUMBS_UP: ["Bob Builder"]}


@pytest.mark.parametrize("spelling", ["\u2764", "\u2764\ufe0f"])
def test_an_emoji_is_stored_as_the_data_set_spells_it(alice, bob, group, spelling):
    """A heart typed without its variation selector is the same reaction as the picker's."""
    message = say(group, alice)
    react(group, bob, message, spelling)
    assert Reaction.objects.get(message=message).emoji == HEART
    assert react(group, bob, message, HEART).added is False


@pytest.mark.parametrize(
    "forged", ["", "a", "<script>", ":thumbsup:", "👍👍", "🇦", "\U0001f3fb", "x" * 5000, None, 12, ["👍"]]
)
def test_only_emoji_of_the_data_set_are_accepted(alice, bob, group, forged):
    """Text, several emoji, a lone letter or skin tone, a huge string: a clear error, nothing stored."""
    message = say(group, alice)
    with pytest.raises(ValidationError, match="Choose an emoji from the picker"):
        react(group, bob, message, forged)
    assert not Reaction.objects.exists()


def test_skin_tones_of_the_data_set_are_emoji_too(alice, bob, group):
    message = say(group, alice)
    react(group, bob, message, "🙏🏽")
    assert chips(message) == {"🙏🏽": ["Bob Builder"]}


def test_a_message_takes_at_most_20_different_emoji(alice, bob, carol, group, settings):
    """The 21st distinct emoji is refused with a reason; more people on one already there are fine."""
    settings.RATE_REACTIONS_PER_10_SECONDS = 0
    message = say(group, alice)
    offered = [e.unicode for e in emoji_data.offered()][:MAX_EMOJI_PER_MESSAGE]
    for emoji in offered:
        react(group, bob, message, emoji)
    with pytest.raises(ValidationError, match="at most 20 different reactions"):
        react(group, carol, message, emoji_data.offered()[50].unicode)
    assert react(group, carol, message, offered[0]).added is True
    assert Reaction.objects.filter(message=message).values("emoji").distinct().count() == 20


def test_deleted_and_system_messages_take_no_reactions(alice, bob, group):
    message = say(group, alice)
    services.do_delete_message(alice, message)
    with pytest.raises(ValidationError, match="deleted"):
        react(group, bob, message)
    system = Message.objects.filter(room=group, kind=Message.Kind.SYSTEM).first()
    with pytest.raises(ValidationError, match="System messages"):
        react(group, bob, system)
    assert not Reaction.objects.exists()


def test_a_message_deleted_after_the_page_loaded_is_refused(alice, bob, group):
    """The service reads the message again under its lock: a stale copy is not trusted."""
    message = say(group, alice)
    stale = Message.objects.get(pk=message.pk)
    services.do_delete_message(alice, message)
    with pytest.raises(ValidationError, match="deleted"):
        react(group, bob, stale)


def test_a_message_of_another_room_is_refused_by_the_service(alice, bob, group, direct):
    message = say(direct, alice)
    with pytest.raises(PermissionDenied):
        services.do_toggle_reaction(membership(group, bob), message, THUMBS_UP)


def test_someone_who_left_cannot_react_with_an_old_membership(alice, bob, group):
    message = say(group, alice)
    old = membership(group, bob)
    services.do_leave_room(old)
    with pytest.raises(PermissionDenied):
        services.do_toggle_reaction(old, message, THUMBS_UP)


def test_a_message_request_must_be_accepted_before_reacting(alice, mallory):
    """Reacting would tell the sender the request was seen."""
    room = services.do_open_direct_room(alice, mallory)
    message = say(room, alice, "Hi, we met at the conference")
    with pytest.raises(ValidationError, match="Accept the message request"):
        react(room, mallory, message)


@pytest.mark.parametrize("blocker", ["alice", "bob"])
def test_nobody_reacts_in_a_direct_room_where_one_blocked_the_other(alice, bob, direct, blocker):
    """Neither side, and the refusal does not say who blocked whom."""
    message = say(direct, alice)
    people = {"alice": alice, "bob": bob}
    do_block(people[blocker], people["bob" if blocker == "alice" else "alice"])
    for user in (alice, bob):
        with pytest.raises(ValidationError) as refused:
            react(direct, user, message)
        assert refused.value.messages == ["You can't react in this conversation."]


def test_reacting_too_often_is_refused_with_when_to_try_again(alice, bob, group, settings, monkeypatch):
    """Adding and taking back count alike."""
    monkeypatch.setattr(ratelimits.time, "time", lambda: 1_000_000.0)  # one window throughout
    settings.RATE_REACTIONS_PER_10_SECONDS = 3
    message = say(group, alice)
    for _ in range(3):
        react(group, bob, message)
    with pytest.raises(ValidationError, match="reacting too often"):
        react(group, bob, message)


# The assistant


def test_the_assistant_reacts_under_its_name_and_once_per_emoji(alice, bob, group):
    message = say(group, alice)
    react(group, bob, message)
    assert services.do_add_assistant_reaction(message, THUMBS_UP, persona="Planner").added is True
    assert services.do_add_assistant_reaction(message, THUMBS_UP, persona="Planner").added is False
    assert chips(message) == {THUMBS_UP: ["Bob Builder", "Planner"]}
    row = Reaction.objects.get(message=message, is_assistant=True)
    assert row.user_id is None and row.persona == "Planner"
    services.do_remove_assistant_reaction(message, THUMBS_UP)
    assert chips(message) == {THUMBS_UP: ["Bob Builder"]}


def test_the_assistant_follows_the_same_limits(alice, group, settings):
    message = say(group, alice)
    with pytest.raises(ValidationError):
        services.do_add_assistant_reaction(message, "lol", persona="Planner")
    for emoji in [e.unicode for e in emoji_data.offered()][:MAX_EMOJI_PER_MESSAGE]:
        services.do_add_assistant_reaction(message, emoji, persona="Planner")
    with pytest.raises(ValidationError, match="at most 20"):
        services.do_add_assistant_reaction(message, emoji_data.offered()[60].unicode, persona="Planner")
    services.do_delete_message(alice, message)
    with pytest.raises(ValidationError, match="deleted"):
        services.do_add_assistant_reaction(message, HEART, persona="Planner")


def test_the_database_holds_a_reaction_to_one_person_or_the_assistant(alice, bob, group):
    """Constraints: a row is a member's or the assistant's, never both or neither, and never twice."""
    message = say(group, alice)
    for fields in (
        {"user": bob, "is_assistant": True},
        {"user": None, "is_assistant": False},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            Reaction.objects.create(message=message, emoji=HEART, **fields)
    Reaction.objects.create(message=message, emoji=HEART, user=bob)
    with pytest.raises(IntegrityError), transaction.atomic():
        Reaction.objects.create(message=message, emoji=HEART, user=bob)
    Reaction.objects.create(message=message, emoji=HEART, is_assistant=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        Reaction.objects.create(message=message, emoji=HEART, is_assistant=True)


# What pages are told


def test_a_reaction_announces_the_message_s_chips_to_its_room(alice, bob, group, events):
    message = say(group, alice)
    with events() as sent:
        react(group, bob, message)
    [(to, event)] = sent.of_type("room.reactions")
    assert to == room_group(group.pk) and len(sent) == 1  # nothing else: no sidebar, no unread
    assert event["message_id"] == message.pk and event["actor_id"] == bob.pk
    assert f'id="m-{message.pk}-reactions"' in event["html"] and 'hx-swap-oob="true"' in event["html"]
    assert f'data-reactor="{bob.pk}"' in event["html"] and "reacted with thumbs up" in event["html"]
    assert event["toast_html"] == ""  # a group: reactions never notify
    with events() as sent:
        react(group, bob, message)
    [(_, event)] = sent.of_type("room.reactions")
    assert "data-emoji" not in event["html"]


def test_the_announced_chips_are_those_this_change_left(alice, bob, carol, group, events):
    """Read under the message's lock: a later change is a later, newer event."""
    message = say(group, alice)
    with events() as sent:
        react(group, bob, message)
        react(group, carol, message, HEART)
    first, second = (event for _, event in sent.of_type("room.reactions"))
    assert HEART not in first["html"] and HEART in second["html"]
    version = re.compile(r'data-version="(\d+)"')
    assert int(version.search(first["html"])[1]) < int(version.search(second["html"])[1])


def test_a_refused_reaction_announces_nothing(alice, bob, group, events):
    message = say(group, alice)
    services.do_delete_message(alice, message)
    with events() as sent, pytest.raises(ValidationError):
        react(group, bob, message)
    assert sent == []


def test_a_reaction_to_my_message_in_a_direct_room_brings_a_quiet_toast(alice, bob, direct, events):
    message = say(direct, alice, "Landed safely")
    with events() as sent:
        react(direct, bob, message, HEART)
    [(_, event)] = sent.of_type("room.reactions")
    assert event["author_id"] == alice.pk
    toast = event["toast_html"]
    assert "Bob Builder reacted" in toast and HEART in toast and "Landed safely" in toast
    assert "data-quiet" in toast and "data-notify-title" not in toast  # never a desktop notification
    with events() as sent:
        react(direct, alice, message)  # my own reaction to my message
        react(direct, bob, message, HEART)  # taking one back
        services.do_add_assistant_reaction(message, HEART, persona="Assistant")
    assert [event["toast_html"] for _, event in sent.of_type("room.reactions")] == ["", "", ""]


def test_an_edit_keeps_the_message_s_chips(alice, bob, group, events):
    message = say(group, alice)
    react(group, bob, message)
    with events() as sent:
        services.do_edit_message(alice, Message.objects.get(pk=message.pk), "Lunch at one?")
    [(_, event)] = sent.of_type("room.message_changed")
    assert f'data-reactor="{bob.pk}"' in event["html"]
    # The message's own swap carries its chips; they are no separate swap inside it.
    assert event["html"].count("hx-swap-oob") == 1


# The room page


def test_the_room_page_shows_chips_with_mine_marked(alice, bob, group, alice_client):
    message = say(group, alice)
    react(group, bob, message)
    react(group, alice, message, HEART)
    page = alice_client.get(group.get_absolute_url()).content.decode()
    mine = re.search(
        r'<button type="submit" class="reaction is-mine" aria-pressed="true" data-emoji="(.*?)"', page
    )
    assert mine[1] == HEART
    assert f'<button type="submit" class="reaction" aria-pressed="false" data-emoji="{THUMBS_UP}"' in page
    assert "Bob Builder</span></span> reacted with thumbs up" in page


def test_reactions_of_people_i_blocked_are_not_on_my_page(alice, bob, carol, group, alice_client):
    """Like their messages, their reactions are hidden for me: left out of the page."""
    message = say(group, alice)
    react(group, bob, message)
    react(group, carol, message)
    react(group, bob, message, HEART)
    do_block(alice, bob)
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert f'data-reactor="{bob.pk}"' not in page and HEART not in page
    assert f'data-reactor="{carol.pk}"' in page


def test_older_history_leaves_out_reactions_of_people_i_blocked(alice, bob, carol, group, alice_client):
    """An older page brought in by scrolling up hides them as the first page does."""
    message = say(group, alice)
    react(group, bob, message)
    react(group, carol, message)
    for i in range(60):
        say(group, carol, f"later {i}")
    do_block(alice, bob)
    older = alice_client.get(group.get_absolute_url(), {"before": message.seq + 1}, **HTMX).content.decode()
    assert f'id="m-{message.pk}"' in older
    assert f'data-reactor="{bob.pk}"' not in older
    assert f'data-reactor="{carol.pk}"' in older


def fill_with_reactions(room, people, count):
    """`count` messages, each with a reaction from every person, two emoji, and the assistant's."""
    room.refresh_from_db()
    now = timezone.now()
    Message.objects.bulk_create(
        Message(
            room=room,
            seq=room.last_seq + i,
            author=people[i % len(people)],
            body=f"message {i}",
            html=f"<p>message {i}</p>",
            created_at=now,
            reactions_changed_at=now,
        )
        for i in range(1, count + 1)
    )
    messages = list(Message.objects.filter(room=room, seq__gt=room.last_seq))
    Room.objects.filter(pk=room.pk).update(last_seq=room.last_seq + count, last_message=messages[-1])
    rows = []
    for message in messages:
        for n, person in enumerate(people):
            rows.append(Reaction(message=message, user=person, emoji=(THUMBS_UP, HEART)[n % 2]))
        rows.append(Reaction(message=message, is_assistant=True, persona="Planner", emoji="😂"))
    Reaction.objects.bulk_create(rows)


def test_a_page_of_50_messages_with_reactions_costs_one_query_more(
    alice, bob, carol, group, alice_client, django_assert_max_num_queries
):
    """The room page's budget (tests/test_room_page.py) plus one query for every chip on it."""
    fill_with_reactions(group, [alice, bob, carol], 60)
    with django_assert_max_num_queries(11):
        response = alice_client.get(group.get_absolute_url())
    page = response.content.decode()
    assert page.count('class="reactions"') == 50
    assert page.count(f'data-emoji="{THUMBS_UP}"') == 50 and page.count('data-reactor="assistant"') == 50
    # Older history (htmx) too: its budget plus the one query.
    with django_assert_max_num_queries(5):
        older = alice_client.get(group.get_absolute_url(), {"before": 20}, **HTMX).content.decode()
    assert older.count('data-reactor="assistant"') == 17


def test_messages_never_reacted_to_cost_no_query(alice, group, django_assert_num_queries):
    say(group, alice)
    with django_assert_num_queries(1):  # the messages; no reactions read
        page = history_page(group)
    with django_assert_num_queries(0):
        assert [m.reaction_chips for m in page.messages] == [[]] * len(page.messages)


# The view: htmx, and without JavaScript


def test_with_htmx_a_reaction_answers_with_the_message_s_chips(alice, bob, group, bob_client):
    message = say(group, alice)
    response = bob_client.post(react_url(message), {"emoji": THUMBS_UP}, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert body.startswith("<div") and 'class="reaction is-mine" aria-pressed="true"' in body
    assert "hx-swap-oob" not in body


def test_with_htmx_a_refusal_shows_in_the_chips_row(alice, bob, group, bob_client):
    message = say(group, alice)
    services.do_delete_message(alice, message)
    response = bob_client.post(react_url(message), {"emoji": THUMBS_UP}, **HTMX)
    assert response.status_code == 422
    assert 'role="alert">This message was deleted.</p>' in response.content.decode()
    response = bob_client.post(react_url(say(group, alice)), {"emoji": "nope"}, **HTMX)
    assert response.status_code == 422 and "Choose an emoji from the picker" in response.content.decode()


def test_without_javascript_a_chip_asks_and_then_posts(alice, bob, group, bob_client):
    """A chip is a GET form: the page it leads to asks, and its own form (with a CSRF token) posts."""
    message = say(group, alice)
    react(group, alice, message)
    page = bob_client.get(group.get_absolute_url()).content.decode()
    assert f'<form method="get" action="{react_url(message)}" hx-post="{react_url(message)}"' in page
    ask = bob_client.get(react_url(message), {"emoji": THUMBS_UP}).content.decode()
    assert f"React with {THUMBS_UP}?" in ask and "csrfmiddlewaretoken" in ask
    response = bob_client.post(react_url(message), {"emoji": THUMBS_UP})
    assert response.status_code == 302 and response.url.endswith(f"#m-{message.pk}")
    ask = bob_client.get(react_url(message), {"emoji": THUMBS_UP}).content.decode()
    assert f"Take back your {THUMBS_UP}?" in ask


def test_without_javascript_react_opens_a_searchable_picker(alice, bob, group, bob_client):
    message = say(group, alice)
    page = bob_client.get(group.get_absolute_url()).content.decode()
    assert (
        f'<noscript><a class="reaction reaction--add" href="{react_url(message)}">React</a></noscript>'
        in page
    )
    picker = bob_client.get(react_url(message)).content.decode()
    assert 'aria-label="thumbs up"' in picker and "Smileys &amp; emotion" in picker
    found = bob_client.get(react_url(message), {"q": "pizz"}).content.decode()
    assert 'value="🍕"' in found and 'value="😂"' not in found
    nothing = bob_client.get(react_url(message), {"q": "qwertyuiop"}).content.decode()
    assert "No emoji matches" in nothing
    refused = bob_client.post(react_url(message), {"emoji": "not an emoji"})
    assert refused.status_code == 422 and "Choose an emoji from the picker" in refused.content.decode()


@pytest.mark.parametrize("method", ["get", "post"])
def test_messages_of_rooms_i_am_not_in_are_not_found(
    alice, bob, group, direct, mallory_client, bob_client, method
):
    """Someone else's room, or a message id of another room under mine: 404, nothing stored."""
    message = say(group, alice)
    send = getattr(mallory_client, method)
    assert send(react_url(message), {"emoji": THUMBS_UP}).status_code == 404
    in_direct = say(direct, alice)
    forged = reverse("rooms:react", args=[group.pk, in_direct.pk])
    assert getattr(bob_client, method)(forged, {"emoji": THUMBS_UP}).status_code == 404
    assert not Reaction.objects.exists()


def test_the_page_s_quick_row_is_the_server_s(settings):
    """static/js/reactions.js offers the same six as rooms/emoji.py, spelled the same way."""
    script = (Path(settings.BASE_DIR) / "static" / "js" / "reactions.js").read_text()
    script = script[script.index("export const QUICK = [") : script.index("];")]
    listed = re.findall(r'\["((?:\\u\{?[0-9A-F]+\}?)+|[^"\\]+)", "', script)
    decoded = [re.sub(r"\\u\{?([0-9A-F]+)\}?", lambda m: chr(int(m[1], 16)), item) for item in listed]
    assert decoded == list(emoji_data.QUICK_REACTIONS)
    assert all(emoji_data.canonical(e) == e for e in emoji_data.QUICK_REACTIONS)


# Live, over a real WebSocket


@pytest.mark.django_db(transaction=True)
async def test_a_reaction_reaches_the_room_live_and_a_quiet_toast_its_author(
    alice, bob, carol, group, direct
):
    """Pages showing the room get the chips; nobody else gets anything, but the author of a
    message in a direct room a toast (not when the room is muted)."""
    carol_socket = await connected(carol, group)
    alice_elsewhere = await connected(alice, group)
    in_group = (await apost(group, alice, "Dinner at eight")).message
    await delivered(carol_socket)
    await delivered(alice_elsewhere)
    await sync_to_async(react)(group, bob, in_group)
    to_carol = await delivered(carol_socket)
    assert len(to_carol) == 1
    assert f'id="m-{in_group.pk}-reactions"' in html(to_carol) and 'hx-swap-oob="true"' in html(to_carol)
    assert f'data-reactor="{bob.pk}"' in html(to_carol) and "toast" not in html(to_carol)
    to_alice = await delivered(alice_elsewhere)
    assert "toast" not in html(to_alice)  # a group: reactions never notify

    in_direct = (await apost(direct, alice, "Landed safely")).message
    await delivered(alice_elsewhere)
    await sync_to_async(react)(direct, bob, in_direct, HEART)
    received = await delivered(alice_elsewhere)
    assert "-reactions" not in html(received)  # her page shows the group, not the direct room
    assert "toast--reaction" in html(received) and "data-quiet" in html(received)
    assert json_frames(received, "unread") == []  # and it is no unread message

    await sync_to_async(lambda: services.do_set_muted(membership(direct, alice), True))()
    await delivered(alice_elsewhere)
    await sync_to_async(react)(direct, bob, in_direct)
    assert await delivered(alice_elsewhere) == []
    for socket in (carol_socket, alice_elsewhere):
        await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_page_that_was_away_catches_up_on_reactions(alice, bob, group):
    message = (await apost(group, alice, "Dinner at eight")).message
    since = await sync_to_async(lambda: timezone.now().isoformat())()
    await sync_to_async(react)(group, bob, message)
    socket = await connected(alice, group)
    await socket.send_to(
        text_data=json.dumps(
            {"type": "resume", "room": group.pk, "last_seq": message.seq, "oldest_seq": 1, "since": since}
        )
    )
    body = html(await answered(socket))
    assert f'id="m-{message.pk}"' in body and f'data-reactor="{bob.pk}"' in body
    await socket.disconnect()
