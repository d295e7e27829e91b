from datetime import UTC, date, datetime, timedelta

import pytest

from contracts.events import (
    Company,
    Contact,
    DeadlineReached,
    DiscoveryCallLogged,
    LeadDisqualified,
    LeadNurtured,
    LeadQualified,
    Money,
    NextStep,
    NextStepScheduled,
    NurtureRequested,
    ProspectIdentified,
    QualificationReopened,
    SlaBreached,
    TouchLogged,
)
from services.qualification.config import load_playbook
from services.qualification.domain import (
    Qualification,
    Status,
    deadlines,
    on_deadline,
    on_discovery_call_logged,
    on_nurture_requested,
    on_prospect_identified,
    on_touch_logged,
)
from shared.domain import Deadline, Decision, RuleBroken

PLAYBOOK = load_playbook()
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BANT_MET = {"budget": True, "authority": True, "need": True, "timeline": True}


def prospect(tier: str = "C", now: datetime = NOW) -> ProspectIdentified:
    return ProspectIdentified(
        deal_id="d-1",
        lead_id="d-1",
        contact=Contact(email="a@b.example"),
        company=Company(name="B"),
        source="web_form",
        marketing_consent=True,
        fit_score=90,
        tier=tier,
        owner="rep",
        next_step=NextStep(action="first_touch", due_at=now + timedelta(hours=4)),
    )


def opened(tier: str = "C") -> Qualification:
    return on_prospect_identified(None, prospect(tier), NOW, PLAYBOOK).state


def touch(outcome: str = "no_answer", **fields: object) -> TouchLogged:
    return TouchLogged.model_validate(
        {"deal_id": "d-1", "occurred_at": NOW.isoformat(), "channel": "call", "outcome": outcome} | fields
    )


def call(**fields: object) -> DiscoveryCallLogged:
    return DiscoveryCallLogged.model_validate(
        {"deal_id": "d-1", "occurred_at": NOW.isoformat(), "answers": BANT_MET, "actor_role": "rep"} | fields
    )


def pending(state: Qualification) -> set[tuple[str, str]]:
    """The pending deadlines, as (kind, key): the key is the cycle."""
    return {(deadline.kind, deadline.key) for deadline in deadlines(state, PLAYBOOK)}


def announced(deadline: Deadline) -> DeadlineReached:
    return DeadlineReached(
        deal_id="d-1", stage_service="qualification", deadline_id=deadline.id, due_at=deadline.due_at
    )


def fire(state: Qualification, kind: str, at: datetime) -> tuple[Qualification, list[object]]:
    [deadline] = [deadline for deadline in deadlines(state, PLAYBOOK) if deadline.kind == kind]
    decision = on_deadline(state, announced(deadline), at, PLAYBOOK)
    return decision.state, list(decision.events)


def test_a_prospect_opens_a_cadence_by_tier_and_publishes_the_next_step() -> None:
    state = opened("C")

    assert (state.status, state.touches_planned, state.cadence_days) == (Status.OPEN, 3, 10)
    assert state.next_step == NextStep(action="touch_1", due_at=NOW + timedelta(hours=4))
    assert sorted(deadlines(state, PLAYBOOK)) == [
        Deadline("cadence_end", "1", NOW + timedelta(days=10)),
        Deadline("first_touch_overdue", "1", NOW + timedelta(hours=4)),
        Deadline("qualification_overdue", "1", NOW + timedelta(days=30)),
    ]


def test_touches_advance_the_cadence_until_it_waits_for_a_reply() -> None:
    state = opened("C")
    steps = []
    for _ in range(3):
        decision = on_touch_logged(state, touch(), NOW, PLAYBOOK)
        state = decision.state
        [event] = decision.events
        assert isinstance(event, NextStepScheduled)
        steps.append(event.next_step.action)

    assert steps == ["touch_2", "touch_3", "await_reply"]
    assert ("first_touch_overdue", "1") not in pending(state)


def test_a_reply_makes_the_discovery_call_the_next_step_and_ends_the_no_response_clock() -> None:
    meeting = NOW + timedelta(days=3)

    decision = on_touch_logged(
        opened(), touch("meeting_booked", meeting_at=meeting.isoformat()), NOW, PLAYBOOK
    )

    assert decision.state.next_step == NextStep(action="discovery_call", due_at=meeting)
    assert ("cadence_end", "1") not in pending(decision.state)


def test_bant_met_with_an_amount_qualifies_the_lead() -> None:
    amount = Money(amount_minor=1_000_00, currency="EUR")

    decision = on_discovery_call_logged(opened(), call(estimated_amount=amount.model_dump()), NOW, PLAYBOOK)

    [event] = decision.events
    assert isinstance(event, LeadQualified)
    assert (event.amount, event.owner, event.framework) == (amount, "rep", "BANT")
    assert decision.state.status is Status.QUALIFIED
    assert deadlines(decision.state, PLAYBOOK) == []


def test_an_unmet_criterion_disqualifies_with_a_reason_code() -> None:
    decision = on_discovery_call_logged(opened(), call(answers=BANT_MET | {"budget": False}), NOW, PLAYBOOK)

    [event] = decision.events
    assert isinstance(event, LeadDisqualified)
    assert event.reason_code == "bant_budget_not_met"


def test_meddic_needs_its_six_required_criteria_but_not_the_optional_one() -> None:
    answers = dict.fromkeys(
        ["metrics", "economic_buyer", "decision_criteria", "decision_process", "identify_pain"], True
    )

    decision = on_discovery_call_logged(
        opened(), call(framework="MEDDIC", answers=answers, outcome="disqualified"), NOW, PLAYBOOK
    )

    assert decision.events[0].reason_code == "meddic_champion_not_met"  # type: ignore[attr-defined]


def test_not_yet_means_nurture_and_the_lead_reopens_on_the_date() -> None:
    reopen_on = date(2027, 2, 1)
    decision = on_discovery_call_logged(
        opened(),
        call(answers=BANT_MET | {"timeline": False}, nurture_until=reopen_on.isoformat()),
        NOW,
        PLAYBOOK,
    )
    [nurtured] = decision.events
    assert isinstance(nurtured, LeadNurtured)
    assert deadlines(decision.state, PLAYBOOK) == [Deadline("reopen", "1", datetime(2027, 2, 1, tzinfo=UTC))]

    state, events = fire(decision.state, "reopen", datetime(2027, 2, 1, tzinfo=UTC))

    assert [type(event) for event in events] == [QualificationReopened, NextStepScheduled]
    assert (state.status, state.cycle, state.touches_done) == (Status.OPEN, 2, 0)
    assert pending(state) == {
        ("first_touch_overdue", "2"),
        ("cadence_end", "2"),
        ("qualification_overdue", "2"),
    }


def test_a_nurture_request_parks_an_open_lead() -> None:
    request = NurtureRequested(
        deal_id="d-1", occurred_at=NOW, reopen_on=date(2027, 1, 1), reason="budget freeze"
    )

    decision = on_nurture_requested(opened(), request, NOW, PLAYBOOK)

    assert decision.state.status is Status.NURTURE
    assert decision.events[0].reason == "budget freeze"  # type: ignore[attr-defined]


def test_each_sla_fires_once() -> None:
    [first_touch] = [d for d in deadlines(opened(), PLAYBOOK) if d.kind == "first_touch_overdue"]
    decision = on_deadline(opened(), announced(first_touch), NOW + timedelta(hours=5), PLAYBOOK)
    [breach] = decision.events
    assert isinstance(breach, SlaBreached)
    assert (breach.sla, breach.due_at) == ("first_touch_overdue", first_touch.due_at)

    again = on_deadline(decision.state, announced(first_touch), NOW + timedelta(hours=6), PLAYBOOK)

    assert again.events == []
    assert again.state == decision.state


def test_a_deadline_of_an_earlier_cycle_changes_nothing_after_the_lead_reopens() -> None:
    state = opened()
    [first_touch] = [d for d in deadlines(state, PLAYBOOK) if d.kind == "first_touch_overdue"]
    request = NurtureRequested(deal_id="d-1", occurred_at=NOW, reopen_on=date(2027, 1, 1), reason="later")
    state = on_nurture_requested(state, request, NOW, PLAYBOOK).state
    reopened, _ = fire(state, "reopen", datetime(2027, 1, 1, tzinfo=UTC))

    stale = on_deadline(reopened, announced(first_touch), datetime(2027, 1, 1, 1, tzinfo=UTC), PLAYBOOK)

    assert (stale.state, stale.events) == (reopened, [])
    assert ("first_touch_overdue", "2") in pending(reopened)


@pytest.mark.parametrize("deadline_id", ["1:first_touch_overdue", "first_touch_overdue/1", "", "x/y@z"])
def test_an_id_that_is_no_pending_deadline_changes_nothing(deadline_id: str) -> None:
    state = opened()
    event = DeadlineReached(deal_id="d-1", stage_service="qualification", deadline_id=deadline_id, due_at=NOW)

    decision = on_deadline(state, event, NOW + timedelta(days=60), PLAYBOOK)

    assert (decision.state, decision.events) == (state, [])


def test_a_cadence_that_ends_without_a_reply_disqualifies_for_no_response() -> None:
    state, events = fire(opened(), "cadence_end", NOW + timedelta(days=11))

    [event] = events
    assert isinstance(event, LeadDisqualified)
    assert event.reason_code == "no_response"
    assert state.status is Status.DISQUALIFIED


@pytest.mark.parametrize(
    ("state_change", "activity", "code"),
    [
        ({}, {"answers": {"budgett": True}}, "unknown_framework_field"),
        ({}, {"framework": "SPICED"}, "unknown_framework"),
        ({}, {"actor_role": "intern"}, "answer_not_allowed"),
        ({}, {"actor_role": None}, "answer_not_allowed"),
        ({}, {"answers": {"need": True}, "outcome": "qualified"}, "criteria_not_met"),
        ({"framework": "BANT"}, {"framework": "MEDDIC", "answers": {}}, "framework_changed"),
        ({}, {}, "missing_estimated_amount"),
        ({"status": Status.DISQUALIFIED}, {}, "qualification_closed"),
    ],
)
def test_rule_breaks_are_refused(
    state_change: dict[str, object], activity: dict[str, object], code: str
) -> None:
    with pytest.raises(RuleBroken) as caught:
        on_discovery_call_logged(opened().model_copy(update=state_change), call(**activity), NOW, PLAYBOOK)

    assert caught.value.code == code


def apply_calls(*calls: DiscoveryCallLogged, state: Qualification | None = None) -> Decision[Qualification]:
    decision = Decision(state or opened())
    for each in calls:
        decision = on_discovery_call_logged(decision.state, each, NOW, PLAYBOOK)
    return decision


def test_a_call_with_partial_answers_keeps_them_and_decides_nothing() -> None:
    decision = apply_calls(call(answers={"budget": False, "need": True}))

    assert decision.events == []
    assert decision.state.status is Status.OPEN
    assert {name: answer.value for name, answer in decision.state.answers.items()} == {
        "budget": False,
        "need": True,
    }


def test_answers_accumulate_over_calls_and_a_later_answer_overrides_an_earlier_one() -> None:
    later = NOW + timedelta(days=3)
    amount = {"amount_minor": 5_000_00, "currency": "EUR"}
    decision = apply_calls(
        call(answers={"budget": False, "need": True}, actor="anna", estimated_amount=amount),
        call(answers={"authority": True}, actor_role="sdr"),
        call(
            answers={"budget": True, "timeline": True},
            actor="luc",
            actor_role="manager",
            occurred_at=later.isoformat(),
        ),
    )

    [qualified] = decision.events
    assert isinstance(qualified, LeadQualified)
    assert qualified.amount == Money(amount_minor=5_000_00, currency="EUR")
    budget = decision.state.answers["budget"]
    assert (budget.value, budget.actor, budget.actor_role) == (True, "luc", "manager")
    assert decision.state.answers["need"].actor == "anna"


def test_a_call_that_names_no_framework_uses_the_playbook_default() -> None:
    custom = PLAYBOOK.model_copy(update={"default_framework": "MEDDIC"})
    answers = dict.fromkeys(
        ["metrics", "economic_buyer", "decision_criteria", "decision_process", "identify_pain", "champion"],
        True,
    )
    each = call(answers=answers, estimated_amount={"amount_minor": 100, "currency": "EUR"})

    decision = on_discovery_call_logged(opened(), each, NOW, custom)

    [qualified] = decision.events
    assert isinstance(qualified, LeadQualified)
    assert qualified.framework == "MEDDIC"


def test_an_explicit_outcome_decides_and_continue_never_does() -> None:
    amount = {"amount_minor": 100, "currency": "EUR"}
    waiting = apply_calls(call(estimated_amount=amount, outcome="continue"))
    assert (waiting.events, waiting.state.status) == ([], Status.OPEN)

    qualified = apply_calls(call(answers={}, outcome="qualified"), state=waiting.state)
    assert [type(event) for event in qualified.events] == [LeadQualified]

    disqualified = apply_calls(call(answers={"need": True}, outcome="disqualified"))
    [event] = disqualified.events
    assert isinstance(event, LeadDisqualified)
    assert event.reason_code == "bant_budget_not_met"


def test_when_the_playbook_says_never_only_an_explicit_outcome_decides() -> None:
    strict = PLAYBOOK.model_copy(
        update={"decision": PLAYBOOK.decision.model_copy(update={"without_outcome": "never"})}
    )
    complete = call(answers=BANT_MET | {"budget": False})

    decision = on_discovery_call_logged(opened(), complete, NOW, strict)

    assert (decision.events, decision.state.status) == ([], Status.OPEN)


def test_the_qualification_sla_decides_on_what_was_gathered() -> None:
    amount = {"amount_minor": 100, "currency": "EUR"}
    met = apply_calls(
        call(answers={"budget": True, "need": True}, estimated_amount=amount, outcome="continue")
    )
    due = NOW + timedelta(days=PLAYBOOK.qualification_max_days)

    state, events = fire(met.state, "qualification_overdue", due)
    assert [type(event) for event in events] == [SlaBreached, LeadDisqualified]
    assert events[1].reason_code == "qualification_overdue"  # type: ignore[attr-defined]
    assert "authority, timeline" in (events[1].detail or "")  # type: ignore[attr-defined]
    assert state.status is Status.DISQUALIFIED

    complete = apply_calls(call(estimated_amount=amount, outcome="continue"))
    state, events = fire(complete.state, "qualification_overdue", due)
    assert [type(event) for event in events] == [SlaBreached, LeadQualified]
    assert events[1].qualified_at == due  # type: ignore[attr-defined]
    assert state.status is Status.QUALIFIED


def test_at_sla_breach_only_leaves_the_lead_open() -> None:
    lenient = PLAYBOOK.model_copy(
        update={"decision": PLAYBOOK.decision.model_copy(update={"at_sla": "breach_only"})}
    )
    [overdue] = [d for d in deadlines(opened(), lenient) if d.kind == "qualification_overdue"]

    decision = on_deadline(opened(), announced(overdue), overdue.due_at, lenient)

    assert [type(event) for event in decision.events] == [SlaBreached]
    assert decision.state.status is Status.OPEN
