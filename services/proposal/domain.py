"""Proposal and closing rules: demo, quotes with approvals and expiry, objections, stages, won or lost.

Stages are the playbook's: a qualified deal gets a pipeline (by its deal type or lead source) and enters
its first proposal stage. After each activity the deal advances while the current stage's exit criteria
hold (facts this service knows: demo held, quote sent or accepted, objections resolved, contract signed,
payment received...) and the activity is one the stage advances on; leaving the last stage wins the deal.
Several stages passed at once are one stage change (the ones between are skipped), except that a won
deal always enters the last stage first. A rep may ask to move a deal forward
(activity.stage_move_requested): refused (exit_criteria_unmet) naming the criteria that do not hold. A
deal is lost from any open stage. Each stage entered sets its next step (deal.stage_changed carries it);
a rep's activity.logged or the playbook's demo rules (`next_step_on`) set a newer one
(deal.next_step_set), and one that falls due is raised once (deal.next_step_overdue, a deadline). A rep
may also give the deal another owner, reopen a lost deal in a new cycle, or correct its amount or
expected close date.

Every time is business time: a stage is entered, and the deal won or lost, when the activity that caused
it happened, but never before the deal entered its current stage (an activity logged out of order moves
the deal at the moment it entered that stage).

A deal may also come with its history from another CRM (opportunity.imported): proposal takes a row in
one of its stages, or won or lost, as it was at the import's `as_of`, and answers deal.imported, never
deal.stage_changed or deal.won for the past. The stages it had left imply their exit criteria; its next
step counts from when it entered its stage, and one due by `as_of` is reported overdue as history. Live
activities then work it as any other deal; once one changed it, a later import of it is refused.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from contracts import Event
from contracts.events import (
    ActivityLogged,
    Company,
    Contact,
    ContractSigned,
    DeadlineReached,
    DealCorrected,
    DealCorrectionReported,
    DealImported,
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
    NextStep,
    NextStepMissing,
    NextStepOverdue,
    ObjectionRaised,
    ObjectionResolved,
    OpportunityHistory,
    OpportunityImported,
    OwnerChangeRequested,
    PaymentReceived,
    ProposalAccepted,
    ProposalSent,
    Quote,
    QuoteExpired,
    QuoteIssued,
    QuoteLine,
    QuoteLineRequest,
    QuotePrepared,
    StageMoveRequested,
    StageVisit,
)
from services.proposal.config import ProposalPlaybook
from shared.domain import Deadline, Decision, RuleBroken, not_before, pending_by_id
from shared.imported import (
    UNKNOWN_CONTACT,
    UNKNOWN_PIPELINE,
    UNKNOWN_STAGE,
    ImportMarks,
    check_history,
    import_marks,
    replaces_import,
)

WON = "won"
LOST = "lost"
CLOSED_STAGES = frozenset({WON, LOST})
QUOTE_EXPIRY = "quote_expiry"  # the deadline of a sent quote, keyed by its version
NEXT_STEP_OVERDUE = "next_step_overdue"  # the deadline of the deal's next step, keyed by cycle and stage


class QuoteStatus(StrEnum):
    NEEDS_APPROVAL = "needs_approval"
    APPROVED = "approved"
    SENT = "sent"
    ACCEPTED = "accepted"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"


class QuoteVersion(BaseModel):
    quote: Quote
    status: QuoteStatus
    approved_by: str | None = None
    expires_at: datetime | None = None


class Objection(BaseModel):
    category: str
    notes: str | None = None
    open: bool = True


class Visit(BaseModel):
    stage: str
    entered_at: datetime


class Deal(ImportMarks):
    deal_id: str
    owner: str
    contact: Contact
    company: Company
    amount: Money | None = Field(
        default=None,
        description="none: an imported deal whose export had no usable amount, until a quote is accepted "
        "or the amount corrected",
    )
    stage: str = Field(description="a stage id of the playbook, or won or lost")
    pipeline: str | None = Field(default=None, description="none: a deal from before pipelines, the default")
    needs_captured: bool = False
    history: list[Visit]
    quotes: list[QuoteVersion] = []
    accepted_version: int | None = None
    signed: bool = False
    paid_minor: int = 0
    objections: dict[str, Objection] = {}
    objections_folded: int = 0  # resolved objections dropped to make room (playbook limits.objections)
    demos_scheduled: int = 0
    demos_held: int = 0
    demo_no_shows: int = 0
    expected_close_date: date | None = None
    cycle: int = Field(default=1, ge=1, description="1, and one more each time the lost deal is reopened")
    next_step: NextStep | None = Field(default=None, description="none: closed, or a stage without one")
    next_step_at: datetime | None = None  # when it was set (business time): an older one does not replace it
    next_step_overdue_raised: str | None = None  # the id of the overdue deadline raised last: once each
    last_activity_at: datetime | None = None  # the latest activity.logged
    prior_facts: list[str] = Field(
        default=[],
        description="facts dealflow did not see happen: the exit criteria of the stages an imported "
        "history had left, and the acceptance of a proposal sent before the import",
    )

    def quote(self, version: int) -> QuoteVersion:
        if not 1 <= version <= len(self.quotes):
            raise RuleBroken("unknown_quote_version", f"there is no quote version {version}", "quote_version")
        return self.quotes[version - 1]


def deadlines(deal: Deal) -> list[Deadline]:
    """A sent quote nobody has accepted expires; an open deal's next step falls overdue, once."""
    expiries = [
        Deadline(QUOTE_EXPIRY, str(version.quote.version), version.expires_at)
        for version in deal.quotes
        if version.status is QuoteStatus.SENT and version.expires_at is not None
    ]
    overdue = next_step_deadline(deal)
    return expiries if overdue is None else [*expiries, overdue]


def next_step_deadline(deal: Deal) -> Deadline | None:
    """When the open deal's next step is due, unless its overdue event was raised already. A newer next
    step (another due time, stage or cycle) is a new deadline."""
    if deal.stage in CLOSED_STAGES or deal.next_step is None:
        return None
    due = Deadline(
        NEXT_STEP_OVERDUE, f"{deal.cycle}:{deal.stage}:{deal.next_step.action}", deal.next_step.due_at
    )
    return None if deal.next_step_overdue_raised == due.id else due


# --- pricing -------------------------------------------------------------------------------------


def percent_off(amount_minor: int, percent: int) -> int:
    """`amount` less `percent`, rounded half up to the minor unit: exact integer arithmetic, no floats."""
    return (amount_minor * (100 - percent) + 50) // 100


def price_quote(
    version: int,
    currency: str,
    requests: list[QuoteLineRequest],
    discount_percent: int,
    playbook: ProposalPlaybook,
) -> Quote:
    lines = []
    for index, request in enumerate(requests):
        prices = playbook.price_list.get(request.product)
        if prices is None:
            raise RuleBroken(
                "unknown_product", f"{request.product!r} is not in the price list", f"lines.{index}.product"
            )
        if currency not in prices:
            raise RuleBroken(
                "currency_not_priced", f"{request.product!r} has no {currency} price", "currency"
            )
        list_price = request.quantity * prices[currency]
        lines.append(
            QuoteLine(
                product=request.product,
                quantity=request.quantity,
                unit_price_minor=prices[currency],
                discount_percent=request.discount_percent,
                total_minor=percent_off(list_price, request.discount_percent),
            )
        )
    subtotal = sum(line.total_minor for line in lines)
    return Quote(
        version=version,
        lines=lines,
        discount_percent=discount_percent,
        subtotal=Money(amount_minor=subtotal, currency=currency),
        total=Money(amount_minor=percent_off(subtotal, discount_percent), currency=currency),
        list_total=Money(
            amount_minor=sum(line.quantity * line.unit_price_minor for line in lines), currency=currency
        ),
    )


def effective_discount_percent(quote: Quote) -> float:
    list_total = quote.list_total.amount_minor
    return 0.0 if list_total == 0 else 100 * (list_total - quote.total.amount_minor) / list_total


# --- handlers ------------------------------------------------------------------------------------


def on_lead_qualified(
    state: Deal | None, qualified: LeadQualified, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    if state is not None:
        return Decision(state)
    deal_type = "expansion" if qualified.expansion_of else qualified.deal_type
    pipeline = playbook.pipeline_for.choose(deal_type, qualified.lead_source)
    first = playbook.stages_of(pipeline)[0]
    needs = qualified.needs.model_dump(exclude_defaults=True)
    deal = Deal(
        deal_id=qualified.deal_id,
        owner=qualified.owner,
        contact=qualified.contact,
        company=qualified.company,
        amount=qualified.amount,
        expected_close_date=qualified.expected_close_date,
        stage=first,
        pipeline=pipeline,
        needs_captured=bool(needs),
        history=[],
    )
    return _move(deal, first, now, playbook)


def on_opportunity_imported(
    state: Deal | None, row: OpportunityImported, now: datetime, playbook: ProposalPlaybook
) -> Decision[Any]:
    """A deal brought in from another CRM with its history, when its stage is one of proposal's or it is
    closed: deal.imported, with an open deal's next step, and no deal.stage_changed or deal.won for the
    past (an imported win is nothing to bill). A row in a qualification stage is qualification's: it
    changes nothing here, and neither does a row no newer than the import that made the deal."""
    if row.pipeline not in playbook.pipelines:
        shown = ", ".join(playbook.pipelines)
        raise RuleBroken(
            UNKNOWN_PIPELINE, f"{row.pipeline!r} is not a pipeline of the playbook ({shown})", "pipeline"
        )
    stages = playbook.pipelines[row.pipeline]
    if row.stage in playbook.qualification_stages.get(row.pipeline, ()):
        return Decision(state)
    if row.stage not in stages and row.stage not in CLOSED_STAGES:
        shown = ", ".join(playbook.pipeline_stages(row.pipeline))
        raise RuleBroken(
            UNKNOWN_STAGE,
            f"{row.stage!r} is not a stage of pipeline {row.pipeline} ({shown}), won or lost",
            "stage",
        )
    if state is not None and not replaces_import(
        state.imported_as_of, state.imported_digest, state.touched_since_import, row
    ):
        return Decision(state)
    check_history(row, playbook.pipeline_stages(row.pipeline))
    deal = _imported_deal(row, state, playbook)
    history = row.model_dump(include=set(OpportunityHistory.model_fields))
    imported = DealImported(**history, stage_service="proposal", next_step=deal.next_step)
    return Decision(deal, [imported])


def _imported_deal(row: OpportunityImported, previous: Deal | None, playbook: ProposalPlaybook) -> Deal:
    """The deal as the row's history leaves it: its stays (else its pipeline's first proposal stage from
    its creation), an open deal's next step counted from when it entered its stage, and the facts the
    stages it had left imply. A next step the deal it replaces already reported overdue stays reported."""
    stages = playbook.pipelines[row.pipeline]
    visits = [Visit(stage=entry.stage, entered_at=entry.entered_at) for entry in row.stage_history]
    if not visits:
        visits = [Visit(stage=stages[0], entered_at=row.created_at)]
    if row.stage in CLOSED_STAGES and visits[-1].stage != row.stage:
        assert row.closed_at is not None  # check_history refuses a closed row without it
        visits.append(Visit(stage=row.stage, entered_at=not_before(row.closed_at, visits[-1].entered_at)))
    elif visits[-1].stage != row.stage:  # no history: it entered its stage, for all we know, when created
        visits.append(Visit(stage=row.stage, entered_at=visits[-1].entered_at))
    rule = None if row.stage in CLOSED_STAGES else playbook.stages[row.stage].next_step
    entered = visits[-1].entered_at
    next_step = (
        None
        if rule is None
        else NextStep(action=rule.action, due_at=entered + timedelta(days=rule.due_after_days))
    )
    reached = [visit.stage for visit in visits if visit.stage in stages]
    left = stages if row.stage == WON else stages[: stages.index(reached[-1])] if reached else ()
    # Whether an objection is open is about now, not a milestone passed: the import knows of none.
    prior_facts = {
        criterion
        for stage in left
        for criterion in playbook.stages[stage].exit_criteria
        if isinstance(criterion, str) and criterion != "objections_resolved"
    }
    return Deal(
        deal_id=row.deal_id,
        owner=row.owner,
        contact=UNKNOWN_CONTACT,
        company=row.company,
        amount=row.amount,
        stage=row.stage,
        pipeline=row.pipeline,
        history=visits,
        expected_close_date=row.expected_close_date,
        next_step=next_step,
        next_step_at=None if next_step is None else entered,
        next_step_overdue_raised=None if previous is None else previous.next_step_overdue_raised,
        **import_marks(row),
        prior_facts=sorted(prior_facts),
    )


def on_demo_scheduled(
    deal: Deal, demo: DemoScheduled, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    _require_open(deal)
    scheduled = deal.model_copy(update={"demos_scheduled": deal.demos_scheduled + 1})
    decision = _advance(Decision(scheduled), "demo_scheduled", now, playbook)
    rule = playbook.next_step_on.demo_scheduled
    if rule is None:
        return decision
    due_at = demo.scheduled_for if rule.at == "meeting" else now + timedelta(days=rule.due_after_days or 0)
    return _set_next_step(decision, NextStep(action=rule.action, due_at=due_at), "demo_scheduled", now)


def on_demo_no_show(
    deal: Deal, demo: DemoNoShow, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    _require_open(deal)
    no_show = deal.model_copy(update={"demo_no_shows": deal.demo_no_shows + 1})
    decision = _advance(Decision(no_show), "demo_no_show", now, playbook)
    rule = playbook.next_step_on.demo_no_show
    if rule is None:
        return decision
    due_at = now + timedelta(days=rule.due_after_days or 0)
    return _set_next_step(decision, NextStep(action=rule.action, due_at=due_at), "demo_no_show", now)


def on_demo_held(deal: Deal, demo: DemoHeld, now: datetime, playbook: ProposalPlaybook) -> Decision[Deal]:
    _require_open(deal)
    held = deal.model_copy(update={"demos_held": deal.demos_held + 1})
    return _advance(Decision(held), "demo_held", now, playbook)


def on_quote_prepared(
    deal: Deal, prepared: QuotePrepared, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    _require_open(deal)
    decision = _prepare(deal, prepared.currency, prepared.lines, prepared.discount_percent, playbook)
    return _advance(decision, "quote_prepared", now, playbook)


def on_discount_approved(
    deal: Deal, approval: DiscountApproved, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    _require_open(deal)
    version = deal.quote(approval.quote_version)
    if version.status is not QuoteStatus.NEEDS_APPROVAL:
        raise RuleBroken(
            "nothing_to_approve", f"quote version {approval.quote_version} is {version.status.value}"
        )
    approved = version.model_copy(update={"status": QuoteStatus.APPROVED, "approved_by": approval.approver})
    updated = _replace_quote(deal, approved)
    issued = QuoteIssued(deal_id=deal.deal_id, quote=approved.quote, status="approved")
    return _advance(Decision(updated, [issued]), "discount_approved", now, playbook)


def on_proposal_sent(
    deal: Deal, sent: ProposalSent, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    _require_open(deal)
    events: list[Event] = []
    if sent.lines:
        if sent.currency is None:
            raise RuleBroken("missing_currency", "a quote needs a currency", "currency")
        prepared = _prepare(deal, sent.currency, sent.lines, sent.discount_percent, playbook)
        deal, version_number = prepared.state, len(prepared.state.quotes)
    elif sent.quote_version is not None:
        version_number = sent.quote_version
    else:
        raise RuleBroken("missing_quote", "send a quote_version, or lines to quote", "quote_version")
    version = deal.quote(version_number)
    if version.status is QuoteStatus.NEEDS_APPROVAL:
        raise RuleBroken(
            "quote_not_approved",
            f"a {effective_discount_percent(version.quote):.1f}% discount needs approval above "
            f"{playbook.discount_approval_above_percent}%",
            "quote_version",
        )
    if version.status is not QuoteStatus.APPROVED:
        raise RuleBroken("quote_not_sendable", f"quote version {version_number} is {version.status.value}")
    expires_at = not_before(now, deal.history[-1].entered_at) + timedelta(days=playbook.quote_validity_days)
    sent_version = version.model_copy(update={"status": QuoteStatus.SENT, "expires_at": expires_at})
    deal = _replace_quote(_supersede_sent(deal), sent_version)
    events.append(
        QuoteIssued(deal_id=deal.deal_id, quote=sent_version.quote, status="sent", expires_at=expires_at)
    )
    return _advance(Decision(deal, events), "proposal_sent", now, playbook)


def on_proposal_accepted(
    deal: Deal, accepted: ProposalAccepted, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    _require_open(deal)
    was_sent = [
        version for version in deal.quotes if version.status in (QuoteStatus.SENT, QuoteStatus.EXPIRED)
    ]
    number = accepted.quote_version or (was_sent[-1].quote.version if was_sent else None)
    if number is None and "quote_sent" in deal.prior_facts:
        # The proposal went out before the deal was imported: it is the one accepted, at the deal's amount.
        prior = sorted({*deal.prior_facts, "quote_accepted"})
        return _advance(
            Decision(deal.model_copy(update={"prior_facts": prior})), "proposal_accepted", now, playbook
        )
    if number is None:
        raise RuleBroken("no_quote", "there is no sent quote to accept")
    version = deal.quote(number)
    if version.status is QuoteStatus.EXPIRED:
        raise RuleBroken("quote_expired", f"quote version {number} expired", "quote_version")
    if version.status is not QuoteStatus.SENT:
        raise RuleBroken(
            "quote_not_sent", f"quote version {number} is {version.status.value}", "quote_version"
        )
    deal = _replace_quote(deal, version.model_copy(update={"status": QuoteStatus.ACCEPTED}))
    deal = deal.model_copy(update={"accepted_version": number, "amount": version.quote.total})
    return _advance(Decision(deal), "proposal_accepted", now, playbook)


def on_contract_signed(
    deal: Deal, signed: ContractSigned, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    _require_open(deal)
    return _advance(Decision(deal.model_copy(update={"signed": True})), "contract_signed", now, playbook)


def on_payment_received(
    deal: Deal, payment: PaymentReceived, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    _require_open(deal)
    if deal.amount is None:
        raise RuleBroken(
            "unknown_amount",
            "the deal has no amount to be paid: accept a quote or correct its amount first",
            "amount",
        )
    if payment.amount.currency != deal.amount.currency:
        raise RuleBroken(
            "currency_mismatch",
            f"payment in {payment.amount.currency}, deal in {deal.amount.currency}",
            "amount",
        )
    paid = deal.model_copy(update={"paid_minor": deal.paid_minor + payment.amount.amount_minor})
    return _advance(Decision(paid), "payment_received", now, playbook)


def on_objection_raised(
    deal: Deal, raised: ObjectionRaised, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    _require_open(deal)
    objection = Objection(category=raised.category, notes=raised.notes)
    kept = _room_for_objection(deal, raised.objection_id, playbook)
    updated = kept.model_copy(update={"objections": {**kept.objections, raised.objection_id: objection}})
    return _advance(Decision(updated), "objection_raised", now, playbook)


def on_objection_resolved(
    deal: Deal, resolved: ObjectionResolved, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    _require_open(deal)
    objection = deal.objections.get(resolved.objection_id)
    if objection is None or not objection.open:
        raise RuleBroken("unknown_objection", f"no open objection {resolved.objection_id!r}", "objection_id")
    closed = objection.model_copy(update={"open": False})
    updated = deal.model_copy(update={"objections": {**deal.objections, resolved.objection_id: closed}})
    return _advance(Decision(updated), "objection_resolved", now, playbook)


def on_deal_lost_reported(
    deal: Deal, report: DealLostReported, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    _require_open(deal)
    if report.reason_code not in playbook.loss_reasons:
        raise RuleBroken("unknown_loss_reason", f"{report.reason_code!r} is not a loss reason", "reason_code")
    if report.reason_code == "competitor" and not report.competitor:
        raise RuleBroken(
            "competitor_required", "a deal lost to a competitor names the competitor", "competitor"
        )
    moved = _move(deal, LOST, now, playbook)
    lost = DealLost(
        deal_id=deal.deal_id,
        stage=deal.stage,
        reason_code=report.reason_code,
        competitor=report.competitor,
        lost_at=moved.state.history[-1].entered_at,
    )
    return Decision(moved.state, [*moved.events, lost])


# --- rep actions at any stage ----------------------------------------------------------------------


def on_activity_logged(
    deal: Deal, logged: ActivityLogged, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    """A call, email, meeting, note or task: the deal's last activity, and its next step if it sets one.

    One dated before the deal was qualified was qualification's to answer: it changes nothing here."""
    if deal.history and now < deal.history[0].entered_at:
        return Decision(deal)
    _require_open(deal)
    latest = now if deal.last_activity_at is None else max(deal.last_activity_at, now)
    recorded = Decision(deal.model_copy(update={"last_activity_at": latest}))
    if logged.next_step is None:
        return recorded
    return _set_next_step(recorded, logged.next_step, "activity.logged", now)


def on_owner_change_requested(
    deal: Deal, request: OwnerChangeRequested, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    """The deal, open or closed, gets another owner; deal.owner_changed tells every service."""
    if playbook.reps and request.new_owner not in playbook.reps:
        raise RuleBroken(
            "unknown_owner", f"{request.new_owner!r} is no active rep of the playbook's teams", "new_owner"
        )
    if request.new_owner == deal.owner:
        raise RuleBroken("owner_unchanged", f"the deal's owner is {deal.owner} already", "new_owner")
    changed = DealOwnerChanged(
        deal_id=deal.deal_id,
        previous_owner=deal.owner,
        owner=request.new_owner,
        changed_at=not_before(now, deal.history[-1].entered_at),
        actor=request.actor,
    )
    return Decision(deal.model_copy(update={"owner": request.new_owner}), [changed])


def on_deal_reopen_requested(
    deal: Deal, request: DealReopenRequested, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    """A lost deal re-enters a stage of its pipeline in its next cycle; its history and facts are kept."""
    if deal.stage != LOST:
        raise RuleBroken("deal_not_lost", f"only a lost deal is reopened; this one is {deal.stage}")
    _pipeline_stages_including(deal, request.to_stage, playbook)
    cycle = deal.cycle + 1
    moved = _move(deal.model_copy(update={"cycle": cycle}), request.to_stage, now, playbook)
    reopened = DealReopened(
        deal_id=deal.deal_id,
        stage=request.to_stage,
        cycle=cycle,
        owner=deal.owner,
        actor=request.actor,
        reason=request.reason,
        reopened_at=moved.state.history[-1].entered_at,
    )
    return Decision(moved.state, [reopened, *moved.events])


def on_deal_correction_reported(
    deal: Deal, correction: DealCorrectionReported, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    """The open deal's amount or expected close date is corrected; deal.corrected keeps the old values."""
    _require_open(deal)
    amount = correction.amount if correction.amount not in (None, deal.amount) else None
    close = (
        correction.expected_close_date
        if correction.expected_close_date not in (None, deal.expected_close_date)
        else None
    )
    if amount is None and close is None:
        raise RuleBroken("nothing_to_correct", "give an amount or an expected close date that differs")
    if (
        amount is not None
        and deal.amount is not None
        and amount.currency != deal.amount.currency
        and (deal.paid_minor or deal.accepted_version)
    ):
        raise RuleBroken(
            "currency_mismatch",
            f"the deal is in {deal.amount.currency} (a quote accepted or a payment received)",
            "amount.currency",
        )
    corrected = DealCorrected(
        deal_id=deal.deal_id,
        previous_amount=None if amount is None else deal.amount,
        amount=amount,
        previous_expected_close_date=None if close is None else deal.expected_close_date,
        expected_close_date=close,
        actor=correction.actor,
        reason=correction.reason,
        corrected_at=not_before(now, deal.history[-1].entered_at),
    )
    updated = deal.model_copy(
        update={"amount": amount or deal.amount, "expected_close_date": close or deal.expected_close_date}
    )
    return Decision(updated, [corrected])


def on_deadline(
    deal: Deal, deadline: DeadlineReached, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    try:
        named = Deadline.parse(deadline.deadline_id)
    except ValueError:
        return Decision(deal)
    due = pending_by_id(deadlines(deal)).get(named.id)
    if due is None:
        return Decision(deal)  # accepted, superseded or expired already, or sent again since
    if due.kind == NEXT_STEP_OVERDUE and deal.next_step is not None:
        overdue = NextStepOverdue(
            deal_id=deal.deal_id,
            owner=deal.owner,
            stage=deal.stage,
            next_step=deal.next_step,
            due_at=now,
            from_history=deal.due_in_history(due.due_at),
        )
        return Decision(deal.model_copy(update={"next_step_overdue_raised": due.id}), [overdue])
    version = deal.quote(int(due.key))
    expired = _replace_quote(deal, version.model_copy(update={"status": QuoteStatus.EXPIRED}))
    return Decision(
        expired, [QuoteExpired(deal_id=deal.deal_id, quote_version=version.quote.version, expired_at=now)]
    )


# --- helpers -------------------------------------------------------------------------------------


def _prepare(
    deal: Deal,
    currency: str,
    lines: list[QuoteLineRequest],
    discount_percent: int,
    playbook: ProposalPlaybook,
) -> Decision[Deal]:
    if len(deal.quotes) >= playbook.limits.quote_versions:
        raise RuleBroken(
            "too_many_quote_versions",
            f"the deal has {len(deal.quotes)} quote versions, the most the playbook allows: "
            "send or accept one of them",
            "lines",
        )
    quote = price_quote(len(deal.quotes) + 1, currency, lines, discount_percent, playbook)
    needs_approval = effective_discount_percent(quote) > playbook.discount_approval_above_percent
    version = QuoteVersion(
        quote=quote, status=QuoteStatus.NEEDS_APPROVAL if needs_approval else QuoteStatus.APPROVED
    )
    superseded = [
        old.model_copy(update={"status": QuoteStatus.SUPERSEDED})
        if old.status in (QuoteStatus.NEEDS_APPROVAL, QuoteStatus.APPROVED)
        else old
        for old in deal.quotes
    ]
    updated = deal.model_copy(update={"quotes": [*superseded, version]})
    status = "needs_approval" if needs_approval else "approved"
    return Decision(updated, [QuoteIssued(deal_id=deal.deal_id, quote=quote, status=status)])


def _room_for_objection(deal: Deal, objection_id: str, playbook: ProposalPlaybook) -> Deal:
    """The deal with room for one more objection: the oldest resolved one is folded away if need be.

    Raising an objection again (same id) takes no room. When every kept objection is open, a new one is
    refused: an open objection blocks closing, so none may be forgotten.
    """
    if objection_id in deal.objections or len(deal.objections) < playbook.limits.objections:
        return deal
    oldest_resolved = next((key for key, objection in deal.objections.items() if not objection.open), None)
    if oldest_resolved is None:
        raise RuleBroken(
            "too_many_open_objections",
            f"the deal has {len(deal.objections)} open objections, the most the playbook allows: "
            "resolve one first",
            "objection_id",
        )
    kept = {key: objection for key, objection in deal.objections.items() if key != oldest_resolved}
    return deal.model_copy(update={"objections": kept, "objections_folded": deal.objections_folded + 1})


def _supersede_sent(deal: Deal) -> Deal:
    quotes = [
        version.model_copy(update={"status": QuoteStatus.SUPERSEDED})
        if version.status is QuoteStatus.SENT
        else version
        for version in deal.quotes
    ]
    return deal.model_copy(update={"quotes": quotes})


def _replace_quote(deal: Deal, version: QuoteVersion) -> Deal:
    quotes = list(deal.quotes)
    quotes[version.quote.version - 1] = version
    return deal.model_copy(update={"quotes": quotes})


def facts(deal: Deal) -> dict[str, bool]:
    """What the service knows of the deal, by the names a playbook's exit criteria use."""
    accepted = None if deal.accepted_version is None else deal.quote(deal.accepted_version)
    due = accepted.quote.total if accepted else deal.amount
    statuses = {version.status for version in deal.quotes}
    seen = {
        "needs_captured": deal.needs_captured,
        "demo_scheduled": deal.demos_scheduled > 0,
        "demo_held": deal.demos_held > 0,
        "quote_prepared": bool(deal.quotes),
        "quote_sent": bool(statuses & {QuoteStatus.SENT, QuoteStatus.ACCEPTED, QuoteStatus.EXPIRED}),
        "quote_accepted": accepted is not None,
        "objections_resolved": not any(objection.open for objection in deal.objections.values()),
        "contract_signed": deal.signed,
        "payment_received": due is not None and deal.paid_minor >= due.amount_minor,
    }
    return {fact: held or fact in deal.prior_facts for fact, held in seen.items()}


def _pipeline_stages_including(deal: Deal, stage: str, playbook: ProposalPlaybook) -> list[str]:
    """The proposal stages of the deal's pipeline; refused (unknown_stage) unless `stage` is one of them."""
    stages = list(playbook.stages_of(deal.pipeline))
    if stage not in stages:
        shown = ", ".join(stages)
        raise RuleBroken("unknown_stage", f"{stage!r} is not a stage of its pipeline ({shown})", "to_stage")
    return stages


def on_stage_move_requested(
    deal: Deal, request: StageMoveRequested, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    """A rep moves the deal forward to a stage of its pipeline, if every stage it leaves lets it go."""
    _require_open(deal)
    stages = _pipeline_stages_including(deal, request.to_stage, playbook)
    if deal.stage not in stages:  # a stage the playbook no longer has: the rep moves it on, unchecked
        return _move(deal, request.to_stage, now, playbook)
    here, there = stages.index(deal.stage), stages.index(request.to_stage)
    if there < here:
        raise RuleBroken(
            "stage_move_backwards", f"the deal is in {deal.stage}, past {request.to_stage}", "to_stage"
        )
    known = facts(deal)
    unmet = [
        f"{stage}: {criterion}"
        for stage in stages[here:there]
        for criterion in playbook.stages[stage].unmet(known)
    ]
    if unmet:
        raise RuleBroken(
            "exit_criteria_unmet",
            f"{deal.stage} -> {request.to_stage} needs exit criteria that do not hold: {'; '.join(unmet)}",
            "to_stage",
        )
    return _move(deal, request.to_stage, now, playbook)


def _advance(
    decision: Decision[Deal], activity: str, now: datetime, playbook: ProposalPlaybook
) -> Decision[Deal]:
    """Advance while the current stage's exit criteria hold and it advances on `activity`."""
    deal = decision.state
    stages = playbook.stages_of(deal.pipeline)
    if deal.stage not in stages:
        return decision  # in a stage the playbook no longer has: only a rep's stage move takes it on
    known = facts(deal)
    index = stages.index(deal.stage)
    while index < len(stages):
        stage = playbook.stages[stages[index]]
        if stage.unmet(known) or (stage.advance_on is not None and activity not in stage.advance_on):
            break
        index += 1
    if index == stages.index(deal.stage):
        return decision
    if index < len(stages):
        moved = _move(deal, stages[index], now, playbook)
        return Decision(moved.state, [*decision.events, *moved.events])
    last = _move(deal, stages[-1], now, playbook)
    return _win(Decision(last.state, [*decision.events, *last.events]), now, playbook)


def _win(decision: Decision[Deal], now: datetime, playbook: ProposalPlaybook) -> Decision[Deal]:
    deal = decision.state
    if deal.amount is None:
        raise RuleBroken(
            "unknown_amount", "a deal is won with an amount: accept a quote or correct its amount first"
        )
    accepted = None if deal.accepted_version is None else deal.quote(deal.accepted_version)
    won = _move(deal, WON, now, playbook)
    history = [
        StageVisit(
            stage=visit.stage,
            entered_at=visit.entered_at,
            left_at=next_visit.entered_at,
            seconds=int((next_visit.entered_at - visit.entered_at).total_seconds()),
        )
        for visit, next_visit in zip(won.state.history, won.state.history[1:], strict=False)
    ]
    deal_won = DealWon(
        deal_id=deal.deal_id,
        customer=deal.company,
        contact=deal.contact,
        owner=deal.owner,
        quote_version=deal.accepted_version,
        lines=accepted.quote.lines if accepted else [],
        amount=deal.amount,
        won_at=won.state.history[-1].entered_at,
        stage_history=history,
    )
    return Decision(won.state, [*decision.events, *won.events, deal_won])


def _move(deal: Deal, stage: str, now: datetime, playbook: ProposalPlaybook) -> Decision[Deal]:
    """The deal enters `stage` (the first one when it has no history yet) with the stage's next step; an
    open stage without one raises deal.next_step_missing, once per entry."""
    if stage == deal.stage and deal.history:
        return Decision(deal)
    at = not_before(now, deal.history[-1].entered_at) if deal.history else now
    previous = deal.history[-1].stage if deal.history else None
    rule = playbook.stages[stage].next_step if stage in playbook.stages else None
    next_step = (
        None
        if rule is None
        else NextStep(action=rule.action, due_at=at + timedelta(days=rule.due_after_days))
    )
    moved = deal.model_copy(
        update={
            "stage": stage,
            "history": [*deal.history, Visit(stage=stage, entered_at=at)],
            "next_step": next_step,
            "next_step_at": at,
        }
    )
    changed = DealStageChanged(
        deal_id=deal.deal_id,
        previous_stage=previous,
        stage=stage,
        probability=playbook.probability(stage),
        changed_at=at,
        next_step=next_step,
    )
    if next_step is None and stage not in CLOSED_STAGES:
        missing = NextStepMissing(deal_id=deal.deal_id, owner=deal.owner, stage=stage, detected_at=at)
        return Decision(moved, [changed, missing])
    return Decision(moved, [changed])


def _set_next_step(decision: Decision[Deal], step: NextStep, source: str, now: datetime) -> Decision[Deal]:
    """The open deal's next step is `step`, unless it is older than the current stage or a newer one."""
    deal = decision.state
    if deal.stage in CLOSED_STAGES or now < deal.history[-1].entered_at:
        return decision  # meant for an earlier stage: the stage entered since set its own
    if deal.next_step_at is not None and now < deal.next_step_at:
        return decision  # logged out of order: a newer next step is in place
    updated = deal.model_copy(update={"next_step": step, "next_step_at": now})
    set_event = DealNextStepSet(
        deal_id=deal.deal_id, stage=deal.stage, next_step=step, source=source, set_at=now
    )
    return Decision(updated, [*decision.events, set_event])


def _require_open(deal: Deal) -> None:
    if deal.stage in CLOSED_STAGES:
        raise RuleBroken("deal_closed", f"the deal is already {deal.stage}")
