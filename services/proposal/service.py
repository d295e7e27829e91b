"""Wires the proposal rules to Kafka and MongoDB."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from contracts import Event
from contracts.events import (
    ActivityLogged,
    ContractSigned,
    DeadlineReached,
    DealCorrectionReported,
    DealLostReported,
    DealReopenRequested,
    DemoHeld,
    DemoNoShow,
    DemoScheduled,
    DiscountApproved,
    LeadQualified,
    ObjectionRaised,
    ObjectionResolved,
    OpportunityImported,
    OwnerChangeRequested,
    PaymentReceived,
    ProposalAccepted,
    ProposalSent,
    QuotePrepared,
    StageMoveRequested,
)
from services.proposal import domain
from services.proposal.config import ProposalPlaybook, load_playbook
from shared.domain import Decision
from shared.imported import live
from shared.runtime import StageDefinition, with_playbook


def definition() -> StageDefinition:
    playbook = load_playbook()
    activities: dict[
        type[Event], Callable[[domain.Deal, Any, datetime, ProposalPlaybook], Decision[domain.Deal]]
    ] = {
        DemoScheduled: domain.on_demo_scheduled,
        DemoNoShow: domain.on_demo_no_show,
        DemoHeld: domain.on_demo_held,
        QuotePrepared: domain.on_quote_prepared,
        DiscountApproved: domain.on_discount_approved,
        ProposalSent: domain.on_proposal_sent,
        ProposalAccepted: domain.on_proposal_accepted,
        ContractSigned: domain.on_contract_signed,
        PaymentReceived: domain.on_payment_received,
        ObjectionRaised: domain.on_objection_raised,
        ObjectionResolved: domain.on_objection_resolved,
        DealLostReported: domain.on_deal_lost_reported,
        StageMoveRequested: domain.on_stage_move_requested,
        ActivityLogged: domain.on_activity_logged,
        OwnerChangeRequested: domain.on_owner_change_requested,
        DealReopenRequested: domain.on_deal_reopen_requested,
        DealCorrectionReported: domain.on_deal_correction_reported,
    }
    handlers: dict[type[Event], Callable[..., Decision[Any]]] = {
        LeadQualified: domain.on_lead_qualified,
        OpportunityImported: domain.on_opportunity_imported,
        DeadlineReached: domain.on_deadline,
        **{event_type: live(handler) for event_type, handler in activities.items()},
    }
    return StageDefinition(
        name="proposal",
        http_port=8083,
        state_model=domain.Deal,
        handlers=with_playbook(handlers, playbook),
        opening_events=frozenset({LeadQualified, OpportunityImported}),
        # For a deal still in qualification these are qualification's to answer.
        ignored_before_opening=frozenset({ActivityLogged, OwnerChangeRequested}),
        deadlines=domain.deadlines,
        business_time=playbook.business_time,
    )
