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
    QuoteLineRequest,
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
from services.proposal.config import load_playbook as load_proposal_playbook
from services.proposal.domain import price_quote
from shared.domain import Deadline, RuleBroken

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


def pending(state: Onboarding) -> dict[tuple[str, str], datetime]:
    return {(deadline.kind, deadline.key): deadline.due_at for deadline in deadlines(state)}


def announced(deadline: Deadline) -> DeadlineReached:
    return DeadlineReached(
        deal_id="d-1", stage_service="onboarding", deadline_id=deadline.id, due_at=deadline.due_at
    )


def pending_deadline(state: Onboarding, kind: str, key: str) -> Deadline:
    [deadline] = [d for d in deadlines(state) if (d.kind, d.key) == (kind, key)]
    return deadline


def reach(state: Onboarding, kind: str, key: str) -> tuple[Onboarding, list[object]]:
    deadline = pending_deadline(state, kind, key)
    decision = on_deadline(state, announced(deadline), deadline.due_at, PLAYBOOK)
    return decision.state, list(decision.events)


def reschedule(state: Onboarding, task: str, due_at: datetime) -> Onboarding:
    moved = OnboardingTaskRescheduled(deal_id="d-1", occurred_at=WON_AT, task=task, due_at=due_at)
    return on_task_rescheduled(state, moved, WON_AT, PLAYBOOK).state


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
    assert set(pending(decision.state)) == {("check_in", "day_30"), ("check_in", "day_90")}


def test_an_overdue_task_raises_at_risk_once() -> None:
    kickoff = pending_deadline(started(), "task_due", "kickoff")
    state, events = reach(started(), "task_due", "kickoff")

    [at_risk] = events
    assert isinstance(at_risk, OnboardingAtRisk)
    assert (at_risk.task, at_risk.owner_role) == ("kickoff", "customer_success_manager")
    assert ("task_due", "kickoff") not in pending(state)
    assert on_deadline(state, announced(kickoff), kickoff.due_at, PLAYBOOK).events == []


def test_check_ins_come_due_once_each() -> None:
    state = started("dealflow-seat")
    for task in ["kickoff", "technical_setup", "training", "go_live"]:
        state = on_task_completed(state, done(task, 1), WON_AT, PLAYBOOK).state

    state, events = reach(state, "check_in", "day_30")

    assert [type(event) for event in events] == [CheckInDue]
    assert set(pending(state)) == {("check_in", "day_90")}


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

    state = reschedule(started(), "kickoff", new_due)

    assert pending(state)[("task_due", "kickoff")] == new_due


def test_a_task_rescheduled_while_its_deadline_is_announced_is_at_risk_at_the_new_date_only() -> None:
    # The old due date passed and its announcement is on its way when the task is moved: the announcement
    # names the old date, so it changes nothing, and the new date raises at_risk when it is missed.
    old = pending_deadline(started(), "task_due", "kickoff")
    new_due = WON_AT + timedelta(days=9)
    state = reschedule(started(), "kickoff", new_due)

    stale = on_deadline(state, announced(old), old.due_at + timedelta(minutes=1), PLAYBOOK)
    assert (stale.state, stale.events) == (state, [])
    assert pending(stale.state)[("task_due", "kickoff")] == new_due

    missed, events = reach(stale.state, "task_due", "kickoff")
    [at_risk] = events
    assert isinstance(at_risk, OnboardingAtRisk)
    assert (at_risk.task, at_risk.due_at) == ("kickoff", new_due)
    assert ("task_due", "kickoff") not in pending(missed)


def test_a_task_at_risk_that_is_rescheduled_is_watched_again_at_its_new_date() -> None:
    at_risk, _ = reach(started(), "task_due", "kickoff")
    new_due = WON_AT + timedelta(days=9)

    state = reschedule(at_risk, "kickoff", new_due)

    assert pending(state)[("task_due", "kickoff")] == new_due
    assert reschedule(at_risk, "kickoff", at_risk.task("kickoff").due_at) == at_risk, "same date: no change"


@pytest.mark.parametrize("deadline_id", ["task:kickoff", "check_in:day_30", "task_due/kickoff", "??"])
def test_an_id_that_is_no_pending_deadline_changes_nothing(deadline_id: str) -> None:
    state = started()
    event = DeadlineReached(deal_id="d-1", stage_service="onboarding", deadline_id=deadline_id, due_at=WON_AT)

    decision = on_deadline(state, event, WON_AT + timedelta(days=100), PLAYBOOK)

    assert (decision.state, decision.events) == (state, [])


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


def test_every_product_the_expansion_rules_offer_can_be_quoted_in_every_currency_the_platform_is() -> None:
    # An offer the price list lacks opens an expansion deal whose every quote is refused (unknown_product).
    proposal = load_proposal_playbook()
    expansion = PLAYBOOK.expansion
    offers = {rule.offer for rule in expansion.cross_sell}
    if expansion.seat_utilisation is not None:
        offers.add(expansion.seat_utilisation.offer)

    for product in sorted(offers):
        for currency in sorted(proposal.price_list["dealflow-platform"]):
            quote = price_quote(1, currency, [QuoteLineRequest(product=product, quantity=1)], 0, proposal)
            assert quote.total.amount_minor > 0, (product, currency)
