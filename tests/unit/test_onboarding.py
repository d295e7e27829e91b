from datetime import UTC, datetime, timedelta

import pytest

from contracts.events import (
    CheckInDue,
    Company,
    Contact,
    DeadlineReached,
    DealWon,
    Money,
    OnboardingAtRisk,
    OnboardingCompleted,
    OnboardingStarted,
    OnboardingTaskCompleted,
    OnboardingTaskRescheduled,
    OnboardingTaskSkipped,
    QuoteLine,
    UpsellIdentified,
    UsageReported,
)
from services.onboarding.config import load_playbook
from services.onboarding.domain import (
    Onboarding,
    deadlines,
    on_deadline,
    on_deal_won,
    on_task_completed,
    on_task_rescheduled,
    on_task_skipped,
    on_usage_reported,
)
from shared.domain import RuleBroken

PLAYBOOK = load_playbook()
WON_AT = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


def won(*products: str, amount: int = 100) -> DealWon:
    return DealWon(
        deal_id="d-1",
        customer=Company(name="B"),
        contact=Contact(email="a@b.example"),
        owner="rep",
        lines=[
            QuoteLine(product=p, quantity=1, unit_price_minor=amount) for p in products or ("dealflow-seat",)
        ],
        amount=Money(amount_minor=amount, currency="EUR"),
        won_at=WON_AT,
        stage_history=[],
    )


def started(*products: str, amount: int = 100) -> Onboarding:
    return on_deal_won(None, won(*products, amount=amount), WON_AT, PLAYBOOK).state


def done(task: str, days: int) -> OnboardingTaskCompleted:
    return OnboardingTaskCompleted(deal_id="d-1", task=task, occurred_at=WON_AT + timedelta(days=days))


def reach(state: Onboarding, deadline_id: str) -> tuple[Onboarding, list[object]]:
    due = deadlines(state)[deadline_id]
    event = DeadlineReached(deal_id="d-1", stage_service="onboarding", deadline_id=deadline_id, due_at=due)
    decision = on_deadline(state, event, due, PLAYBOOK)
    return decision.state, list(decision.events)


def test_the_plan_comes_from_the_template_with_due_dates_relative_to_the_win() -> None:
    [event] = on_deal_won(None, won(), WON_AT, PLAYBOOK).events

    assert isinstance(event, OnboardingStarted)
    assert event.template == "standard"
    assert [(task.task, task.due_at - WON_AT) for task in event.plan] == [
        ("kickoff", timedelta(days=3)),
        ("technical_setup", timedelta(days=10)),
        ("training", timedelta(days=14)),
        ("go_live", timedelta(days=21)),
    ]


@pytest.mark.parametrize(
    ("products", "amount", "template"),
    [
        (("onboarding-package",), 100, "enterprise"),
        (("dealflow-seat",), 6_000_000, "enterprise"),
        ((), 100, "standard"),
    ],
)
def test_the_first_matching_rule_chooses_the_template(
    products: tuple[str, ...], amount: int, template: str
) -> None:
    assert started(*products, amount=amount).template == template


def test_a_second_deal_won_for_the_same_deal_creates_nothing() -> None:
    state = started()

    assert on_deal_won(state, won(), WON_AT, PLAYBOOK).events == []


def test_completing_on_time_gives_time_to_value_on_time_ratio_check_ins_and_cross_sell() -> None:
    state = started("dealflow-platform")
    for task, day in [("kickoff", 2), ("technical_setup", 8), ("go_live", 20)]:
        decision = on_task_completed(state, done(task, day), WON_AT, PLAYBOOK)
        assert decision.events == []
        state = decision.state

    decision = on_task_completed(state, done("training", 16), WON_AT + timedelta(days=21), PLAYBOOK)

    completed, upsell = decision.events
    assert isinstance(completed, OnboardingCompleted)
    assert completed.time_to_value_seconds == 20 * 86400
    assert completed.on_time_ratio == 0.75  # training was due on day 14
    assert [check_in.name for check_in in completed.check_ins] == ["day_30", "day_90"]
    assert isinstance(upsell, UpsellIdentified)
    assert (upsell.expansion_deal_id, upsell.product) == ("d-1-x1", "analytics-addon")
    assert set(deadlines(decision.state)) == {"check_in:day_30", "check_in:day_90"}


def test_an_overdue_task_raises_at_risk_once() -> None:
    state, events = reach(started(), "task:kickoff")

    [at_risk] = events
    assert isinstance(at_risk, OnboardingAtRisk)
    assert (at_risk.task, at_risk.owner_role) == ("kickoff", "customer_success_manager")
    assert "task:kickoff" not in deadlines(state)


def test_check_ins_come_due_once_each() -> None:
    state = started("dealflow-seat")
    for task in ["kickoff", "technical_setup", "training", "go_live"]:
        state = on_task_completed(state, done(task, 1), WON_AT, PLAYBOOK).state

    state, events = reach(state, "check_in:day_30")

    assert [type(event) for event in events] == [CheckInDue]
    assert set(deadlines(state)) == {"check_in:day_90"}


def test_running_out_of_seats_identifies_an_upsell_once() -> None:
    usage = UsageReported(deal_id="d-1", occurred_at=WON_AT, seats_used=19, seats_purchased=20)

    first = on_usage_reported(started(), usage, WON_AT, PLAYBOOK)
    second = on_usage_reported(first.state, usage, WON_AT, PLAYBOOK)

    [upsell] = first.events
    assert isinstance(upsell, UpsellIdentified)
    assert upsell.product == "dealflow-seat"
    assert second.events == []


def test_rescheduling_moves_the_deadline() -> None:
    new_due = WON_AT + timedelta(days=9)
    moved = OnboardingTaskRescheduled(deal_id="d-1", occurred_at=WON_AT, task="kickoff", due_at=new_due)

    state = on_task_rescheduled(started(), moved, WON_AT, PLAYBOOK).state

    assert deadlines(state)["task:kickoff"] == new_due


@pytest.mark.parametrize(
    ("activity", "code"),
    [
        (OnboardingTaskCompleted(deal_id="d-1", task="party", occurred_at=WON_AT), "unknown_task"),
        (
            OnboardingTaskSkipped(deal_id="d-1", task="go_live", reason="no", occurred_at=WON_AT),
            "required_task",
        ),
    ],
)
def test_rule_breaks_are_refused(activity: object, code: str) -> None:
    handler = on_task_completed if isinstance(activity, OnboardingTaskCompleted) else on_task_skipped

    with pytest.raises(RuleBroken) as caught:
        handler(started(), activity, WON_AT, PLAYBOOK)  # type: ignore[arg-type]

    assert caught.value.code == code
