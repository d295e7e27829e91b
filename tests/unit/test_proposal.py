from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.events import (
    Company,
    Contact,
    ContractSigned,
    DealLost,
    DealLostReported,
    DealStageChanged,
    DealWon,
    DemoHeld,
    LeadQualified,
    Money,
    Needs,
    PaymentReceived,
    ProposalAccepted,
    ProposalSent,
    QuoteLine,
)
from services.proposal.domain import (
    Deal,
    Stage,
    on_contract_signed,
    on_deal_lost_reported,
    on_demo_held,
    on_lead_qualified,
    on_payment_received,
    on_proposal_accepted,
    on_proposal_sent,
    quote_total_minor,
)
from shared.domain import RuleBroken

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LINES = [
    QuoteLine(product="platform", quantity=10, unit_price_minor=120_000, discount_percent=10),
    QuoteLine(product="onboarding", quantity=1, unit_price_minor=500_000),
]


def at(days: int) -> datetime:
    return T0 + timedelta(days=days)


def activity(model: type, days: int, **fields: object):  # type: ignore[no-untyped-def]
    return model.model_validate({"deal_id": "d-1", "occurred_at": at(days).isoformat()} | fields)


def qualified() -> Deal:
    event = LeadQualified(
        deal_id="d-1",
        owner="rep",
        contact=Contact(email="a@b.example"),
        company=Company(name="B"),
        framework="BANT",
        needs=Needs(),
        amount=Money(amount_minor=1, currency="EUR"),
        qualified_at=T0,
    )
    return on_lead_qualified(None, event, T0).state


def quoted() -> Deal:
    deal = on_demo_held(qualified(), activity(DemoHeld, 1), at(1)).state
    return on_proposal_sent(deal, activity(ProposalSent, 2, currency="EUR", lines=LINES), at(2)).state


def test_a_qualified_lead_enters_presentation() -> None:
    decision = on_lead_qualified(
        None,
        activity(
            LeadQualified,
            0,
            **qualified().model_dump(mode="json"),
            framework="BANT",
            needs={},
            qualified_at=T0.isoformat(),
        ),
        T0,
    )

    [event] = decision.events
    assert isinstance(event, DealStageChanged)
    assert (event.previous_stage, event.stage, event.probability) == (None, "presentation", 0.2)


def test_accepted_signed_and_paid_wins_the_deal_with_its_history() -> None:
    deal = on_proposal_accepted(quoted(), activity(ProposalAccepted, 3), at(3)).state
    deal = on_contract_signed(deal, activity(ContractSigned, 4), at(4)).state

    decision = on_payment_received(
        deal, activity(PaymentReceived, 5, amount={"amount_minor": 1_580_000, "currency": "EUR"}), at(5)
    )

    won = [event for event in decision.events if isinstance(event, DealWon)]
    assert len(won) == 1
    assert won[0].amount == Money(amount_minor=1_580_000, currency="EUR")
    assert [(visit.stage, visit.seconds) for visit in won[0].stage_history] == [
        ("presentation", 86400),
        ("proposal", 86400),
        ("negotiation", 86400),
        ("closing", 2 * 86400),
    ]
    assert decision.state.stage is Stage.WON


def test_a_partial_payment_does_not_win() -> None:
    deal = on_proposal_accepted(quoted(), activity(ProposalAccepted, 3), at(3)).state
    deal = on_contract_signed(deal, activity(ContractSigned, 4), at(4)).state

    decision = on_payment_received(
        deal, activity(PaymentReceived, 5, amount={"amount_minor": 10, "currency": "EUR"}), at(5)
    )

    assert decision.events == []
    assert decision.state.stage is Stage.CLOSING


def test_a_lost_deal_names_reason_and_competitor_and_refuses_more_activity() -> None:
    decision = on_deal_lost_reported(
        quoted(), activity(DealLostReported, 3, reason_code="competitor", competitor="X"), at(3)
    )

    lost = [event for event in decision.events if isinstance(event, DealLost)]
    assert (lost[0].reason_code, lost[0].competitor, lost[0].stage) == ("competitor", "X", "negotiation")
    with pytest.raises(RuleBroken) as caught:
        on_demo_held(decision.state, activity(DemoHeld, 4), at(4))
    assert caught.value.code == "deal_closed"


def test_accepting_without_a_quote_is_refused() -> None:
    with pytest.raises(RuleBroken) as caught:
        on_proposal_accepted(qualified(), activity(ProposalAccepted, 1), at(1))

    assert caught.value.code == "no_quote"


def test_quote_total_rounds_each_line_half_up_in_minor_units() -> None:
    assert quote_total_minor(LINES) == 1_580_000
    assert (
        quote_total_minor([QuoteLine(product="p", quantity=1, unit_price_minor=5, discount_percent=10)]) == 5
    )


@given(
    st.lists(
        st.builds(
            QuoteLine,
            product=st.just("p"),
            quantity=st.integers(1, 10_000),
            unit_price_minor=st.integers(0, 10**9),
            discount_percent=st.integers(0, 100),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_quote_totals_are_the_sum_of_their_lines_and_never_negative(lines: list[QuoteLine]) -> None:
    total = quote_total_minor(lines)

    assert isinstance(total, int)
    assert total == sum(quote_total_minor([line]) for line in lines)
    assert 0 <= total <= sum(line.quantity * line.unit_price_minor for line in lines)
