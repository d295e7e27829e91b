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
from services.proposal.config import Limits, ProposalPlaybook, load_playbook
from services.proposal.domain import (
    Deal,
    QuoteStatus,
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
from shared.domain import Deadline, RuleBroken

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
    assert deal.stage == "won"


def test_a_partial_payment_does_not_win() -> None:
    deal, events = won_steps(quoted(), paid=10)

    assert events == []
    assert deal.stage == "closing"


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
    assert sent.state.stage == "negotiation"


def test_a_revision_supersedes_the_sent_version_which_can_no_longer_be_accepted() -> None:
    revised = on_proposal_sent(
        quoted(), activity(ProposalSent, 3, currency="EUR", lines=LINES[:1]), at(3), PLAYBOOK
    ).state

    assert [version.status for version in revised.quotes] == [QuoteStatus.SUPERSEDED, QuoteStatus.SENT]
    with pytest.raises(RuleBroken) as refused:
        on_proposal_accepted(revised, activity(ProposalAccepted, 4, quote_version=1), at(4), PLAYBOOK)
    assert refused.value.code == "quote_not_sent"


def announced(deadline: Deadline) -> DeadlineReached:
    return DeadlineReached(
        deal_id="d-1", stage_service="proposal", deadline_id=deadline.id, due_at=deadline.due_at
    )


def test_an_unanswered_quote_expires_once() -> None:
    deal = quoted()
    [deadline] = deadlines(deal)
    due = deadline.due_at
    assert deadline == Deadline("quote_expiry", "1", at(2) + timedelta(days=30))
    reached = announced(deadline)

    expired = on_deadline(deal, reached, due, PLAYBOOK)

    assert [type(event) for event in expired.events] == [QuoteExpired]
    assert on_deadline(expired.state, reached, due, PLAYBOOK).events == []
    with pytest.raises(RuleBroken) as refused:
        on_proposal_accepted(expired.state, activity(ProposalAccepted, 40), at(40), PLAYBOOK)
    assert refused.value.code == "quote_expired"


def test_the_expiry_of_a_superseded_quote_changes_nothing() -> None:
    deal = quoted()
    [first_expiry] = deadlines(deal)
    revised = on_proposal_sent(
        deal, activity(ProposalSent, 3, currency="EUR", lines=LINES[:1]), at(3), PLAYBOOK
    ).state
    assert [(d.kind, d.key) for d in deadlines(revised)] == [("quote_expiry", "2")]

    stale = on_deadline(revised, announced(first_expiry), first_expiry.due_at, PLAYBOOK)

    assert (stale.state, stale.events) == (revised, [])


@pytest.mark.parametrize("deadline_id", ["quote-1:expires", "quote_expiry/9@20261202T090000.000000Z", "?"])
def test_an_id_that_is_no_pending_deadline_changes_nothing(deadline_id: str) -> None:
    deal = quoted()
    reached = DeadlineReached(deal_id="d-1", stage_service="proposal", deadline_id=deadline_id, due_at=at(40))

    decision = on_deadline(deal, reached, at(40), PLAYBOOK)

    assert (decision.state, decision.events) == (deal, [])


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


# --- limits: a deal's document stays bounded ------------------------------------------------------


def limited(**limits: int) -> ProposalPlaybook:
    return PLAYBOOK.model_copy(update={"limits": Limits(**limits)})


def test_the_playbook_limits_quote_versions_and_objections() -> None:
    assert (PLAYBOOK.limits.quote_versions, PLAYBOOK.limits.objections) == (20, 50)
    assert ProposalPlaybook.model_validate(PLAYBOOK.model_dump(exclude={"limits"})).limits == Limits(
        quote_versions=20, objections=50
    )


def test_a_quote_version_beyond_the_limit_is_refused() -> None:
    playbook = limited(quote_versions=3)
    deal = qualified()
    for day in range(3):
        prepared = activity(QuotePrepared, day, currency="EUR", lines=LINES)
        deal = on_quote_prepared(deal, prepared, at(day), playbook).state
    assert len(deal.quotes) == 3

    with pytest.raises(RuleBroken) as prepared_again:
        on_quote_prepared(deal, activity(QuotePrepared, 4, currency="EUR", lines=LINES), at(4), playbook)
    with pytest.raises(RuleBroken) as sent_with_lines:
        on_proposal_sent(deal, activity(ProposalSent, 4, currency="EUR", lines=LINES), at(4), playbook)

    assert (prepared_again.value.code, prepared_again.value.field) == ("too_many_quote_versions", "lines")
    assert sent_with_lines.value.code == "too_many_quote_versions"
    sent = on_proposal_sent(deal, activity(ProposalSent, 4, quote_version=3), at(4), playbook)
    assert sent.state.quotes[2].status is QuoteStatus.SENT, "the versions there are can still be sent"


def raise_objection(deal: Deal, objection_id: str, playbook: ProposalPlaybook) -> Deal:
    raised = activity(ObjectionRaised, 2, objection_id=objection_id, category="price")
    return on_objection_raised(deal, raised, at(2), playbook).state


def resolve_objection(deal: Deal, objection_id: str, playbook: ProposalPlaybook) -> Deal:
    resolved = activity(ObjectionResolved, 3, objection_id=objection_id)
    return on_objection_resolved(deal, resolved, at(3), playbook).state


def test_a_new_objection_beyond_the_limit_folds_the_oldest_resolved_one() -> None:
    playbook = limited(objections=3)
    deal = quoted()
    for objection_id in ["o-1", "o-2", "o-3"]:
        deal = raise_objection(deal, objection_id, playbook)
    deal = resolve_objection(deal, "o-2", playbook)
    deal = resolve_objection(deal, "o-1", playbook)

    deal = raise_objection(deal, "o-4", playbook)
    deal = raise_objection(deal, "o-3", playbook)  # raised again: takes no more room

    assert list(deal.objections) == ["o-2", "o-3", "o-4"]
    assert deal.objections_folded == 1
    assert [objection.open for objection in deal.objections.values()] == [False, True, True]


def test_a_new_objection_is_refused_when_every_kept_one_is_open() -> None:
    playbook = limited(objections=2)
    deal = raise_objection(raise_objection(quoted(), "o-1", playbook), "o-2", playbook)

    with pytest.raises(RuleBroken) as refused:
        raise_objection(deal, "o-3", playbook)

    assert (refused.value.code, refused.value.field) == ("too_many_open_objections", "objection_id")
    assert list(raise_objection(deal, "o-2", playbook).objections) == ["o-1", "o-2"]
