"""A rep's view: their open deals by what the next step asks of them today.

This view is about now: the wall clock decides what is due. A next step is overdue once its time has
passed (or deal.next_step_overdue was raised for it, as the board marks it), due today when it falls due
later on today's date (UTC), upcoming after that; an open deal without a next step in its current stage is
listed apart. A deal.next_step_overdue that is `from_history` (it fell due before the deal was imported)
marks nothing here; a next step still open and past its time is overdue whatever its origin.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from services.insights.config import InsightsPlaybook
from services.insights.domain import Card, Timeline, card, current_stage

Due = Literal["overdue", "due_today", "upcoming", "none"]


class RepView(BaseModel):
    owner: str
    team: str
    generated_at: datetime
    open_deals: int
    overdue: list[Card]  # most overdue first
    due_today: list[Card]  # soonest first
    upcoming: list[Card]  # soonest first
    without_next_step: list[Card]  # longest in their stage first


def due(shown: Card, now: datetime) -> Due:
    step = shown.next_step
    if step is None:
        return "none"
    if shown.next_step_overdue or step.due_at <= now:
        return "overdue"
    if step.due_at.astimezone(UTC).date() == now.astimezone(UTC).date():
        return "due_today"
    return "upcoming"


def rep_view(timelines: Iterable[Timeline], owner: str, now: datetime, playbook: InsightsPlaybook) -> RepView:
    groups: dict[Due, list[Card]] = {"overdue": [], "due_today": [], "upcoming": [], "none": []}
    for timeline in timelines:
        if timeline.owner != owner or current_stage(timeline) not in playbook.stage_probability:
            continue
        shown = card(timeline, now, playbook)
        if shown is not None:
            groups[due(shown, now)].append(shown)

    def by_due(shown: Card) -> tuple[datetime, str]:
        assert shown.next_step is not None
        return shown.next_step.due_at, shown.deal_id

    return RepView(
        owner=owner,
        team=playbook.team_of(owner),
        generated_at=now,
        open_deals=sum(len(cards) for cards in groups.values()),
        overdue=sorted(groups["overdue"], key=by_due),
        due_today=sorted(groups["due_today"], key=by_due),
        upcoming=sorted(groups["upcoming"], key=by_due),
        without_next_step=sorted(groups["none"], key=lambda c: (-c.days_in_stage, c.deal_id)),
    )
