"""Proposal and closing rules: presentation, quote, acceptance, signature, payment; won or lost."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from contracts.events import (
    Company,
    Contact,
    ContractSigned,
    DealLost,
    DealLostReported,
    DealStageChanged,
    DealWon,
    DemoHeld,
    Event,
    LeadQualified,
    Money,
    PaymentReceived,
    ProposalAccepted,
    ProposalSent,
    QuoteLine,
    StageVisit,
)
from shared.domain import Decision, RuleBroken


class Stage(StrEnum):
    PRESENTATION = "presentation"
    PROPOSAL = "proposal"
    NEGOTIATION = "negotiation"
    CLOSING = "closing"
    WON = "won"
    LOST = "lost"


WIN_PROBABILITY: dict[Stage, float] = {
    Stage.PRESENTATION: 0.2,
    Stage.PROPOSAL: 0.4,
    Stage.NEGOTIATION: 0.6,
    Stage.CLOSING: 0.8,
    Stage.WON: 1.0,
    Stage.LOST: 0.0,
}
CLOSED_STAGES = frozenset({Stage.WON, Stage.LOST})


class Visit(BaseModel):
    stage: Stage
    entered_at: datetime


class Deal(BaseModel):
    deal_id: str
    owner: str
    contact: Contact
    company: Company
    amount: Money
    stage: Stage
    history: list[Visit]
    quote: list[QuoteLine] = []
    quote_currency: str | None = None
    accepted: bool = False
    signed: bool = False
    paid_minor: int = 0


def quote_total_minor(lines: list[QuoteLine]) -> int:
    """Each line's price after its discount, rounded half up to the minor unit, summed."""
    return sum(
        (line.quantity * line.unit_price_minor * (100 - line.discount_percent) + 50) // 100 for line in lines
    )


def on_lead_qualified(state: Deal | None, qualified: LeadQualified, now: datetime) -> Decision[Deal]:
    if state is not None:
        return Decision(state)
    deal = Deal(
        deal_id=qualified.deal_id,
        owner=qualified.owner,
        contact=qualified.contact,
        company=qualified.company,
        amount=qualified.amount,
        stage=Stage.PRESENTATION,
        history=[Visit(stage=Stage.PRESENTATION, entered_at=now)],
    )
    return Decision(deal, [_stage_changed(deal.deal_id, None, Stage.PRESENTATION, now)])


def on_demo_held(deal: Deal, demo: DemoHeld, now: datetime) -> Decision[Deal]:
    _require_open(deal)
    if deal.stage is not Stage.PRESENTATION:
        return Decision(deal)
    return _move(deal, Stage.PROPOSAL, now)


def on_proposal_sent(deal: Deal, proposal: ProposalSent, now: datetime) -> Decision[Deal]:
    _require_open(deal)
    quoted = deal.model_copy(
        update={
            "quote": proposal.lines,
            "quote_currency": proposal.currency,
            "amount": Money(amount_minor=quote_total_minor(proposal.lines), currency=proposal.currency),
            "accepted": False,
        }
    )
    return _move(quoted, Stage.NEGOTIATION, now) if deal.stage is not Stage.NEGOTIATION else Decision(quoted)


def on_proposal_accepted(deal: Deal, accepted: ProposalAccepted, now: datetime) -> Decision[Deal]:
    _require_open(deal)
    if not deal.quote:
        raise RuleBroken("no_quote", "there is no quote to accept")
    return _close_if_done(_move(deal.model_copy(update={"accepted": True}), Stage.CLOSING, now), now)


def on_contract_signed(deal: Deal, signed: ContractSigned, now: datetime) -> Decision[Deal]:
    _require_open(deal)
    return _close_if_done(Decision(deal.model_copy(update={"signed": True})), now)


def on_payment_received(deal: Deal, payment: PaymentReceived, now: datetime) -> Decision[Deal]:
    _require_open(deal)
    if payment.amount.currency != deal.amount.currency:
        raise RuleBroken(
            "currency_mismatch",
            f"payment in {payment.amount.currency}, deal in {deal.amount.currency}",
            "amount",
        )
    paid = deal.model_copy(update={"paid_minor": deal.paid_minor + payment.amount.amount_minor})
    return _close_if_done(Decision(paid), now)


def on_deal_lost_reported(deal: Deal, report: DealLostReported, now: datetime) -> Decision[Deal]:
    _require_open(deal)
    moved = _move(deal, Stage.LOST, now)
    lost = DealLost(
        deal_id=deal.deal_id,
        stage=deal.stage.value,
        reason_code=report.reason_code,
        competitor=report.competitor,
        lost_at=now,
    )
    return Decision(moved.state, [*moved.events, lost])


def _close_if_done(decision: Decision[Deal], now: datetime) -> Decision[Deal]:
    deal = decision.state
    if not (deal.accepted and deal.signed and deal.paid_minor >= deal.amount.amount_minor):
        return decision
    won = _move(deal, Stage.WON, now)
    history = [
        StageVisit(
            stage=visit.stage.value,
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
        lines=deal.quote,
        amount=deal.amount,
        won_at=now,
        stage_history=history,
    )
    return Decision(won.state, [*decision.events, *won.events, deal_won])


def _move(deal: Deal, stage: Stage, now: datetime) -> Decision[Deal]:
    moved = deal.model_copy(
        update={"stage": stage, "history": [*deal.history, Visit(stage=stage, entered_at=now)]}
    )
    return Decision(moved, [_stage_changed(deal.deal_id, deal.stage, stage, now)])


def _stage_changed(deal_id: str, previous: Stage | None, stage: Stage, now: datetime) -> Event:
    return DealStageChanged(
        deal_id=deal_id,
        previous_stage=None if previous is None else previous.value,
        stage=stage.value,
        probability=WIN_PROBABILITY[stage],
        changed_at=now,
    )


def _require_open(deal: Deal) -> None:
    if deal.stage in CLOSED_STAGES:
        raise RuleBroken("deal_closed", f"the deal is already {deal.stage.value}")
