"""Imported opportunities in the stage services' pure rules: which stage takes a row, the deal it makes,
what it refuses, a row imported again, and deadlines that fell due before the import."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from contracts.events import (
    ActivityLogged,
    Company,
    ContractSigned,
    DeadlineReached,
    DealImported,
    DealStageChanged,
    DealWon,
    LeadDisqualified,
    Money,
    NextStep,
    NextStepOverdue,
    OpportunityImported,
    PaymentReceived,
    ProposalAccepted,
    SlaBreached,
    StageMoveRequested,
    TouchLogged,
)
from services.proposal import domain as proposal
from services.proposal.config import load_playbook as load_proposal_playbook
from services.qualification import domain as qualification
from services.qualification.config import load_playbook as load_qualification_playbook
from shared.domain import Deadline, RuleBroken
from shared.imported import live

PROPOSAL = load_proposal_playbook()
QUALIFICATION = load_qualification_playbook()
CREATED = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
AS_OF = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
EUR_50K = Money(amount_minor=5_000_000, currency="EUR")
NEGOTIATION_HISTORY = [
    {"stage": "qualification", "entered_at": CREATED.isoformat()},
    {"stage": "presentation", "entered_at": (CREATED + timedelta(days=10)).isoformat()},
    {"stage": "proposal", "entered_at": (CREATED + timedelta(days=20)).isoformat()},
    {"stage": "negotiation", "entered_at": (AS_OF - timedelta(days=5)).isoformat()},
]


def row(**fields: Any) -> OpportunityImported:
    values: dict[str, Any] = {
        "deal_id": "sf-006A1",
        "source": "salesforce",
        "source_id": "006A1",
        "owner": "anna.schmidt",
        "company": {"name": "Acme Robotics", "country": "DE"},
        "pipeline": "new_business",
        "stage": "negotiation",
        "stage_history": NEGOTIATION_HISTORY,
        "created_at": CREATED.isoformat(),
        "amount": EUR_50K.model_dump(),
        "as_of": AS_OF.isoformat(),
    }
    return OpportunityImported.model_validate(values | fields)


def imported_deal(**fields: Any) -> proposal.Deal:
    decision = proposal.on_opportunity_imported(None, row(**fields), AS_OF, PROPOSAL)
    assert isinstance(decision.state, proposal.Deal)
    return decision.state


def after_as_of(days: float) -> str:
    return (AS_OF + timedelta(days=days)).isoformat()


def fire(deadline: Deadline) -> DeadlineReached:
    return DeadlineReached(
        deal_id="sf-006A1", stage_service="any", deadline_id=deadline.id, due_at=deadline.due_at
    )


# --- proposal -------------------------------------------------------------------------------------


def test_an_open_row_in_a_proposal_stage_becomes_a_deal_with_its_history_and_next_step() -> None:
    decision = proposal.on_opportunity_imported(None, row(), AS_OF, PROPOSAL)

    deal = decision.state
    entered = AS_OF - timedelta(days=5)
    assert isinstance(deal, proposal.Deal)
    assert (deal.stage, deal.pipeline, deal.owner, deal.amount) == (
        "negotiation",
        "new_business",
        "anna.schmidt",
        EUR_50K,
    )
    assert (deal.source, deal.source_id, deal.imported_as_of) == ("salesforce", "006A1", AS_OF)
    assert [visit.stage for visit in deal.history] == [
        "qualification",
        "presentation",
        "proposal",
        "negotiation",
    ]
    assert deal.next_step == NextStep(action="agree_terms", due_at=entered + timedelta(days=14))
    assert deal.contact.email == ""
    [imported] = decision.events
    assert isinstance(imported, DealImported)
    assert (imported.stage_service, imported.next_step, imported.stage_history) == (
        "proposal",
        deal.next_step,
        row().stage_history,
    )


def test_a_won_row_is_history_with_no_deal_won_and_no_next_step() -> None:
    closed = AS_OF - timedelta(days=1)
    decision = proposal.on_opportunity_imported(
        None, row(stage="won", closed_at=closed.isoformat()), AS_OF, PROPOSAL
    )

    assert isinstance(decision.state, proposal.Deal)
    assert (decision.state.stage, decision.state.next_step) == ("won", None)
    assert (decision.state.history[-1].stage, decision.state.history[-1].entered_at) == ("won", closed)
    assert [type(event) for event in decision.events] == [DealImported]
    assert proposal.deadlines(decision.state) == []


def test_a_row_without_stage_history_starts_in_the_first_stage_at_its_creation() -> None:
    deal = imported_deal(stage_history=[])

    assert [(visit.stage, visit.entered_at) for visit in deal.history] == [
        ("presentation", CREATED),
        ("negotiation", CREATED),
    ]
    assert deal.next_step is not None
    assert deal.next_step.due_at == CREATED + timedelta(days=14)


def test_a_row_in_a_qualification_stage_is_qualifications_and_changes_nothing_in_proposal() -> None:
    history = [{"stage": "qualification", "entered_at": CREATED.isoformat()}]

    decision = proposal.on_opportunity_imported(
        None, row(stage="qualification", stage_history=history), AS_OF, PROPOSAL
    )

    assert (decision.state, decision.events) == (None, [])


def native_deal() -> proposal.Deal:
    return imported_deal().model_copy(update={"imported_as_of": None, "source": None, "source_id": None})


@pytest.mark.parametrize(
    ("fields", "state", "code", "field"),
    [
        ({"pipeline": "partners"}, None, "unknown_pipeline", "pipeline"),
        ({"stage": "contracting"}, None, "unknown_stage", "stage"),
        ({"stage": "won"}, None, "missing_closed_at", "closed_at"),
        (
            {"stage_history": [{"stage": "legal_review", "entered_at": CREATED.isoformat()}]},
            None,
            "stage_not_in_pipeline",
            "stage_history.0.stage",
        ),
        ({"stage_history": NEGOTIATION_HISTORY[::-1]}, None, "stage_history_out_of_order", None),
        ({"stage_history": NEGOTIATION_HISTORY[:3]}, None, "stage_history_ends_elsewhere", None),
        ({"created_at": after_as_of(1)}, None, "after_as_of", "created_at"),
        ({}, "native", "deal_exists", "deal_id"),
    ],
)
def test_proposal_refuses_a_row_it_cannot_use(
    fields: dict[str, Any], state: str | None, code: str, field: str | None
) -> None:
    existing = native_deal() if state == "native" else None

    with pytest.raises(RuleBroken) as refused:
        proposal.on_opportunity_imported(existing, row(**fields), AS_OF, PROPOSAL)

    assert refused.value.code == code
    if field is not None:
        assert refused.value.field == field


def test_a_newer_row_replaces_an_untouched_import_and_an_identical_or_older_one_changes_nothing() -> None:
    deal = imported_deal()
    later = AS_OF + timedelta(days=7)

    for same_or_older in (row(), row(as_of=(AS_OF - timedelta(days=1)).isoformat(), owner="luc.martin")):
        unchanged = proposal.on_opportunity_imported(deal, same_or_older, later, PROPOSAL)
        assert (unchanged.state, unchanged.events) == (deal, [])
    newer = proposal.on_opportunity_imported(
        deal, row(as_of=later.isoformat(), owner="luc.martin"), later, PROPOSAL
    )

    assert isinstance(newer.state, proposal.Deal)
    assert (newer.state.owner, newer.state.imported_as_of) == ("luc.martin", later)
    assert [type(event) for event in newer.events] == [DealImported]


def test_once_live_activity_changed_the_imported_deal_a_later_import_is_refused() -> None:
    logged = ActivityLogged(
        deal_id="sf-006A1", occurred_at=AS_OF + timedelta(days=1), kind="call", outcome="interested"
    )
    on_logged = live(proposal.on_activity_logged)
    touched = on_logged(imported_deal(), logged, logged.occurred_at, PROPOSAL).state

    with pytest.raises(RuleBroken) as refused:
        proposal.on_opportunity_imported(touched, row(as_of=after_as_of(2)), AS_OF, PROPOSAL)

    assert touched.touched_since_import
    assert refused.value.code == "deal_active"


def test_a_live_activity_that_changes_nothing_does_not_touch_the_import() -> None:
    deal = imported_deal()
    before_the_deal = ActivityLogged(deal_id="sf-006A1", occurred_at=CREATED - timedelta(days=1), kind="note")

    decision = live(proposal.on_activity_logged)(deal, before_the_deal, before_the_deal.occurred_at, PROPOSAL)

    assert decision.state == deal


def test_a_next_step_due_before_as_of_fires_as_history_and_one_due_after_as_live() -> None:
    stale = imported_deal(
        stage_history=[
            *NEGOTIATION_HISTORY[:3],
            {"stage": "negotiation", "entered_at": (AS_OF - timedelta(days=30)).isoformat()},
        ]
    )
    fresh = imported_deal()

    [stale_due] = proposal.deadlines(stale)
    [fresh_due] = proposal.deadlines(fresh)
    stale_fired = proposal.on_deadline(stale, fire(stale_due), stale_due.due_at, PROPOSAL)
    fresh_fired = proposal.on_deadline(fresh, fire(fresh_due), fresh_due.due_at, PROPOSAL)

    [history] = stale_fired.events
    [live] = fresh_fired.events
    assert isinstance(history, NextStepOverdue)
    assert isinstance(live, NextStepOverdue)
    assert (history.from_history, history.due_at) == (True, AS_OF - timedelta(days=16))
    assert (live.from_history, live.due_at) == (False, AS_OF + timedelta(days=9))
    assert proposal.deadlines(stale_fired.state) == []


def test_a_newer_row_with_the_same_next_step_does_not_report_it_overdue_again() -> None:
    stale = imported_deal(
        stage_history=[
            *NEGOTIATION_HISTORY[:3],
            {"stage": "negotiation", "entered_at": (AS_OF - timedelta(days=30)).isoformat()},
        ]
    )
    [due] = proposal.deadlines(stale)
    reported = proposal.on_deadline(stale, fire(due), due.due_at, PROPOSAL).state

    newer = row(stage_history=stale_history(stale), as_of=after_as_of(1), expected_close_date="2026-12-24")
    again = proposal.on_opportunity_imported(reported, newer, AS_OF, PROPOSAL)

    assert isinstance(again.state, proposal.Deal)
    assert again.state.imported_as_of == AS_OF + timedelta(days=1)
    assert again.state.expected_close_date == date(2026, 12, 24)
    assert proposal.deadlines(again.state) == []


def test_the_same_row_exported_again_later_changes_nothing() -> None:
    deal = imported_deal()
    same_later = row(as_of=after_as_of(3))
    for handled in (
        proposal.on_opportunity_imported(deal, same_later, AS_OF, PROPOSAL),
        qualification.on_opportunity_imported(
            qualification.on_opportunity_imported(None, row(), AS_OF, QUALIFICATION).state,
            same_later,
            AS_OF,
            QUALIFICATION,
        ),
    ):
        assert handled.events == []
    assert proposal.on_opportunity_imported(deal, same_later, AS_OF, PROPOSAL).state == deal


def stale_history(deal: proposal.Deal) -> list[Any]:
    return [{"stage": visit.stage, "entered_at": visit.entered_at} for visit in deal.history]


def test_after_import_an_accepted_proposal_signature_and_payment_win_it_with_a_deal_won() -> None:
    deal = imported_deal()
    steps: list[tuple[Any, Any]] = [
        (proposal.on_proposal_accepted, ProposalAccepted),
        (proposal.on_contract_signed, ContractSigned),
        (proposal.on_payment_received, PaymentReceived),
    ]
    events: list[object] = []
    for day, (handler, model) in enumerate(steps, start=1):
        at = AS_OF + timedelta(days=day)
        extra = {"amount": EUR_50K.model_dump()} if model is PaymentReceived else {}
        activity = model.model_validate({"deal_id": "sf-006A1", "occurred_at": at.isoformat()} | extra)
        decision = live(handler)(deal, activity, at, PROPOSAL)
        deal, events = decision.state, [*events, *decision.events]

    won = [event for event in events if isinstance(event, DealWon)]
    assert [event.stage for event in events if isinstance(event, DealStageChanged)] == ["closing", "won"]
    assert len(won) == 1
    assert (won[0].amount, won[0].quote_version, won[0].won_at) == (EUR_50K, None, AS_OF + timedelta(days=3))
    assert deal.stage == "won"
    assert deal.touched_since_import


def test_a_stage_move_checks_the_exit_criteria_the_history_does_not_imply() -> None:
    deal = imported_deal()  # negotiation: it left proposal, so a quote was sent; none was accepted
    move = StageMoveRequested(deal_id="sf-006A1", occurred_at=AS_OF + timedelta(days=1), to_stage="closing")

    with pytest.raises(RuleBroken) as refused:
        proposal.on_stage_move_requested(deal, move, move.occurred_at, PROPOSAL)

    assert refused.value.code == "exit_criteria_unmet"
    assert "quote_accepted" in refused.value.message
    assert proposal.facts(deal)["quote_sent"]
    assert not proposal.facts(deal)["demo_held"]


def test_a_deal_imported_without_an_amount_takes_no_payment_until_it_has_one() -> None:
    deal = imported_deal(amount=None)
    payment = PaymentReceived(deal_id="sf-006A1", occurred_at=AS_OF + timedelta(days=1), amount=EUR_50K)

    with pytest.raises(RuleBroken) as refused:
        proposal.on_payment_received(deal, payment, payment.occurred_at, PROPOSAL)

    assert refused.value.code == "unknown_amount"
    assert proposal.facts(deal)["payment_received"] is False


# --- qualification --------------------------------------------------------------------------------

QUALIFYING = [{"stage": "qualification", "entered_at": (AS_OF - timedelta(days=10)).isoformat()}]


def imported_lead(**fields: Any) -> qualification.Qualification:
    fields = {"stage": "qualification", "stage_history": QUALIFYING} | fields
    decision = qualification.on_opportunity_imported(None, row(**fields), AS_OF, QUALIFICATION)
    assert isinstance(decision.state, qualification.Qualification)
    return decision.state


def test_a_row_in_the_qualification_stage_opens_a_lead_without_a_cadence() -> None:
    decision = qualification.on_opportunity_imported(
        None, row(stage="qualification", stage_history=QUALIFYING), AS_OF, QUALIFICATION
    )

    lead = decision.state
    entered = AS_OF - timedelta(days=10)
    assert isinstance(lead, qualification.Qualification)
    assert (lead.owner, lead.company, lead.status, lead.opened_at) == (
        "anna.schmidt",
        Company(name="Acme Robotics", country="DE"),
        qualification.Status.OPEN,
        entered,
    )
    assert (lead.contact.email, lead.estimated_amount, lead.imported_as_of) == ("", EUR_50K, AS_OF)
    assert lead.next_step == NextStep(action="discovery_call", due_at=entered + timedelta(days=2))
    [imported] = decision.events
    assert isinstance(imported, DealImported)
    assert (imported.stage_service, imported.next_step) == ("qualification", lead.next_step)
    kinds = {deadline.kind for deadline in qualification.deadlines(lead, QUALIFICATION)}
    assert kinds == {"qualification_overdue", "next_step_overdue"}  # no first touch, no cadence end


def test_an_sla_due_before_as_of_is_history_and_does_not_decide_the_lead() -> None:
    long_ago = [{"stage": "qualification", "entered_at": (AS_OF - timedelta(days=45)).isoformat()}]
    lead = imported_lead(stage_history=long_ago)
    [sla] = [d for d in qualification.deadlines(lead, QUALIFICATION) if d.kind == "qualification_overdue"]

    decision = qualification.on_deadline(lead, fire(sla), sla.due_at, QUALIFICATION)

    [breached] = decision.events
    assert isinstance(breached, SlaBreached)
    assert (breached.sla, breached.from_history, breached.due_at) == (
        "qualification_overdue",
        True,
        AS_OF - timedelta(days=15),
    )
    assert decision.state.status is qualification.Status.OPEN


def test_an_sla_due_after_as_of_decides_as_live() -> None:
    lead = imported_lead()
    [sla] = [d for d in qualification.deadlines(lead, QUALIFICATION) if d.kind == "qualification_overdue"]

    decision = qualification.on_deadline(lead, fire(sla), sla.due_at, QUALIFICATION)

    breached, disqualified = decision.events
    assert isinstance(breached, SlaBreached)
    assert not breached.from_history
    assert isinstance(disqualified, LeadDisqualified)
    assert disqualified.reason_code == "qualification_overdue"


def test_a_past_next_step_of_an_imported_lead_is_overdue_from_history() -> None:
    lead = imported_lead()
    [step] = [d for d in qualification.deadlines(lead, QUALIFICATION) if d.kind == "next_step_overdue"]

    [overdue] = qualification.on_deadline(lead, fire(step), step.due_at, QUALIFICATION).events

    assert isinstance(overdue, NextStepOverdue)
    assert (overdue.from_history, overdue.next_step.action) == (True, "discovery_call")


def test_a_row_of_proposals_marks_the_deal_proposals_in_qualification_without_an_event() -> None:
    decision = qualification.on_opportunity_imported(None, row(), AS_OF, QUALIFICATION)

    marked = decision.state
    assert isinstance(marked, qualification.Qualification)
    assert (marked.status, decision.events, qualification.deadlines(marked, QUALIFICATION)) == (
        qualification.Status.QUALIFIED,
        [],
        [],
    )
    logged = ActivityLogged(deal_id="sf-006A1", occurred_at=AS_OF + timedelta(days=1), kind="call")
    assert live(qualification.on_activity_logged)(marked, logged, AS_OF, QUALIFICATION).state == marked


@pytest.mark.parametrize("fields", [{"pipeline": "partners"}, {"stage": "contracting"}])
def test_a_row_proposal_refuses_is_nothing_for_qualification(fields: dict[str, Any]) -> None:
    decision = qualification.on_opportunity_imported(None, row(**fields), AS_OF, QUALIFICATION)

    assert (decision.state, decision.events) == (None, [])


def test_qualification_refuses_a_history_outside_the_pipeline_and_a_lead_of_its_own() -> None:
    own_lead = imported_lead().model_copy(update={"imported_as_of": None})
    outside = [{"stage": "legal_review", "entered_at": CREATED.isoformat()}, *QUALIFYING]

    with pytest.raises(RuleBroken) as history:
        qualification.on_opportunity_imported(
            None, row(stage="qualification", stage_history=outside), AS_OF, QUALIFICATION
        )
    with pytest.raises(RuleBroken) as exists:
        qualification.on_opportunity_imported(
            own_lead, row(stage="qualification", stage_history=QUALIFYING), AS_OF, QUALIFICATION
        )

    assert (history.value.code, history.value.field) == ("stage_not_in_pipeline", "stage_history.0.stage")
    assert exists.value.code == "deal_exists"


def test_a_touched_imported_lead_refuses_a_later_import_and_an_untouched_one_takes_it() -> None:
    lead = imported_lead()
    touch = TouchLogged(
        deal_id="sf-006A1", occurred_at=AS_OF + timedelta(days=1), channel="call", outcome="replied"
    )
    touched = live(qualification.on_touch_logged)(lead, touch, touch.occurred_at, QUALIFICATION)
    newer = row(stage="qualification", stage_history=QUALIFYING, as_of=after_as_of(3), owner="luc.martin")

    replaced = qualification.on_opportunity_imported(lead, newer, AS_OF, QUALIFICATION)
    with pytest.raises(RuleBroken) as refused:
        qualification.on_opportunity_imported(touched.state, newer, AS_OF, QUALIFICATION)

    assert touched.state.touched_since_import
    assert touched.state.touches_done == 1
    assert refused.value.code == "deal_active"
    assert isinstance(replaced.state, qualification.Qualification)
    assert replaced.state.owner == "luc.martin"
    assert [type(event) for event in replaced.events] == [DealImported]
    same = qualification.on_opportunity_imported(
        lead, row(stage="qualification", stage_history=QUALIFYING), AS_OF, QUALIFICATION
    )
    assert (same.state, same.events) == (lead, [])


def test_a_newer_row_past_qualification_hands_the_untouched_lead_to_proposal() -> None:
    lead = imported_lead()

    decision = qualification.on_opportunity_imported(lead, row(as_of=after_as_of(3)), AS_OF, QUALIFICATION)

    assert isinstance(decision.state, qualification.Qualification)
    assert (decision.state.status, decision.events) == (qualification.Status.QUALIFIED, [])
