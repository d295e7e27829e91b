"""Wires the qualification rules to Kafka and MongoDB."""

from contracts.events import DiscoveryCallLogged, ProspectIdentified
from services.qualification.domain import Qualification, on_discovery_call_logged, on_prospect_identified
from shared.stage import StageDefinition


def definition() -> StageDefinition:
    return StageDefinition(
        name="qualification",
        state_model=Qualification,
        handlers={ProspectIdentified: on_prospect_identified, DiscoveryCallLogged: on_discovery_call_logged},
        opening_events=frozenset({ProspectIdentified}),
    )
