from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.events import (
    Company,
    Contact,
    ContractSigned,
    DeadlineReached,
    DealLost,
    DealLostReported,
    DealStageChanged,
    DealWon,
    DemoHeld,
    DiscountApproved,
    LeadQualified,
    Money,
    Needs,
    ObjectionRaised,
    ObjectionResolved,
    PaymentReceived,
    ProposalAccepted,
    ProposalSent,
    QuoteExpired,
    QuoteIssued,
    QuoteLineRequest,
    QuotePrepared,
)
from services.proposal.config import load_playbook
from services.proposal.domain import (
    Deal,
    QuoteStatus,
    Stage,
    deadlines,
    on_contract_signed,
    on_deadline,
    on_deal_lost_reported,
    on_demo_held,
    on_discount_approved,
    on_lead_qualified,
    on_objection_raised,
    on_objection_resolved,
    on_payment_received,
    on_proposal_accepted,
    on_proposal_sent,
    on_quote_prepared,
    percent_off,
    price_quote,
)
from shared.domain import RuleBroken

PLAYBOOK = load_playbook()
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LINES = [
    {"product": "dealflow-platform", "quantity": 10, "discount_percent": 10},
    {"product": "onboarding-package", "quantity": 1},
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
    return on_lead_qualified(None, event, T0, PLAYBOOK).state


def quoted() -> Deal:
    deal = on_demo_held(qualified(), activity(DemoHeld, 1), at(1), PLAYBOOK).state
    return on_proposal_sent(
        deal, activity(ProposalSent, 2, currency="EUR", lines=LINES), at(2), PLAYBOOK
    ).state


def won_steps(deal: Deal, paid: int = 1_580_000) -> tuple[Deal, list[object]]:
    deal = on_proposal_accepted(deal, activity(ProposalAccepted, 3), at(3), PLAYBOOK).state
    deal = on_contract_signed(deal, activity(ContractSigned, 4), at(4), PLAYBOOK).state
    payment = activity(PaymentReceived, 5, amount={"amount_minor": paid, "currency": "EUR"})
    decision = on_payment_received(deal, payment, at(5), PLAYBOOK)
    return decision.state, list(decision.events)


def test_a_qualified_lead_enters_presentation_with_its_probability() -> None:
    [event] = on_lead_qualified(
        None,
        LeadQualified.model_validate(
            qualified().model_dump() | {"framework": "BANT", "needs": {}, "qualified_at": T0}
        ),
        T0,
        PLAYBOOK,
    ).events

    assert isinstance(event, DealStageChanged)
    assert (event.previous_stage, event.stage, event.probability) == (None, "presentation", 0.2)


def test_the_service_prices_quotes_from_its_price_list() -> None:
    [version] = quoted().quotes

    assert [(line.unit_price_minor, line.total_minor) for line in version.quote.lines] == [
        (120_000, 1_080_000),
        (500_000, 500_000),
    ]
    assert (version.quote.total.amount_minor, version.quote.list_total.amount_minor) == (1_580_000, 1_700_000)
    assert version.status is QuoteStatus.SENT


def test_accepted_signed_and_paid_wins_the_deal_with_its_history() -> None:
    deal, events = won_steps(quoted())

    [won] = [event for event in events if isinstance(event, DealWon)]
    assert (won.amount, won.quote_version) == (Money(amount_minor=1_580_000, currency="EUR"), 1)
    assert [(visit.stage, visit.seconds) for visit in won.stage_history] == [
        ("presentation", 86400),
        ("proposal", 86400),
        ("negotiation", 86400),
        ("closing", 2 * 86400),
    ]
    assert deal.stage is Stage.WON


def test_a_partial_payment_does_not_win() -> None:
    deal, events = won_steps(quoted(), paid=10)

    assert events == []
    assert deal.stage is Stage.CLOSING


def test_a_big_discount_needs_approval_before_it_can_be_sent() -> None:
    prepared = on_quote_prepared(
        qualified(),
        activity(QuotePrepared, 1, currency="EUR", lines=LINES, discount_percent=20),
        at(1),
        PLAYBOOK,
    )
    [issued] = prepared.events
    assert isinstance(issued, QuoteIssued)
    assert issued.status == "needs_approval"
    with pytest.raises(RuleBroken) as refused:
        on_proposal_sent(prepared.state, activity(ProposalSent, 2, quote_version=1), at(2), PLAYBOOK)
    assert refused.value.code == "quote_not_approved"

    approved = on_discount_approved(
        prepared.state, activity(DiscountApproved, 2, quote_version=1, approver="vp.sales"), at(2), PLAYBOOK
    ).state
    sent = on_proposal_sent(approved, activity(ProposalSent, 3, quote_version=1), at(3), PLAYBOOK)

    assert sent.state.quotes[0].status is QuoteStatus.SENT
    assert sent.state.stage is Stage.NEGOTIATION


def test_a_revision_supersedes_the_sent_version_which_can_no_longer_be_accepted() -> None:
    revised = on_proposal_sent(
        quoted(), activity(ProposalSent, 3, currency="EUR", lines=LINES[:1]), at(3), PLAYBOOK
    ).state

    assert [version.status for version in revised.quotes] == [QuoteStatus.SUPERSEDED, QuoteStatus.SENT]
    with pytest.raises(RuleBroken) as refused:
        on_proposal_accepted(revised, activity(ProposalAccepted, 4, quote_version=1), at(4), PLAYBOOK)
    assert refused.value.code == "quote_not_sent"


def test_an_unanswered_quote_expires_once() -> None:
    deal = quoted()
    [(deadline_id, due)] = deadlines(deal).items()
    assert due == at(2) + timedelta(days=30)
    reached = DeadlineReached(deal_id="d-1", stage_service="proposal", deadline_id=deadline_id, due_at=due)

    expired = on_deadline(deal, reached, due, PLAYBOOK)

    assert [type(event) for event in expired.events] == [QuoteExpired]
    assert on_deadline(expired.state, reached, due, PLAYBOOK).events == []
    with pytest.raises(RuleBroken) as refused:
        on_proposal_accepted(expired.state, activity(ProposalAccepted, 40), at(40), PLAYBOOK)
    assert refused.value.code == "quote_expired"


def test_an_open_objection_blocks_closing_until_it_is_resolved() -> None:
    deal = on_objection_raised(
        quoted(), activity(ObjectionRaised, 2, objection_id="o-1", category="price"), at(2), PLAYBOOK
    ).state
    deal, events = won_steps(deal)
    assert events == []

    decision = on_objection_resolved(
        deal, activity(ObjectionResolved, 6, objection_id="o-1"), at(6), PLAYBOOK
    )

    assert any(isinstance(event, DealWon) for event in decision.events)


def test_a_lost_deal_names_reason_and_competitor_and_refuses_more_activity() -> None:
    decision = on_deal_lost_reported(
        quoted(), activity(DealLostReported, 3, reason_code="competitor", competitor="X"), at(3), PLAYBOOK
    )

    lost = [event for event in decision.events if isinstance(event, DealLost)]
    assert (lost[0].reason_code, lost[0].competitor, lost[0].stage) == ("competitor", "X", "negotiation")
    with pytest.raises(RuleBroken) as caught:
        on_demo_held(decision.state, activity(DemoHeld, 4), at(4), PLAYBOOK)
    assert caught.value.code == "deal_closed"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"reason_code": "competitor"}, "competitor_required"),
        ({"reason_code": "bad_luck"}, "unknown_loss_reason"),
    ],
)
def test_loss_reports_are_checked(fields: dict[str, str], code: str) -> None:
    with pytest.raises(RuleBroken) as caught:
        on_deal_lost_reported(quoted(), activity(DealLostReported, 3, **fields), at(3), PLAYBOOK)

    assert caught.value.code == code


def test_accepting_without_a_quote_and_quoting_unknown_products_are_refused() -> None:
    with pytest.raises(RuleBroken) as no_quote:
        on_proposal_accepted(qualified(), activity(ProposalAccepted, 1), at(1), PLAYBOOK)
    with pytest.raises(RuleBroken) as unknown:
        on_proposal_sent(
            qualified(),
            activity(ProposalSent, 1, currency="EUR", lines=[{"product": "x", "quantity": 1}]),
            at(1),
            PLAYBOOK,
        )

    assert (no_quote.value.code, unknown.value.code) == ("no_quote", "unknown_product")


def test_percent_off_rounds_half_up_in_minor_units() -> None:
    assert percent_off(5, 10) == 5  # 4.5 rounds up
    assert percent_off(1_200_000, 10) == 1_080_000


@given(
    lines=st.lists(
        st.builds(
            QuoteLineRequest,
            product=st.sampled_from(["dealflow-platform", "onboarding-package", "dealflow-seat"]),
            quantity=st.integers(1, 10_000),
            discount_percent=st.integers(0, 100),
        ),
        min_size=1,
        max_size=20,
    ),
    discount=st.integers(0, 100),
    currency=st.sampled_from(["EUR", "USD", "GBP"]),
)
def test_quote_totals_add_up_and_are_never_negative(
    lines: list[QuoteLineRequest], discount: int, currency: str
) -> None:
    quote = price_quote(1, currency, lines, discount, PLAYBOOK)

    assert all(isinstance(line.total_minor, int) for line in quote.lines)
    assert quote.subtotal.amount_minor == sum(line.total_minor for line in quote.lines)
    assert 0 <= quote.total.amount_minor <= quote.subtotal.amount_minor <= quote.list_total.amount_minor
    assert quote.list_total.amount_minor == sum(line.quantity * line.unit_price_minor for line in quote.lines)
