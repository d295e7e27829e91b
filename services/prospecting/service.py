"""Wires the prospecting rules to Kafka and MongoDB."""

from functools import partial

from contracts.events import LeadCaptured
from services.prospecting.config import load_playbook
from services.prospecting.domain import Lead, on_lead_captured
from shared.stage import StageDefinition


def definition() -> StageDefinition:
    playbook = load_playbook()
    return StageDefinition(
        name="prospecting",
        state_model=Lead,
        handlers={LeadCaptured: partial(on_lead_captured, playbook=playbook)},
        opening_events=frozenset({LeadCaptured}),
    )
