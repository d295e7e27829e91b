from datetime import UTC, datetime, timedelta

import pytest

from contracts.events import (
    Company,
    Contact,
    DiscoveryCallLogged,
    LeadDisqualified,
    LeadQualified,
    Money,
    NextStep,
    ProspectIdentified,
)
from services.qualification.domain import (
    Qualification,
    Status,
    on_discovery_call_logged,
    on_prospect_identified,
)
from shared.domain import RuleBroken

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BANT_MET = {"budget": True, "authority": True, "need": True, "timeline": True}


def opened() -> Qualification:
    prospect = ProspectIdentified(
        deal_id="d-1",
        lead_id="d-1",
        contact=Contact(email="a@b.example"),
        company=Company(name="B"),
        source="web_form",
        marketing_consent=True,
        fit_score=90,
        tier="A",
        owner="rep",
        next_step=NextStep(action="first_touch", due_at=NOW + timedelta(hours=4)),
    )
    return on_prospect_identified(None, prospect, NOW).state


def call(**fields: object) -> DiscoveryCallLogged:
    return DiscoveryCallLogged.model_validate(
        {"deal_id": "d-1", "occurred_at": NOW.isoformat(), "answers": BANT_MET} | fields
    )


def test_a_prospect_opens_a_qualification_with_a_next_step() -> None:
    state = opened()

    assert state.status is Status.OPEN
    assert state.next_step is not None
    assert state.next_step.action == "discovery_call"


def test_bant_met_with_an_amount_qualifies_the_lead() -> None:
    amount = Money(amount_minor=1_000_00, currency="EUR")

    decision = on_discovery_call_logged(opened(), call(estimated_amount=amount.model_dump()), NOW)

    [event] = decision.events
    assert isinstance(event, LeadQualified)
    assert (event.amount, event.owner, event.framework) == (amount, "rep", "BANT")
    assert decision.state.status is Status.QUALIFIED


def test_an_unmet_criterion_disqualifies_with_a_reason_code() -> None:
    decision = on_discovery_call_logged(opened(), call(answers=BANT_MET | {"budget": False}), NOW)

    [event] = decision.events
    assert isinstance(event, LeadDisqualified)
    assert event.reason_code == "bant_budget_not_met"


def test_meddic_needs_all_six_criteria() -> None:
    answers = dict.fromkeys(
        ["metrics", "economic_buyer", "decision_criteria", "decision_process", "identify_pain"], True
    )

    decision = on_discovery_call_logged(opened(), call(framework="MEDDIC", answers=answers), NOW)

    assert decision.events[0].reason_code == "meddic_champion_not_met"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("state_change", "activity", "code"),
    [
        ({}, {"answers": {"budgett": True}}, "unknown_framework_field"),
        ({}, {}, "missing_estimated_amount"),
        ({"status": Status.DISQUALIFIED}, {}, "qualification_closed"),
    ],
)
def test_rule_breaks_are_refused(
    state_change: dict[str, object], activity: dict[str, object], code: str
) -> None:
    with pytest.raises(RuleBroken) as caught:
        on_discovery_call_logged(opened().model_copy(update=state_change), call(**activity), NOW)

    assert caught.value.code == code
