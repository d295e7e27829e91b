"""Who sends and who receives each event: the services and the systems around them.

This is part of the contract: the AsyncAPI document's operations are generated from it. The contracts
cannot import the services, so a contract test checks each service's entry against the events its
code handles and emits; a service that starts handling or emitting an event fails that test until the
event is declared here.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.events import (
    EVENT_TYPES,
    Activity,
    ActivityLogged,
    ActivityRejected,
    CheckInDue,
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
    DealStalled,
    DealWon,
    DemoHeld,
    DemoNoShow,
    DemoScheduled,
    DiscountApproved,
    DiscoveryCallLogged,
    ErasureRequested,
    Event,
    ExpansionDealOpened,
    LeadCaptured,
    LeadDisqualified,
    LeadMerged,
    LeadNurtured,
    LeadQualified,
    LeadRejected,
    NextStepMissing,
    NextStepOverdue,
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
    OpportunityImported,
    OwnerChangeRequested,
    PaymentReceived,
    PersonalDataErased,
    ProposalAccepted,
    ProposalSent,
    ProspectIdentified,
    QualificationReopened,
    QuoteExpired,
    QuoteIssued,
    QuotePrepared,
    SlaBreached,
    StageMoveRequested,
    TouchLogged,
    UpsellIdentified,
    UsageReported,
)
from contracts.topics import SERVICES


@dataclass(frozen=True)
class Party:
    """A service or an outside system, and the events it sends and receives.

    Every service (the stages and insights, all on the shared runtime) also sends the records it cannot
    process to its own dead-letter topic;
    `receives_dead_letters` marks who reads them.
    """

    name: str
    description: str
    sends: frozenset[type[Event]] = frozenset()
    receives: frozenset[type[Event]] = frozenset()
    receives_dead_letters: bool = False

    @property
    def is_service(self) -> bool:
        """One of dealflow's own processes on the shared runtime, as opposed to a system around it."""
        return self.name in SERVICES


def _events(*models: type[Event]) -> frozenset[type[Event]]:
    return frozenset(models)


def _every_activity() -> frozenset[type[Event]]:
    # Activities are logged outside dealflow by definition, so a new activity type is theirs to send.
    return frozenset(model for model in EVENT_TYPES.values() if issubclass(model, Activity))


# The shared runtime answers erasure requests in every service, besides its handlers.
_ERASURE_RECEIVED = _events(ErasureRequested)
_ERASURE_CONFIRMED = _events(PersonalDataErased)

PARTIES: tuple[Party, ...] = (
    Party(
        name="prospecting",
        description="Validates, deduplicates, scores and routes every captured lead; learns which deals "
        "closed (won, lost, disqualified) so a lead matching only closed deals opens a new deal.",
        sends=_events(ProspectIdentified, LeadMerged, LeadRejected) | _ERASURE_CONFIRMED,
        receives=_events(LeadCaptured, DealWon, DealLost, LeadDisqualified) | _ERASURE_RECEIVED,
    ),
    Party(
        name="qualification",
        description="Works the contact cadence, qualifies with BANT or MEDDIC, opens expansion deals.",
        sends=_events(
            NextStepScheduled,
            SlaBreached,
            LeadQualified,
            LeadDisqualified,
            LeadNurtured,
            QualificationReopened,
            ExpansionDealOpened,
            DealOwnerChanged,
            NextStepOverdue,
            DealImported,
            ActivityRejected,
            DeadlineReached,
        )
        | _ERASURE_CONFIRMED,
        receives=_events(
            ProspectIdentified,
            UpsellIdentified,
            OpportunityImported,
            TouchLogged,
            DiscoveryCallLogged,
            NurtureRequested,
            ActivityLogged,
            OwnerChangeRequested,
            DeadlineReached,
        )
        | _ERASURE_RECEIVED,
    ),
    Party(
        name="proposal",
        description="Takes a qualified deal through demo, quotes, objections and closing to won or lost.",
        sends=_events(
            DealStageChanged,
            QuoteIssued,
            QuoteExpired,
            DealLost,
            DealWon,
            DealNextStepSet,
            NextStepOverdue,
            NextStepMissing,
            DealOwnerChanged,
            DealReopened,
            DealCorrected,
            DealImported,
            ActivityRejected,
            DeadlineReached,
        )
        | _ERASURE_CONFIRMED,
        receives=_events(
            LeadQualified,
            OpportunityImported,
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
            StageMoveRequested,
            ActivityLogged,
            OwnerChangeRequested,
            DealReopenRequested,
            DealCorrectionReported,
            DeadlineReached,
        )
        | _ERASURE_RECEIVED,
    ),
    Party(
        name="onboarding",
        description="Turns a won deal into an onboarding plan, tracks time to value, finds expansion.",
        sends=_events(
            OnboardingStarted,
            OnboardingAtRisk,
            OnboardingCompleted,
            CheckInDue,
            UpsellIdentified,
            ActivityRejected,
            DeadlineReached,
        )
        | _ERASURE_CONFIRMED,
        receives=_events(
            DealWon,
            OnboardingTaskCompleted,
            OnboardingTaskSkipped,
            OnboardingTaskRescheduled,
            UsageReported,
            DealOwnerChanged,
            DeadlineReached,
        )
        | _ERASURE_RECEIVED,
    ),
    Party(
        name="insights",
        description="Keeps every deal's timeline from the stage events (a read model, rebuilt by replay), "
        "serves the forecast, funnel, bottlenecks and the pipeline page, and raises stalled deals.",
        sends=_events(DealStalled, DeadlineReached) | _ERASURE_CONFIRMED,
        receives=_events(
            ProspectIdentified,
            LeadMerged,
            ExpansionDealOpened,
            NextStepScheduled,
            SlaBreached,
            LeadNurtured,
            QualificationReopened,
            LeadQualified,
            LeadDisqualified,
            DealStageChanged,
            QuoteIssued,
            QuoteExpired,
            DealLost,
            DealWon,
            OnboardingStarted,
            OnboardingCompleted,
            DealNextStepSet,
            NextStepOverdue,
            NextStepMissing,
            DealOwnerChanged,
            DealReopened,
            DealCorrected,
            DealImported,
            DeadlineReached,
        )
        | _ERASURE_RECEIVED,
    ),
    Party(
        name="lead-sources",
        description="Upstream systems that capture leads: web forms, enrichment tools, CRMs, SDR teams.",
        sends=_events(LeadCaptured),
        receives=_events(LeadRejected),
    ),
    Party(
        name="sales-tools",
        description="Reps, CRMs, call and email tools, CPQ, e-signature, billing, customer success tools "
        "and the product: they log sales activities and act on next steps, deadlines and rejections.",
        sends=_every_activity(),
        receives=_events(
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
            DealStalled,
            DealOwnerChanged,
            NextStepOverdue,
            DealNextStepSet,
            NextStepMissing,
        ),
    ),
    Party(
        name="integrators",
        description="Billing, provisioning, forecasting and data teams building on the deal lifecycle.",
        receives=_events(
            LeadQualified,
            LeadDisqualified,
            DealStageChanged,
            DealOwnerChanged,
            DealReopened,
            DealCorrected,
            DealImported,
            QuoteIssued,
            DealLost,
            DealWon,
            OnboardingStarted,
            OnboardingCompleted,
            CheckInDue,
        ),
    ),
    Party(
        name="crm-imports",
        description="Sales operations bringing their history from another CRM: `dealflow import "
        "opportunities` publishes each opportunity of an export; deal.imported or activity.rejected "
        "tells what became of each.",
        sends=_events(OpportunityImported),
        receives=_events(DealImported, ActivityRejected),
    ),
    Party(
        name="privacy-officers",
        description="Data protection staff: `dealflow erase` files an erasure request and waits for every "
        "service's confirmation.",
        sends=_events(ErasureRequested),
        receives=_events(PersonalDataErased),
    ),
    Party(
        name="ops",
        description="Operators, who inspect and re-drive dead letters with `dealflow deadletters`.",
        receives_dead_letters=True,
    ),
)


def party(name: str) -> Party:
    return next(candidate for candidate in PARTIES if candidate.name == name)
