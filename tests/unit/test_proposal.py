from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.events import (
    ActivityLogged,
    Company,
    Contact,
    ContractSigned,
    DeadlineReached,
    DealCorrected,
    DealCorrectionReported,
    DealLost,
    DealLostReported,
    DealNextStepSet,
    DealOwnerChanged,
    DealReopened,
    DealReopenRequested,
    DealStageChanged,
    DealWon,
    DemoHeld,
    DemoNoShow,
    DemoScheduled,
    DiscountApproved,
    LeadQualified,
    Money,
    Needs,
    NextStep,
    NextStepMissing,
    NextStepOverdue,
    ObjectionRaised,
    ObjectionResolved,
    OwnerChangeRequested,
    PaymentReceived,
    ProposalAccepted,
    ProposalSent,
    QuoteExpired,
    QuoteIssued,
    QuoteLineRequest,
    QuotePrepared,
    StageMoveRequested,
)
from services.proposal.config import Limits, ProposalPlaybook, load_playbook
from services.proposal.domain import (
    Deal,
    QuoteStatus,
    deadlines,
    on_activity_logged,
    on_contract_signed,
    on_deadline,
    on_deal_correction_reported,
    on_deal_lost_reported,
    on_deal_reopen_requested,
    on_demo_held,
    on_demo_no_show,
    on_demo_scheduled,
    on_discount_approved,
    on_lead_qualified,
    on_objection_raised,
    on_objection_resolved,
    on_owner_change_requested,
    on_payment_received,
    on_proposal_accepted,
    on_proposal_sent,
    on_quote_prepared,
    on_stage_move_requested,
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


def expiries(deal: Deal) -> list[Deadline]:
    return [deadline for deadline in deadlines(deal) if deadline.kind == "quote_expiry"]


def test_an_unanswered_quote_expires_once() -> None:
    deal = quoted()
    [deadline] = expiries(deal)
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
    [first_expiry] = expiries(deal)
    revised = on_proposal_sent(
        deal, activity(ProposalSent, 3, currency="EUR", lines=LINES[:1]), at(3), PLAYBOOK
    ).state
    assert [(d.kind, d.key) for d in expiries(revised)] == [("quote_expiry", "2")]

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


# --- rep actions at any stage (issue 16) ---------------------------------------------------------


def test_an_activity_with_a_next_step_sets_the_deals_next_step_and_says_so() -> None:
    deal = qualified()
    step = {"action": "send_case_study", "due_at": at(3).isoformat()}
    logged = on_activity_logged(
        deal,
        activity(ActivityLogged, 1, kind="call", outcome="interested", actor="rep", next_step=step),
        at(1),
        PLAYBOOK,
    )

    [event] = logged.events
    assert isinstance(event, DealNextStepSet)
    assert (event.stage, event.next_step.action, event.source, event.set_at) == (
        "presentation",
        "send_case_study",
        "activity.logged",
        at(1),
    )
    assert logged.state.next_step == NextStep(action="send_case_study", due_at=at(3))
    assert logged.state.last_activity_at == at(1)
    assert logged.state.stage == "presentation"  # an activity logged moves no stage


def test_an_activity_without_a_next_step_only_records_when_it_happened() -> None:
    deal = qualified()
    logged = on_activity_logged(deal, activity(ActivityLogged, 2, kind="note"), at(2), PLAYBOOK)
    assert logged.events == []
    assert (logged.state.last_activity_at, logged.state.next_step) == (at(2), deal.next_step)


def test_an_older_activity_does_not_replace_a_newer_next_step_nor_one_of_a_later_stage() -> None:
    deal = qualified()
    newer = {"action": "call_cfo", "due_at": at(5).isoformat()}
    deal = on_activity_logged(
        deal, activity(ActivityLogged, 2, kind="call", next_step=newer), at(2), PLAYBOOK
    ).state
    older = {"action": "email_cfo", "due_at": at(4).isoformat()}
    late = on_activity_logged(
        deal, activity(ActivityLogged, 1, kind="email", next_step=older), at(1), PLAYBOOK
    )
    assert (late.events, late.state.next_step.action if late.state.next_step else None) == ([], "call_cfo")
    before_qualified = on_activity_logged(deal, activity(ActivityLogged, -1, kind="call"), at(-1), PLAYBOOK)
    assert before_qualified.state == deal  # qualification's to answer


def test_an_activity_on_a_closed_deal_is_refused() -> None:
    lost = on_deal_lost_reported(
        qualified(), activity(DealLostReported, 1, reason_code="price"), at(1), PLAYBOOK
    ).state
    with pytest.raises(RuleBroken) as refused:
        on_activity_logged(lost, activity(ActivityLogged, 2, kind="call"), at(2), PLAYBOOK)
    assert refused.value.code == "deal_closed"


def test_demo_scheduled_and_no_show_set_the_playbooks_next_steps() -> None:
    meeting = at(4)
    scheduled = on_demo_scheduled(
        qualified(), activity(DemoScheduled, 1, scheduled_for=meeting.isoformat()), at(1), PLAYBOOK
    )
    [event] = scheduled.events
    assert isinstance(event, DealNextStepSet)
    assert (event.next_step, event.source) == (NextStep(action="hold_demo", due_at=meeting), "demo_scheduled")

    no_show = on_demo_no_show(scheduled.state, activity(DemoNoShow, 4), at(4), PLAYBOOK)
    [event] = no_show.events
    assert isinstance(event, DealNextStepSet)
    assert event.next_step == NextStep(action="reschedule_demo", due_at=at(6))
    assert no_show.state.next_step == event.next_step


def test_a_stage_entered_sets_its_next_step_and_an_overdue_one_is_raised_once() -> None:
    deal = qualified()
    assert deal.next_step == NextStep(action="hold_demo", due_at=T0 + timedelta(days=7))
    [overdue] = [d for d in deadlines(deal) if d.kind == "next_step_overdue"]
    assert overdue.due_at == T0 + timedelta(days=7)

    raised = on_deadline(deal, announced(overdue), overdue.due_at, PLAYBOOK)

    [event] = raised.events
    assert isinstance(event, NextStepOverdue)
    assert (event.stage, event.owner, event.next_step, event.due_at) == (
        "presentation",
        "rep",
        deal.next_step,
        overdue.due_at,
    )
    assert [d for d in deadlines(raised.state) if d.kind == "next_step_overdue"] == []
    assert on_deadline(raised.state, announced(overdue), overdue.due_at, PLAYBOOK).events == []
    # a newer next step is a new deadline: it may fall overdue too
    step = {"action": "call_again", "due_at": at(9).isoformat()}
    renewed = on_activity_logged(
        raised.state, activity(ActivityLogged, 8, kind="call", next_step=step), at(8), PLAYBOOK
    ).state
    assert [d.due_at for d in deadlines(renewed) if d.kind == "next_step_overdue"] == [at(9)]


def test_a_superseded_next_step_is_not_raised() -> None:
    deal = qualified()
    [first] = [d for d in deadlines(deal) if d.kind == "next_step_overdue"]
    step = {"action": "call_again", "due_at": at(9).isoformat()}
    renewed = on_activity_logged(
        deal, activity(ActivityLogged, 2, kind="call", next_step=step), at(2), PLAYBOOK
    )
    stale = on_deadline(renewed.state, announced(first), first.due_at, PLAYBOOK)
    assert stale.events == []


def test_a_stage_the_playbook_no_longer_has_raises_next_step_missing_once() -> None:
    deal = qualified().model_copy(update={"stage": "retired", "next_step": None})
    moved = on_stage_move_requested(
        deal, activity(StageMoveRequested, 1, to_stage="proposal", actor="rep"), at(1), PLAYBOOK
    )
    assert [type(e) for e in moved.events] == [DealStageChanged]  # proposal has a next step
    playbook = PLAYBOOK.model_copy(
        update={
            "stages": {k: v for k, v in PLAYBOOK.stages.items() if k != "negotiation"}
            | {"negotiation": PLAYBOOK.stages["negotiation"].model_copy(update={"next_step": None})}
        }
    )
    sent = on_proposal_sent(
        moved.state, activity(ProposalSent, 2, currency="EUR", lines=LINES), at(2), playbook
    )
    missing = [e for e in sent.events if isinstance(e, NextStepMissing)]
    assert [(e.stage, e.detected_at) for e in missing] == [("negotiation", at(2))]
    assert sent.state.next_step is None
    assert [d for d in deadlines(sent.state) if d.kind == "next_step_overdue"] == []


def test_an_owner_change_gives_the_deal_to_another_rep() -> None:
    deal = qualified()
    request = activity(OwnerChangeRequested, 2, new_owner="anna.schmidt", actor="manager", reason="territory")
    changed = on_owner_change_requested(deal, request, at(2), PLAYBOOK)
    [event] = changed.events
    assert isinstance(event, DealOwnerChanged)
    assert (event.previous_owner, event.owner, event.changed_at, event.actor) == (
        "rep",
        "anna.schmidt",
        at(2),
        "manager",
    )
    assert changed.state.owner == "anna.schmidt"
    _, won = won_steps(
        on_proposal_sent(
            changed.state, activity(ProposalSent, 2, currency="EUR", lines=LINES), at(2), PLAYBOOK
        ).state
    )
    assert [e.owner for e in won if isinstance(e, DealWon)] == ["anna.schmidt"]


@pytest.mark.parametrize(("new_owner", "code"), [("nobody", "unknown_owner"), ("ole.berg", "unknown_owner")])
def test_an_owner_change_to_no_active_rep_is_refused(new_owner: str, code: str) -> None:
    with pytest.raises(RuleBroken) as refused:
        on_owner_change_requested(
            qualified(), activity(OwnerChangeRequested, 1, new_owner=new_owner), at(1), PLAYBOOK
        )
    assert refused.value.code == code


def test_an_owner_change_to_the_same_owner_is_refused() -> None:
    deal = qualified().model_copy(update={"owner": "anna.schmidt"})
    with pytest.raises(RuleBroken) as refused:
        on_owner_change_requested(
            deal, activity(OwnerChangeRequested, 1, new_owner="anna.schmidt"), at(1), PLAYBOOK
        )
    assert refused.value.code == "owner_unchanged"


def lost_deal() -> Deal:
    deal = on_demo_held(qualified(), activity(DemoHeld, 1), at(1), PLAYBOOK).state
    return on_deal_lost_reported(
        deal, activity(DealLostReported, 2, reason_code="timing"), at(2), PLAYBOOK
    ).state


def test_a_lost_deal_reopens_into_a_named_stage_in_a_new_cycle_keeping_its_history() -> None:
    lost = lost_deal()
    request = activity(DealReopenRequested, 10, to_stage="proposal", actor="rep", reason="budget back")

    reopened = on_deal_reopen_requested(lost, request, at(10), PLAYBOOK)

    first, changed = reopened.events
    assert isinstance(first, DealReopened)
    assert (first.stage, first.cycle, first.reopened_at, first.reason) == (
        "proposal",
        2,
        at(10),
        "budget back",
    )
    assert isinstance(changed, DealStageChanged)
    assert (changed.previous_stage, changed.stage, changed.changed_at) == ("lost", "proposal", at(10))
    assert changed.next_step is not None
    state = reopened.state
    assert (state.stage, state.cycle, state.demos_held) == ("proposal", 2, 1)
    assert [visit.stage for visit in state.history] == ["presentation", "proposal", "lost", "proposal"]
    assert state.next_step == changed.next_step
    # the new cycle goes on as any: quote, accept, sign, pay wins it
    sent = on_proposal_sent(state, activity(ProposalSent, 11, currency="EUR", lines=LINES), at(11), PLAYBOOK)
    assert sent.state.stage == "negotiation"


@pytest.mark.parametrize(
    ("deal", "to_stage", "code"),
    [
        (qualified, "proposal", "deal_not_lost"),
        (lambda: won_steps(quoted())[0], "proposal", "deal_not_lost"),
        (lost_deal, "nowhere", "unknown_stage"),
        (lost_deal, "qualification", "unknown_stage"),
    ],
)
def test_reopening_is_refused_unless_lost_and_into_a_stage_of_the_pipeline(
    deal: object, to_stage: str, code: str
) -> None:
    with pytest.raises(RuleBroken) as refused:
        on_deal_reopen_requested(
            deal(),
            activity(DealReopenRequested, 20, to_stage=to_stage),
            at(20),
            PLAYBOOK,  # type: ignore[operator]
        )
    assert refused.value.code == code


def test_a_correction_changes_amount_and_close_date_and_keeps_the_previous_values() -> None:
    deal = qualified().model_copy(update={"expected_close_date": date(2026, 12, 15)})
    correction = activity(
        DealCorrectionReported,
        1,
        amount={"amount_minor": 2_500_000, "currency": "EUR"},
        expected_close_date="2027-01-31",
        actor="rep",
        reason="bigger scope",
    )
    corrected = on_deal_correction_reported(deal, correction, at(1), PLAYBOOK)
    [event] = corrected.events
    assert isinstance(event, DealCorrected)
    assert (event.previous_amount, event.amount) == (
        deal.amount,
        Money(amount_minor=2_500_000, currency="EUR"),
    )
    assert (event.previous_expected_close_date, event.expected_close_date) == (
        date(2026, 12, 15),
        date(2027, 1, 31),
    )
    assert (corrected.state.amount.amount_minor, corrected.state.expected_close_date) == (
        2_500_000,
        date(2027, 1, 31),
    )
    only_date = on_deal_correction_reported(
        corrected.state,
        activity(DealCorrectionReported, 2, expected_close_date="2027-02-28"),
        at(2),
        PLAYBOOK,
    )
    [event] = only_date.events
    assert isinstance(event, DealCorrected)
    assert (event.previous_amount, event.amount, event.expected_close_date) == (None, None, date(2027, 2, 28))


def test_corrections_that_change_nothing_or_a_closed_deal_are_refused() -> None:
    deal = qualified()
    for fields in ({}, {"amount": deal.amount.model_dump()}):
        with pytest.raises(RuleBroken) as refused:
            on_deal_correction_reported(deal, activity(DealCorrectionReported, 1, **fields), at(1), PLAYBOOK)
        assert refused.value.code == "nothing_to_correct"
    won = won_steps(quoted())[0]
    with pytest.raises(RuleBroken) as refused:
        on_deal_correction_reported(
            won, activity(DealCorrectionReported, 9, expected_close_date="2027-01-01"), at(9), PLAYBOOK
        )
    assert refused.value.code == "deal_closed"
