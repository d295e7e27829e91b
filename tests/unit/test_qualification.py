from datetime import UTC, date, datetime, timedelta

import pytest

from contracts.events import (
    ActivityLogged,
    Company,
    Contact,
    DeadlineReached,
    DealOwnerChanged,
    DiscoveryCallLogged,
    LeadDisqualified,
    LeadNurtured,
    LeadQualified,
    Money,
    NextStep,
    NextStepOverdue,
    NextStepScheduled,
    NurtureRequested,
    OwnerChangeRequested,
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
    on_activity_logged,
    on_deadline,
    on_discovery_call_logged,
    on_nurture_requested,
    on_owner_change_requested,
    on_prospect_identified,
    on_touch_logged,
)
from shared.domain import Deadline, Decision, RuleBroken

PLAYBOOK = load_playbook()
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BANT_MET = {"budget": True, "authority": True, "need": True, "timeline": True}


def prospect(tier: str = "C", now: datetime = NOW, owner: str = "rep") -> ProspectIdentified:
    return ProspectIdentified(
        deal_id="d-1",
        lead_id="d-1",
        contact=Contact(email="a@b.example"),
        company=Company(name="B"),
        source="web_form",
        marketing_consent=True,
        fit_score=90,
        tier=tier,
        owner=owner,
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
        Deadline("next_step_overdue", "1", NOW + timedelta(hours=4)),
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
    assert event.lead_source == "web_form", "the playbook may choose the deal's pipeline by its source"
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
        ("next_step_overdue", "2"),
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

    [follow_up] = decision.events  # nothing decided: the next step is another call
    assert isinstance(follow_up, NextStepScheduled)
    assert follow_up.next_step == NextStep(action="discovery_call", due_at=NOW + timedelta(days=2))
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
    assert ([type(event) for event in waiting.events], waiting.state.status) == (
        [NextStepScheduled],
        Status.OPEN,
    )

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

    assert ([type(event) for event in decision.events], decision.state.status) == (
        [NextStepScheduled],
        Status.OPEN,
    )


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


# --- rep actions: activity.logged, owner changes, the unassigned queue, overdue next steps -------------


def logged(kind: str, outcome: str | None = None, **fields: object) -> ActivityLogged:
    return ActivityLogged.model_validate(
        {"deal_id": "d-1", "occurred_at": NOW.isoformat(), "kind": kind, "outcome": outcome} | fields
    )


def owner_change(new_owner: str = "anna.schmidt", at: datetime = NOW) -> OwnerChangeRequested:
    return OwnerChangeRequested(
        deal_id="d-1", occurred_at=at, new_owner=new_owner, actor="team.lead", reason="claim"
    )


def test_a_logged_call_or_email_is_a_touch_of_the_cadence() -> None:
    called = on_activity_logged(opened("C"), logged("call", "no_answer"), NOW, PLAYBOOK)
    [step] = called.events
    assert isinstance(step, NextStepScheduled)
    assert (step.next_step.action, step.touches_done) == ("touch_2", 1)
    assert ("first_touch_overdue", "1") not in pending(called.state)

    replied = on_activity_logged(called.state, logged("email", "replied"), NOW, PLAYBOOK)
    assert replied.state.next_step == NextStep(action="discovery_call", due_at=NOW + timedelta(days=2))
    assert ("cadence_end", "1") not in pending(replied.state)


def test_a_note_changes_nothing_but_a_carried_next_step_replaces_the_leads() -> None:
    state = opened()
    note = on_activity_logged(state, logged("note"), NOW, PLAYBOOK)
    assert (note.state, note.events) == (state, [])

    step = NextStep(action="send_case_study", due_at=NOW + timedelta(days=1))
    task = on_activity_logged(state, logged("task", next_step=step.model_dump(mode="json")), NOW, PLAYBOOK)
    [event] = task.events
    assert isinstance(event, NextStepScheduled)
    assert event.next_step == task.state.next_step == step
    assert task.state.touches_done == 0  # a task is no touch

    call_with_step = on_activity_logged(
        state, logged("call", "voicemail", next_step=step.model_dump()), NOW, PLAYBOOK
    )
    assert (call_with_step.state.touches_done, call_with_step.state.next_step) == (1, step)


def test_activities_on_a_qualified_lead_are_proposals_and_on_a_closed_one_refused() -> None:
    qualified = opened().model_copy(update={"status": Status.QUALIFIED})
    for handler, activity in (
        (on_activity_logged, logged("call")),
        (on_owner_change_requested, owner_change()),
    ):
        decision = handler(qualified, activity, NOW, PLAYBOOK)  # type: ignore[operator]
        assert (decision.state, decision.events) == (qualified, [])

    closed = opened().model_copy(update={"status": Status.DISQUALIFIED})
    for handler, activity in (
        (on_activity_logged, logged("call")),
        (on_owner_change_requested, owner_change()),
    ):
        with pytest.raises(RuleBroken) as caught:
            handler(closed, activity, NOW, PLAYBOOK)  # type: ignore[operator]
        assert caught.value.code == "qualification_closed"


def test_an_owner_change_gives_the_lead_and_its_later_events_to_the_new_owner() -> None:
    decision = on_owner_change_requested(opened(), owner_change("luc.martin"), NOW, PLAYBOOK)

    [changed] = decision.events
    assert changed == DealOwnerChanged(
        deal_id="d-1", previous_owner="rep", owner="luc.martin", changed_at=NOW, actor="team.lead"
    )
    assert decision.state.owner == "luc.martin"
    _, events = fire(decision.state, "first_touch_overdue", NOW + timedelta(hours=5))
    assert [event.owner for event in events] == ["luc.martin"]  # type: ignore[attr-defined]

    again = on_owner_change_requested(decision.state, owner_change("luc.martin"), NOW, PLAYBOOK)
    assert (again.state, again.events) == (decision.state, [])


def test_an_owner_who_is_no_rep_of_the_playbooks_teams_is_refused() -> None:
    with pytest.raises(RuleBroken) as caught:
        on_owner_change_requested(opened(), owner_change("mallory"), NOW, PLAYBOOK)

    assert (caught.value.code, caught.value.field) == ("unknown_owner", "new_owner")


def test_a_nurtured_lead_can_change_owner_and_reopens_with_them() -> None:
    request = NurtureRequested(deal_id="d-1", occurred_at=NOW, reopen_on=date(2027, 1, 1), reason="later")
    nurtured = on_nurture_requested(opened(), request, NOW, PLAYBOOK).state

    decision = on_owner_change_requested(nurtured, owner_change("jordan.lee"), NOW, PLAYBOOK)
    _, events = fire(decision.state, "reopen", datetime(2027, 1, 1, tzinfo=UTC))

    assert [event.owner for event in events] == ["jordan.lee", "jordan.lee"]  # type: ignore[attr-defined]


def queued() -> Qualification:
    return on_prospect_identified(None, prospect(owner="unassigned:emea"), NOW, PLAYBOOK).state


def test_an_unclaimed_lead_of_the_unassigned_queue_breaches_its_sla_once() -> None:
    due = NOW + timedelta(hours=PLAYBOOK.unassigned_claim_hours)
    assert Deadline("unassigned_unclaimed", "1", due) in deadlines(queued(), PLAYBOOK)

    state, events = fire(queued(), "unassigned_unclaimed", due)

    [breach] = events
    assert isinstance(breach, SlaBreached)
    assert (breach.sla, breach.owner, breach.due_at) == ("unassigned_unclaimed", "unassigned:emea", due)
    assert ("unassigned_unclaimed", "1") not in pending(state)
    assert state.owner == "unassigned:emea"  # rebalancing is not done: the lead waits for a claim

    claimed = on_owner_change_requested(state, owner_change("sofia.rossi"), due, PLAYBOOK)
    assert [type(event) for event in claimed.events] == [DealOwnerChanged]
    assert claimed.events[0].previous_owner == "unassigned:emea"  # type: ignore[attr-defined]


def test_a_lead_claimed_in_time_has_no_unassigned_sla() -> None:
    state = queued()
    [deadline] = [d for d in deadlines(state, PLAYBOOK) if d.kind == "unassigned_unclaimed"]
    claimed = on_owner_change_requested(state, owner_change("anna.schmidt"), NOW, PLAYBOOK).state

    assert ("unassigned_unclaimed", "1") not in pending(claimed)
    late = on_deadline(claimed, announced(deadline), deadline.due_at, PLAYBOOK)
    assert (late.state, late.events) == (claimed, [])
    assert ("unassigned_unclaimed", "1") not in pending(opened())  # an assigned lead has none


def test_an_overdue_next_step_is_raised_once_and_a_newer_step_starts_afresh() -> None:
    state = opened()
    step = state.next_step
    assert step is not None

    state, events = fire(state, "next_step_overdue", step.due_at)

    [overdue] = events
    assert overdue == NextStepOverdue(
        deal_id="d-1", owner="rep", stage="qualification", next_step=step, due_at=step.due_at
    )
    assert ("next_step_overdue", "1") not in pending(state)

    later = NextStep(action="call_back", due_at=NOW + timedelta(days=3))
    rescheduled = on_activity_logged(state, logged("note", next_step=later.model_dump()), NOW, PLAYBOOK).state
    assert Deadline("next_step_overdue", "1", later.due_at) in deadlines(rescheduled, PLAYBOOK)
    stale = on_deadline(
        rescheduled, announced(Deadline("next_step_overdue", "1", step.due_at)), later.due_at, PLAYBOOK
    )
    assert (stale.state, stale.events) == (rescheduled, [])


def test_a_next_step_due_when_the_cadence_or_the_sla_decides_is_not_reported_overdue() -> None:
    state = opened("C")
    for _ in range(3):
        state = on_touch_logged(state, touch(), NOW, PLAYBOOK).state
    assert state.next_step is not None
    assert state.next_step.action == "await_reply"

    assert ("next_step_overdue", "1") not in pending(state)
    assert ("cadence_end", "1") in pending(state)
