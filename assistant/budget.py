"""A room's monthly AI budget: what its runs cost, counted in one place, and the cut-off.

- `record` is called by a run's finish (assistant/runs.py), inside the transaction that
  stores the end: one F() update of the (room, month, member, kind) row, so two processes
  finishing runs at once never lose an increment. The 80% notice is decided under the
  budget row's lock, so it is posted once a month however many runs finish together.
- `refusal` is asked before any new work (a reply, an image, a catch-up, a private ask):
  at 100% the room takes no new work until the next month (UTC) or a raised budget.
- Usage is what the API reported; when a server sends none, the run's tokens are
  estimated (four characters a token) and counted as estimated too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.dates import MONTHS
from django.utils.translation import gettext as _

from accounts.models import User
from assistant.models import AssistantRun, BudgetUnit, BudgetUsage, RoomBudget
from rooms.access import can_administer, is_owner
from rooms.models import Room
from rooms.services import do_post_system_message

WARN_AT = 0.8
BUDGET_USED_UP = "budget"  # the refusal's code (assistant.services.REFUSAL_CODES)
# The largest budget one can set (the field is a 32-bit positive integer).
LIMIT_MAX = 2_000_000_000


def month_start(now: dt.datetime | None = None) -> dt.date:
    now = (now or timezone.now()).astimezone(dt.UTC)
    return now.date().replace(day=1)


def used_up_text(month: dt.date) -> str:
    """What the assistant says in the room once the budget is spent (in English, like its
    other notes in the room)."""
    return f"This room's AI budget for {month.strftime('%B')} is used up."


def budget_for(room: Room) -> RoomBudget:
    try:
        return room.ai_budget
    except RoomBudget.DoesNotExist:
        return RoomBudget(room=room)


def _used(room_id: int, month: dt.date, unit: str) -> int:
    totals = BudgetUsage.objects.filter(room_id=room_id, month=month).aggregate(
        runs=Sum("runs"), tokens=Sum("tokens")
    )
    return int(totals["runs" if unit == BudgetUnit.RUNS else "tokens"] or 0)


def refusal(room: Room) -> str | None:
    """The sentence refusing new work in `room`, or None while its budget lasts."""
    budget = budget_for(room)
    if budget.limit is None:
        return None
    month = month_start()
    if _used(room.pk, month, budget.unit) >= budget.limit:
        return used_up_text(month)
    return None


def record(run: AssistantRun, *, prompt_tokens: int, completion_tokens: int, estimated: bool) -> None:
    """Count a finished run against its room's month. Called inside the finish's transaction."""
    month = month_start()
    tokens = max(prompt_tokens, 0) + max(completion_tokens, 0)
    key = {"room_id": run.room_id, "month": month, "user_id": run.requested_by_id, "kind": run.kind}
    add = {"runs": F("runs") + 1, "tokens": F("tokens") + tokens}
    if estimated:
        add["estimated_tokens"] = F("estimated_tokens") + tokens
    if not BudgetUsage.objects.filter(**key).update(**add):
        try:
            with transaction.atomic():
                BudgetUsage.objects.create(
                    **key, runs=1, tokens=tokens, estimated_tokens=tokens if estimated else 0
                )
        except IntegrityError:  # another process made the row a moment ago
            BudgetUsage.objects.filter(**key).update(**add)
    _warn_once(run.room_id, month)


def _warn_once(room_id: int, month: dt.date) -> None:
    budget = RoomBudget.objects.select_for_update().filter(room_id=room_id).first()
    if budget is None or budget.limit is None or budget.used_up_month == month:
        return
    used = _used(room_id, month, budget.unit)
    if used >= budget.limit:
        budget.warned_month = budget.used_up_month = month
        budget.save(update_fields=["warned_month", "used_up_month"])
        do_post_system_message(room_id, "ai_budget_used_up", month=month.month)
    elif used >= budget.limit * WARN_AT and budget.warned_month != month:
        budget.warned_month = month
        budget.save(update_fields=["warned_month"])
        do_post_system_message(room_id, "ai_budget_80", month=month.month)


def can_set_budget(user: User, room: Room) -> bool:
    """The group's owner, or its admins (who may change what the owner may)."""
    if room.is_private:
        return False
    if room.is_group:
        return is_owner(user, room) or can_administer(user, room)
    return True  # a direct room's two members share its budget


def do_set_budget(actor: User, room: Room, *, unit: str, limit: int | None) -> RoomBudget:
    if not can_set_budget(actor, room):
        raise PermissionDenied(_("Only the group's owner and admins can set its AI budget."))
    if unit not in BudgetUnit.values:
        raise ValidationError(_("Choose tokens or runs."), code="unit")
    if limit is not None and not 0 < limit <= LIMIT_MAX:
        raise ValidationError(
            _("A budget is a whole number above zero, or empty for no limit."), code="limit"
        )
    with transaction.atomic():
        budget, _created = RoomBudget.objects.select_for_update().get_or_create(room=room)
        if (budget.unit, budget.limit) != (unit, limit):
            # A new budget gives its notices again this month.
            budget.unit, budget.limit = unit, limit
            budget.warned_month = budget.used_up_month = None
            budget.save()
        room.ai_budget = budget
    return budget


@dataclass
class Meter:
    unit: str
    limit: int | None
    used: int
    month: dt.date
    estimated: bool
    by_kind: list[tuple[str, int]] = field(default_factory=list)
    by_member: list[tuple[str, int]] = field(default_factory=list)

    @property
    def percent(self) -> int:
        if not self.limit:
            return 0
        return min(100, round(100 * self.used / self.limit))

    @property
    def unit_display(self) -> str:
        return str(BudgetUnit(self.unit).label)

    @property
    def month_name(self) -> str:
        return str(MONTHS[self.month.month])


def meter(room: Room) -> Meter:
    """This month's use of the room's budget, by kind and by member: one query for all."""
    budget = budget_for(room)
    month = month_start()
    field_name = "runs" if budget.unit == BudgetUnit.RUNS else "tokens"
    rows = BudgetUsage.objects.filter(room=room, month=month).values_list(
        "kind", "user__display_name", "user__username", field_name, "estimated_tokens"
    )
    by_kind: dict[str, int] = {}
    by_member: dict[str, int] = {}
    estimated = False
    for kind, display_name, username, total, estimated_tokens in rows:
        by_kind[kind] = by_kind.get(kind, 0) + total
        # No one: decisions and summaries (nobody asked), or a deleted account's runs.
        name = display_name or username or _("No one in particular")
        by_member[name] = by_member.get(name, 0) + total
        estimated = estimated or estimated_tokens > 0
    names = _kind_names()
    ordered = sorted(by_kind.items(), key=lambda item: (-item[1], item[0]))
    return Meter(
        unit=budget.unit,
        limit=budget.limit,
        used=sum(by_kind.values()),
        month=month,
        estimated=estimated and budget.unit == BudgetUnit.TOKENS,
        by_kind=[(names.get(kind, kind), total) for kind, total in ordered],
        by_member=sorted(by_member.items(), key=lambda item: (-item[1], item[0])),
    )


def _kind_names() -> dict[str, str]:
    return {
        AssistantRun.Kind.REPLY: _("replies"),
        AssistantRun.Kind.IMAGE: _("images"),
        AssistantRun.Kind.CATCH_UP: _("catch-ups"),
        AssistantRun.Kind.PRIVATE: _("private asks"),
        AssistantRun.Kind.DECISION: _("decisions to speak"),
        AssistantRun.Kind.SUMMARY: _("room summaries"),
    }
