"""Wires the onboarding rules to Kafka and MongoDB."""

from contracts.events import DealWon, OnboardingTaskCompleted
from services.onboarding.domain import Onboarding, on_deal_won, on_task_completed
from shared.stage import StageDefinition


def definition() -> StageDefinition:
    return StageDefinition(
        name="onboarding",
        state_model=Onboarding,
        handlers={DealWon: on_deal_won, OnboardingTaskCompleted: on_task_completed},
        opening_events=frozenset({DealWon}),
    )
