"""Wires the insights read model to Kafka and MongoDB."""

from functools import partial

from contracts import Event
from contracts.events import (
    DeadlineReached,
    DealCorrected,
    DealImported,
    DealLost,
    DealNextStepSet,
    DealOwnerChanged,
    DealReopened,
    DealStageChanged,
    DealWon,
    ExpansionDealOpened,
    LeadDisqualified,
    LeadMerged,
    LeadNurtured,
    LeadQualified,
    NextStepMissing,
    NextStepOverdue,
    NextStepScheduled,
    OnboardingCompleted,
    OnboardingStarted,
    ProspectIdentified,
    QualificationReopened,
    QuoteExpired,
    QuoteIssued,
    SlaBreached,
)
from services.insights import api, domain
from services.insights.config import load_playbook
from shared.runtime import EventHandler, StageDefinition, with_playbook

NAME = "insights"


def definition() -> StageDefinition:
    playbook = load_playbook()
    handlers: dict[type[Event], EventHandler] = {
        ProspectIdentified: domain.on_prospect_identified,
        LeadMerged: domain.on_lead_merged,
        ExpansionDealOpened: domain.on_expansion_opened,
        NextStepScheduled: domain.on_next_step_scheduled,
        SlaBreached: domain.on_sla_breached,
        LeadNurtured: domain.on_lead_nurtured,
        QualificationReopened: domain.on_qualification_reopened,
        LeadQualified: domain.on_lead_qualified,
        LeadDisqualified: domain.on_lead_disqualified,
        DealStageChanged: domain.on_stage_changed,
        QuoteIssued: domain.on_quote_issued,
        QuoteExpired: domain.on_quote_expired,
        DealLost: domain.on_deal_lost,
        DealWon: domain.on_deal_won,
        OnboardingStarted: domain.on_onboarding_started,
        OnboardingCompleted: domain.on_onboarding_completed,
        DealNextStepSet: domain.on_next_step_set,
        NextStepOverdue: domain.on_next_step_overdue,
        NextStepMissing: domain.on_next_step_missing,
        DealOwnerChanged: domain.on_owner_changed,
        DealReopened: domain.on_deal_reopened,
        DealCorrected: domain.on_deal_corrected,
        DealImported: domain.on_deal_imported,
        DeadlineReached: domain.on_deadline,
    }
    return StageDefinition(
        name=NAME,
        http_port=8085,
        http_routes=partial(api.routes, playbook=playbook),
        state_model=domain.Timeline,
        handlers=with_playbook(handlers, playbook),
        # A read model never waits: whichever event of a deal comes first opens its timeline.
        opening_events=frozenset(handlers),
        deadlines=partial(domain.deadlines, playbook=playbook),
    )
