"""Wires the onboarding rules to Kafka and MongoDB."""

from contracts import Event
from contracts.events import (
    DeadlineReached,
    DealOwnerChanged,
    DealWon,
    OnboardingTaskCompleted,
    OnboardingTaskRescheduled,
    OnboardingTaskSkipped,
    UsageReported,
)
from services.onboarding import domain
from services.onboarding.config import load_playbook
from shared.runtime import EventHandler, StageDefinition, with_playbook


def definition() -> StageDefinition:
    playbook = load_playbook()
    handlers: dict[type[Event], EventHandler] = {
        DealWon: domain.on_deal_won,
        OnboardingTaskCompleted: domain.on_task_completed,
        OnboardingTaskSkipped: domain.on_task_skipped,
        OnboardingTaskRescheduled: domain.on_task_rescheduled,
        UsageReported: domain.on_usage_reported,
        DealOwnerChanged: domain.on_owner_changed,
        DeadlineReached: domain.on_deadline,
    }
    return StageDefinition(
        name="onboarding",
        http_port=8084,
        state_model=domain.Onboarding,
        handlers=with_playbook(handlers, playbook),
        opening_events=frozenset({DealWon}),
        # An open deal's owner change is proposal's (or qualification's): nothing to onboard yet.
        ignored_before_opening=frozenset({DealOwnerChanged}),
        deadlines=domain.deadlines,
        business_time=playbook.business_time,
    )
