"""A rep's view: their open deals by what the next step asks of them now (the wall clock decides)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.events import NextStep
from services.insights import domain
from services.insights.api import rep_page_html
from services.insights.config import load_playbook
from services.insights.reps import rep_view

PLAYBOOK = load_playbook()
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
OWNER = "anna.schmidt"


def open_deal(
    deal_id: str,
    due_at: datetime | None,
    *,
    owner: str = OWNER,
    stage: str = "proposal",
    **facts: object,
) -> domain.Timeline:
    entered = datetime(2026, 3, 1, 9, tzinfo=UTC)
    step = None if due_at is None else NextStep(action="send_proposal", due_at=due_at)
    return domain.Timeline(
        deal_id=deal_id,
        owner=owner,
        company=f"Company {deal_id}",
        visits=[domain.Visit(stage=stage, entered_at=entered)],
        next_step=step,
        next_step_at=None if step is None else entered,
        **facts,
    )


def ids(cards: list[domain.Card]) -> list[str]:
    return [card.deal_id for card in cards]


def test_open_deals_are_overdue_due_today_upcoming_or_without_a_next_step() -> None:
    timelines = [
        open_deal("late-2", NOW - timedelta(hours=1)),  # earlier today, past: overdue
        open_deal("late-1", NOW - timedelta(days=2)),
        open_deal("today", NOW + timedelta(hours=3)),
        open_deal("tomorrow", NOW + timedelta(hours=13)),  # 01:00 tomorrow (UTC)
        open_deal("next-week", NOW + timedelta(days=7)),
        open_deal("none", None),
        open_deal("someone-else", NOW - timedelta(days=1), owner="luc.martin"),
        open_deal("won", NOW - timedelta(days=1), stage="won"),
    ]
    view = rep_view(timelines, OWNER, NOW, PLAYBOOK)
    assert ids(view.overdue) == ["late-1", "late-2"]  # most overdue first
    assert ids(view.due_today) == ["today"]
    assert ids(view.upcoming) == ["tomorrow", "next-week"]
    assert ids(view.without_next_step) == ["none"]
    assert (view.open_deals, view.team) == (6, "emea")


def test_a_step_raised_overdue_by_its_stage_service_is_overdue_even_before_its_time_here() -> None:
    step_due_later = open_deal("raised", NOW + timedelta(days=1))
    raised = step_due_later.model_copy(update={"overdue_step": step_due_later.next_step})
    assert ids(rep_view([raised], OWNER, NOW, PLAYBOOK).overdue) == ["raised"]


def test_a_step_of_an_earlier_stage_no_longer_counts() -> None:
    moved_on = open_deal("moved", NOW + timedelta(days=1)).model_copy(
        update={
            "visits": [
                domain.Visit(stage="proposal", entered_at=datetime(2026, 3, 1, 9, tzinfo=UTC)),
                domain.Visit(stage="negotiation", entered_at=datetime(2026, 3, 5, 9, tzinfo=UTC)),
            ]
        }
    )
    assert ids(rep_view([moved_on], OWNER, NOW, PLAYBOOK).without_next_step) == ["moved"]


def test_the_rep_page_escapes_what_the_events_carry() -> None:
    hostile = open_deal("x", None).model_copy(update={"company": "<script>alert(1)</script>"})
    html = rep_page_html(rep_view([hostile], OWNER, NOW, PLAYBOOK), "EUR")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'id="without_next_step"' in html
