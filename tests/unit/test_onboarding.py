from datetime import UTC, datetime, timedelta

import pytest

from contracts.events import Company, Contact, DealWon, Money, OnboardingCompleted, OnboardingTaskCompleted
from services.onboarding.domain import on_deal_won, on_task_completed
from shared.domain import RuleBroken

WON_AT = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
WON = DealWon(
    deal_id="d-1",
    customer=Company(name="B"),
    contact=Contact(email="a@b.example"),
    owner="rep",
    lines=[],
    amount=Money(amount_minor=100, currency="EUR"),
    won_at=WON_AT,
    stage_history=[],
)


def done(task: str, days: int) -> OnboardingTaskCompleted:
    return OnboardingTaskCompleted(deal_id="d-1", task=task, occurred_at=WON_AT + timedelta(days=days))


def test_a_won_deal_gets_a_plan_with_due_dates_relative_to_the_win() -> None:
    decision = on_deal_won(None, WON, WON_AT)

    [started] = decision.events
    assert [(task.task, task.due_at - WON_AT) for task in started.plan] == [  # type: ignore[attr-defined]
        ("kickoff", timedelta(days=3)),
        ("technical_setup", timedelta(days=10)),
        ("training", timedelta(days=14)),
        ("go_live", timedelta(days=21)),
    ]


def test_a_second_deal_won_for_the_same_deal_creates_nothing() -> None:
    state = on_deal_won(None, WON, WON_AT).state

    assert on_deal_won(state, WON, WON_AT).events == []


def test_completing_every_task_completes_the_onboarding_with_time_to_value() -> None:
    state = on_deal_won(None, WON, WON_AT).state
    for task, day in [("kickoff", 2), ("technical_setup", 8), ("go_live", 20)]:
        decision = on_task_completed(state, done(task, day), WON_AT)
        assert decision.events == []
        state = decision.state

    decision = on_task_completed(state, done("training", 21), WON_AT + timedelta(days=21))

    [completed] = decision.events
    assert isinstance(completed, OnboardingCompleted)
    assert completed.time_to_value_seconds == 20 * 86400


def test_an_unknown_task_is_refused() -> None:
    with pytest.raises(RuleBroken) as caught:
        on_task_completed(on_deal_won(None, WON, WON_AT).state, done("party", 1), WON_AT)

    assert (caught.value.code, caught.value.field) == ("unknown_task", "task")
