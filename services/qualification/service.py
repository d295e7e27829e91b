"""Wires the qualification rules to Kafka and MongoDB."""

from functools import partial

from contracts.events import (
    DeadlineReached,
    DiscoveryCallLogged,
    NurtureRequested,
    ProspectIdentified,
    TouchLogged,
    UpsellIdentified,
)
from services.qualification import domain
from services.qualification.config import load_playbook
from shared.stage import StageDefinition


def definition() -> StageDefinition:
    playbook = load_playbook()
    return StageDefinition(
        name="qualification",
        state_model=domain.Qualification,
        handlers={
            ProspectIdentified: partial(domain.on_prospect_identified, playbook=playbook),
            TouchLogged: partial(domain.on_touch_logged, playbook=playbook),
            DiscoveryCallLogged: partial(domain.on_discovery_call_logged, playbook=playbook),
            NurtureRequested: partial(domain.on_nurture_requested, playbook=playbook),
            DeadlineReached: partial(domain.on_deadline, playbook=playbook),
            UpsellIdentified: partial(domain.on_upsell_identified, playbook=playbook),
        },
        opening_events=frozenset({ProspectIdentified, UpsellIdentified}),
        deadlines=partial(domain.deadlines, playbook=playbook),
    )
