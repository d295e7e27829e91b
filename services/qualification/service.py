"""Wires the qualification rules to Kafka and MongoDB."""

from functools import partial

from contracts.events import (
    ActivityLogged,
    DeadlineReached,
    DiscoveryCallLogged,
    NurtureRequested,
    OpportunityImported,
    OwnerChangeRequested,
    ProspectIdentified,
    TouchLogged,
    UpsellIdentified,
)
from services.qualification import domain
from services.qualification.config import load_playbook
from shared.imported import live
from shared.runtime import StageDefinition, with_playbook


def definition() -> StageDefinition:
    playbook = load_playbook()
    return StageDefinition(
        name="qualification",
        http_port=8082,
        state_model=domain.Qualification,
        handlers=with_playbook(
            {
                ProspectIdentified: domain.on_prospect_identified,
                TouchLogged: live(domain.on_touch_logged),
                DiscoveryCallLogged: live(domain.on_discovery_call_logged),
                NurtureRequested: live(domain.on_nurture_requested),
                ActivityLogged: live(domain.on_activity_logged),
                OwnerChangeRequested: live(domain.on_owner_change_requested),
                DeadlineReached: domain.on_deadline,
                UpsellIdentified: domain.on_upsell_identified,
                OpportunityImported: domain.on_opportunity_imported,
            },
            playbook,
        ),
        opening_events=frozenset({ProspectIdentified, UpsellIdentified, OpportunityImported}),
        deadlines=partial(domain.deadlines, playbook=playbook),
        business_time=playbook.business_time,
    )
