"""A room's monthly AI budget: counted at each run's finish, the 80% notice once, the
refusal at 100%, the next month, and the meter in the room's settings."""

import datetime as dt
import threading

import pytest
from django.db import close_old_connections, connection, transaction
from django.urls import reverse

from assistant import asking, budget, runner
from assistant.models import AssistantRun, BudgetUsage, PrivateAnswer, RoomBudget
from rooms import services as rooms
from rooms.models import Message
from tests.conftest import HTMX, membership


def ask(group, user, text="@assistant hi"):
    rooms.do_post_message(membership(group, user), text)
    runner.run_pending()


def system_texts(room):
    return list(
        Message.objects.filter(room=room, kind="system", event__startswith="ai_budget").values_list(
            "body", flat=True
        )
    )


def month_name():
    return budget.month_start().strftime("%B")


def test_runs_count_by_kind_and_member_and_the_meter_shows_them(fake_openai, alice, bob, alice_client, group):
    ask(group, alice)
    ask(group, bob)
    asking.do_ask_privately(membership(group, bob), "private question")
    runner.run_pending()
    rows = {(r.user_id, r.kind): r for r in BudgetUsage.objects.all()}
    assert {key: r.runs for key, r in rows.items()} == {
        (alice.pk, "reply"): 1,
        (bob.pk, "reply"): 1,
        (bob.pk, "private"): 1,
    }
    # Tokens are what the API reported: the run's prompt and completion tokens.
    for run in AssistantRun.objects.all():
        usage = rows[(run.requested_by_id, run.kind)]
        assert usage.tokens == run.prompt_tokens + run.completion_tokens and usage.estimated_tokens == 0
    page = alice_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert "AI budget" in page and "no limit" in page and "private asks" in page and "bob" in page


def test_usage_is_estimated_and_marked_when_the_server_reports_none(fake_openai, alice, alice_client, group):
    fake_openai.queue(text="a reply without usage", no_usage=True)
    ask(group, alice)
    usage = BudgetUsage.objects.get()
    assert usage.tokens > 0 and usage.estimated_tokens == usage.tokens
    page = alice_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert "partly estimated" in page


def test_80_percent_notice_once_then_used_up_and_the_refusal(fake_openai, alice, bob, alice_client, group):
    budget.do_set_budget(alice, group, unit="runs", limit=5)
    for _ in range(3):
        ask(group, bob)
    assert system_texts(group) == []
    ask(group, bob)  # 4 of 5
    assert system_texts(group) == [f"This room has used 80% of its AI budget for {month_name()}."]
    ask(group, bob)  # 5 of 5
    assert system_texts(group)[-1] == f"This room’s AI budget for {month_name()} is used up."
    assert len(system_texts(group)) == 2

    # No new work: a mention is refused in the room, saying why; nothing asked of the model.
    asked = len(fake_openai.chat_requests())
    ask(group, bob)
    refused = Message.objects.filter(room=group, kind="assistant").latest("seq")
    assert (
        refused.state == "failed" and refused.note == f"This room's AI budget for {month_name()} is used up."
    )
    assert len(fake_openai.chat_requests()) == asked
    # Nor a private ask or a catch-up.
    response = alice_client.post(
        reverse("assistant:ask_privately", args=[group.pk]), {"question": "hi"}, **HTMX
    )
    assert response.status_code == 422 and "is used up" in response.content.decode()
    assert not PrivateAnswer.objects.exists()
    # The meter shows it.
    page = alice_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert "5 of 5 runs used" in page and 'value="100"' in page

    # A raised budget takes work again.
    budget.do_set_budget(alice, group, unit="runs", limit=10)
    ask(group, bob)
    assert Message.objects.filter(room=group, kind="assistant").latest("seq").state == "done"


def test_in_always_mode_a_used_up_budget_stays_quiet(fake_openai, alice, bob, group):
    from assistant.services import do_update_assistant

    do_update_assistant(alice, group, name="Assistant", personality="", reply_mode="always")
    budget.do_set_budget(alice, group, unit="runs", limit=1)
    ask(group, bob, "hello")
    replies = Message.objects.filter(room=group, kind="assistant").count()
    ask(group, bob, "hello again")
    assert Message.objects.filter(room=group, kind="assistant").count() == replies


def test_the_next_month_starts_afresh(fake_openai, alice, bob, group):
    budget.do_set_budget(alice, group, unit="runs", limit=1)
    ask(group, bob)
    assert budget.refusal(group)
    # Everything so far was last month's.
    last_month = (budget.month_start() - dt.timedelta(days=1)).replace(day=1)
    BudgetUsage.objects.update(month=last_month)
    RoomBudget.objects.update(warned_month=last_month, used_up_month=last_month)
    assert budget.refusal(group) is None
    ask(group, bob)
    assert Message.objects.filter(room=group, kind="assistant").latest("seq").state == "done"
    assert BudgetUsage.objects.get(month=budget.month_start()).runs == 1
    # And its notices come again, once, in the new month.
    assert system_texts(group)[-1].endswith("is used up.")


def test_months_are_utc_months():
    assert budget.month_start(dt.datetime(2026, 11, 30, 23, 59, tzinfo=dt.UTC)) == dt.date(2026, 11, 1)
    assert budget.month_start(dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)) == dt.date(2026, 12, 1)
    # 00:30 on 1 December in Paris is still November in UTC.
    paris = dt.timezone(dt.timedelta(hours=1))
    assert budget.month_start(dt.datetime(2026, 12, 1, 0, 30, tzinfo=paris)) == dt.date(2026, 11, 1)


def test_only_the_owner_and_admins_set_it_and_bad_input_is_refused(
    alice, bob, alice_client, bob_client, group
):
    url = reverse("assistant:set_budget", args=[group.pk])
    response = bob_client.post(url, {"unit": "runs", "limit": "3"}, follow=True)
    assert "Only the group" in response.content.decode() and not RoomBudget.objects.exists()
    for data in (
        {"unit": "runs", "limit": "-1"},
        {"unit": "coins", "limit": "3"},
        {"unit": "runs", "limit": "x"},
    ):
        response = alice_client.post(url, data)  # each error: test_a_bad_budget_is_a_422_…
        assert response.status_code == 422 and not RoomBudget.objects.filter(limit__isnull=False).exists()
    alice_client.post(url, {"unit": "tokens", "limit": "50000"})
    assert RoomBudget.objects.get().limit == 50000
    alice_client.post(url, {"unit": "tokens", "limit": ""})
    assert RoomBudget.objects.get().limit is None  # unlimited again
    assert bob_client.get(reverse("rooms:settings", args=[group.pk])).status_code == 200


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_concurrent_finishes_never_lose_an_increment(alice, bob, group):
    """Runs finishing at once in several processes (threads with their own PostgreSQL
    connections here): every one counted, and the 80% notice posted once."""
    budget.do_set_budget(alice, group, unit="runs", limit=10)
    assert connection.vendor == "postgresql"
    runs = [AssistantRun.objects.create(room=group, requested_by=bob, status="done") for _ in range(8)]
    start = threading.Barrier(len(runs))
    errors = []

    def finish(run):
        try:
            start.wait(timeout=10)
            with transaction.atomic():
                budget.record(run, prompt_tokens=100, completion_tokens=10, estimated=False)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=finish, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    usage = BudgetUsage.objects.get()
    assert (usage.runs, usage.tokens) == (8, 880)
    assert system_texts(group) == [f"This room has used 80% of its AI budget for {month_name()}."]


def test_retry_of_a_refusal_does_not_get_round_a_used_up_budget(fake_openai, alice, bob, bob_client, group):
    """The refusal is a failed reply with Retry: pressing it must not start the work the
    budget refused."""
    budget.do_set_budget(alice, group, unit="runs", limit=1)
    ask(group, bob)
    ask(group, bob)  # refused: used up
    refused = Message.objects.filter(room=group, kind="assistant").latest("seq")
    assert refused.state == "failed"
    asked = len(fake_openai.chat_requests())
    response = bob_client.post(reverse("assistant:retry", args=[group.pk, refused.pk]), **HTMX)
    runner.run_pending()
    assert response.status_code == 422 and "is used up" in response.content.decode()
    assert len(fake_openai.chat_requests()) == asked
    assert AssistantRun.objects.filter(status__in=("queued", "running", "done"), kind="reply").count() == 1


@pytest.mark.parametrize(
    "data, error",
    [
        ({"unit": "runs", "limit": "-1"}, "greater than or equal to 1"),
        ({"unit": "runs", "limit": "0"}, "greater than or equal to 1"),
        ({"unit": "runs", "limit": "99999999999999999999"}, "less than or equal to"),
        ({"unit": "runs", "limit": "ten"}, "whole number"),
        ({"unit": "coins", "limit": "3"}, "valid choice"),
        ({"limit": "3"}, "required"),
    ],
)
def test_a_bad_budget_is_a_422_showing_the_form_with_its_error(alice, alice_client, group, data, error):
    response = alice_client.post(reverse("assistant:set_budget", args=[group.pk]), data)
    page = response.content.decode()
    assert response.status_code == 422 and 'id="ai-budget"' in page
    assert error in page and "field--invalid" in page
    assert not RoomBudget.objects.filter(limit__isnull=False).exists()


def test_a_member_who_may_not_set_it_gets_a_403(alice, bob_client, mallory_client, group):
    url = reverse("assistant:set_budget", args=[group.pk])
    response = bob_client.post(url, {"unit": "runs", "limit": "3"})
    assert response.status_code == 403 and "Only the group" in response.content.decode()
    assert mallory_client.post(url, {"unit": "runs", "limit": "3"}).status_code == 404
    assert not RoomBudget.objects.exists()
