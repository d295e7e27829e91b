"""Who sends and who receives each event: the stage services and the systems around them.

This is part of the contract: the AsyncAPI document's operations are generated from it. The contracts
cannot import the services, so a contract test checks each stage service's entry against the events its
code handles and emits; a service that starts handling or emitting an event fails that test until the
event is declared here.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.events import (
    EVENT_TYPES,
    Activity,
    ActivityRejected,
    CheckInDue,
    ContractSigned,
    DeadlineReached,
    DealLost,
    DealLostReported,
    DealStageChanged,
    DealWon,
    DemoHeld,
    DemoNoShow,
    DemoScheduled,
    DiscountApproved,
    DiscoveryCallLogged,
    Event,
    ExpansionDealOpened,
    LeadCaptured,
    LeadDisqualified,
    LeadMerged,
    LeadNurtured,
    LeadQualified,
    LeadRejected,
    NextStepScheduled,
    NurtureRequested,
    ObjectionRaised,
    ObjectionResolved,
    OnboardingAtRisk,
    OnboardingCompleted,
    OnboardingStarted,
    OnboardingTaskCompleted,
    OnboardingTaskRescheduled,
    OnboardingTaskSkipped,
    PaymentReceived,
    ProposalAccepted,
    ProposalSent,
    ProspectIdentified,
    QualificationReopened,
    QuoteExpired,
    QuoteIssued,
    QuotePrepared,
    SlaBreached,
    TouchLogged,
    UpsellIdentified,
    UsageReported,
)
from contracts.topics import STAGE_SERVICES


@dataclass(frozen=True)
class Party:
    """A stage service or an outside system, and the events it sends and receives.

    Every stage service also sends the records it cannot process to its own dead-letter topic;
    `receives_dead_letters` marks who reads them.
    """

    name: str
    description: str
    sends: frozenset[type[Event]] = frozenset()
    receives: frozenset[type[Event]] = frozenset()
    receives_dead_letters: bool = False

    @property
    def is_stage_service(self) -> bool:
        return self.name in STAGE_SERVICES


def _every_activity() -> frozenset[type[Event]]:
    # Activities are logged outside dealflow by definition, so a new activity type is theirs to send.
    return frozenset(model for model in EVENT_TYPES.values() if issubclass(model, Activity))


PARTIES: tuple[Party, ...] = (
    Party(
        name="prospecting",
        description="Validates, deduplicates, scores and routes every captured lead.",
        sends=frozenset({ProspectIdentified, LeadMerged, LeadRejected}),
        receives=frozenset({LeadCaptured}),
    ),
    Party(
        name="qualification",
        description="Works the contact cadence, qualifies with BANT or MEDDIC, opens expansion deals.",
        sends=frozenset(
            {
                NextStepScheduled,
                SlaBreached,
                LeadQualified,
                LeadDisqualified,
                LeadNurtured,
                QualificationReopened,
                ExpansionDealOpened,
                ActivityRejected,
                DeadlineReached,
            }
        ),
        receives=frozenset(
            {
                ProspectIdentified,
                UpsellIdentified,
                TouchLogged,
                DiscoveryCallLogged,
                NurtureRequested,
                DeadlineReached,
            }
        ),
    ),
    Party(
        name="proposal",
        description="Takes a qualified deal through demo, quotes, objections and closing to won or lost.",
        sends=frozenset(
            {
                DealStageChanged,
                QuoteIssued,
                QuoteExpired,
                DealLost,
                DealWon,
                ActivityRejected,
                DeadlineReached,
            }
        ),
        receives=frozenset(
            {
                LeadQualified,
                DemoScheduled,
                DemoNoShow,
                DemoHeld,
                QuotePrepared,
                DiscountApproved,
                ProposalSent,
                ProposalAccepted,
                ContractSigned,
                PaymentReceived,
                ObjectionRaised,
                ObjectionResolved,
                DealLostReported,
                DeadlineReached,
            }
        ),
    ),
    Party(
        name="onboarding",
        description="Turns a won deal into an onboarding plan, tracks time to value, finds expansion.",
        sends=frozenset(
            {
                OnboardingStarted,
                OnboardingAtRisk,
                OnboardingCompleted,
                CheckInDue,
                UpsellIdentified,
                ActivityRejected,
                DeadlineReached,
            }
        ),
        receives=frozenset(
            {
                DealWon,
                OnboardingTaskCompleted,
                OnboardingTaskSkipped,
                OnboardingTaskRescheduled,
                UsageReported,
                DeadlineReached,
            }
        ),
    ),
    Party(
        name="lead-sources",
        description="Upstream systems that capture leads: web forms, enrichment tools, CRMs, SDR teams.",
        sends=frozenset({LeadCaptured}),
        receives=frozenset({LeadRejected}),
    ),
    Party(
        name="sales-tools",
        description="Reps, CRMs, call and email tools, CPQ, e-signature, billing, customer success tools "
        "and the product: they log sales activities and act on next steps, deadlines and rejections.",
        sends=_every_activity(),
        receives=frozenset(
            {
                LeadMerged,
                NextStepScheduled,
                SlaBreached,
                LeadNurtured,
                QualificationReopened,
                ExpansionDealOpened,
                QuoteIssued,
                QuoteExpired,
                OnboardingAtRisk,
                CheckInDue,
                ActivityRejected,
            }
        ),
    ),
    Party(
        name="integrators",
        description="Billing, provisioning, forecasting and data teams building on the deal lifecycle.",
        receives=frozenset(
            {
                LeadQualified,
                LeadDisqualified,
                DealStageChanged,
                QuoteIssued,
                DealLost,
                DealWon,
                OnboardingStarted,
                OnboardingCompleted,
                CheckInDue,
            }
        ),
    ),
    Party(
        name="ops",
        description="Operators, who inspect and re-drive dead letters with `dealflow deadletters`.",
        receives_dead_letters=True,
    ),
)


def party(name: str) -> Party:
    return next(candidate for candidate in PARTIES if candidate.name == name)
