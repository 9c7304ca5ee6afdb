"""Web search: with SEARCH_URL pointing at a SearxNG instance, the assistant may search
before it answers, the room sees that it does, and the reply lists its sources."""

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from assistant import runner, services, streaming
from assistant.models import AssistantRun
from assistant.search import search, sources_markdown
from rooms import services as room_services
from rooms.models import Message
from tests.conftest import membership
from tests.fake_searxng import FakeSearxng

RESULTS = [
    {
        "title": "Ridge trail closed for winter",
        "url": "https://parks.example.org/ridge",
        "content": "Closed Nov-Mar.",
    },
    {
        "title": "Valley loop <b>open</b> [all year]",
        "url": "https://hikes.example.com/valley",
        "content": "Open.",
    },
]


@pytest.fixture
def searx(settings):
    with FakeSearxng() as fake:
        fake.results(RESULTS)
        settings.SEARCH_URL = fake.url + "/search"
        yield fake


def ask(room, user, body="@assistant is the ridge trail open this winter?"):
    room_services.do_post_message(membership(room, user), body)
    runner.run_pending()
    return Message.objects.get(room=room, kind=Message.Kind.ASSISTANT)


def test_it_searches_the_web_and_cites_its_sources(fake_openai, searx, alice, group, monkeypatch):
    fake_openai.queue_tool_call("web_search", {"query": "ridge trail winter closure"})
    fake_openai.queue(text="The ridge trail is closed until March [1]; the valley loop stays open [2].")
    shown = []

    def recording_show_note(claimed, note):
        shown.append((note, Message.objects.get(pk=claimed.message_id).state))
        real_show_note(claimed, note)

    real_show_note = streaming.show_note
    monkeypatch.setattr(streaming, "show_note", recording_show_note)
    reply = ask(group, alice)
    assert searx.queries == ["ridge trail winter closure"]
    first, second = fake_openai.reply_requests()
    assert first["tools"][0]["function"]["name"] == "web_search"
    assert "tools" not in second
    tool_output = second["messages"][-1]
    assert tool_output["role"] == "tool" and "Ridge trail closed for winter" in tool_output["content"]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "web_search"
    # The room saw that it searched, then the answer with numbered links to its sources.
    assert shown == [("Searching the web for “ridge trail winter closure”…", Message.State.STREAMING)]
    assert reply.state == Message.State.DONE
    assert "closed until March [1]" in reply.body
    assert "1. [Ridge trail closed for winter](https://parks.example.org/ridge)" in reply.body
    assert '<a href="https://hikes.example.com/valley"' in reply.html
    # A result's title is text, never HTML or links of its own.
    assert "<b>open</b>" not in reply.html and "&lt;b&gt;open&lt;/b&gt;" in reply.html


def test_without_a_search_url_no_tool_is_offered(fake_openai, alice, group):
    ask(group, alice)
    (request,) = fake_openai.reply_requests()
    assert "tools" not in request


def test_a_search_service_that_fails_still_gets_an_answer(fake_openai, searx, alice, group):
    searx.status = 502
    fake_openai.queue_tool_call("web_search", {"query": "ridge trail"})
    fake_openai.queue(text="I could not search just now; as far as I know it closes in winter.")
    reply = ask(group, alice)
    assert reply.state == Message.State.DONE and "Sources" not in reply.body
    assert "did not answer" in fake_openai.reply_requests()[1]["messages"][-1]["content"]
    assert AssistantRun.objects.get(kind="reply").status == "done"


def test_search_results_are_cleaned(searx):
    searx.results(
        [
            {"title": "Fine", "url": "https://ok.example/a b)", "content": "x"},
            {"title": "Script", "url": "javascript:alert(1)", "content": "x"},
        ]
    )
    output, sources = search("  a   query ")
    assert searx.queries == ["a query"]
    assert [s.url for s in sources] == ["https://ok.example/a b)"]
    assert "javascript:" not in output
    assert "(https://ok.example/a%20b%29)" in sources_markdown(sources)


def test_the_owner_can_turn_web_search_off_for_the_room(fake_openai, searx, alice, alice_client, group):
    settings_url = reverse("rooms:settings", args=[group.pk])
    page = alice_client.get(settings_url).content.decode()
    assert "The assistant may search the web" in page
    response = alice_client.post(
        reverse("assistant:settings", args=[group.pk]), {"name": "Assistant", "reply_mode": "mention"}
    )
    assert response.status_code == 302
    note = Message.objects.filter(room=group, kind=Message.Kind.SYSTEM).latest("seq")
    assert note.body == "Alice Liddell turned off the assistant’s web search"
    ask(group, alice)
    assert "tools" not in fake_openai.reply_requests()[0]


def test_a_member_cannot_change_web_search(searx, alice, bob, bob_client, group):
    page = bob_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert "The assistant may search the web" not in page
    with pytest.raises(PermissionDenied):
        services.do_update_assistant(
            bob, group, name="Assistant", personality="", reply_mode="auto", web_search=False
        )
    assert services.settings_for(group).web_search is True


def test_without_a_search_url_there_is_no_switch(alice_client, group):
    page = alice_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert "The assistant may search the web" not in page


def test_a_server_without_tools_still_answers(fake_openai, searx, alice, group):
    fake_openai.queue(status=400, message="tools are not supported by this model")
    fake_openai.queue(text="Without search: probably closed in winter.")
    reply = ask(group, alice)
    first, second = fake_openai.reply_requests()
    assert "tools" in first and "tools" not in second
    assert reply.state == Message.State.DONE and reply.body == "Without search: probably closed in winter."
    assert searx.queries == []
