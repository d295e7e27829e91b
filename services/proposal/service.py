"""Wires the proposal rules to Kafka and MongoDB."""

from contracts.events import (
    ContractSigned,
    DealLostReported,
    DemoHeld,
    LeadQualified,
    PaymentReceived,
    ProposalAccepted,
    ProposalSent,
)
from services.proposal import domain
from shared.stage import StageDefinition


def definition() -> StageDefinition:
    return StageDefinition(
        name="proposal",
        state_model=domain.Deal,
        handlers={
            LeadQualified: domain.on_lead_qualified,
            DemoHeld: domain.on_demo_held,
            ProposalSent: domain.on_proposal_sent,
            ProposalAccepted: domain.on_proposal_accepted,
            ContractSigned: domain.on_contract_signed,
            PaymentReceived: domain.on_payment_received,
            DealLostReported: domain.on_deal_lost_reported,
        },
        opening_events=frozenset({LeadQualified}),
    )
