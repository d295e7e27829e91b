"""insights runs the shared runtime, so it has a stage service's duties: its dead letters are listed by
`dealflow deadletters` without naming it and are read with every topic, and it confirms erasure requests."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from cli.deadletters import position
from cli.kafka_io import SeenEvent, publish
from cli.main import app as cli
from contracts import dead_letter_topic
from contracts.events import ErasureRequested
from services.insights.service import definition as insights
from shared.envelope import KafkaRecord, encode
from shared.settings import Settings
from tests.insights_events import prospect
from tests.integration.helpers import events_when, of_type, running, send

pytestmark = pytest.mark.integration


def unreadable_prospect(settings: Settings) -> KafkaRecord:
    """A prospect event with proper headers whose value is not JSON: insights must dead-letter it."""
    event = prospect("deal-unreadable", "anna.schmidt")
    proper = encode(event, topic=settings.topic(event.TOPIC), source="/test", event_id="unreadable")
    return KafkaRecord(topic=proper.topic, key=proper.key, value=b"{not json", headers=proper.headers)


def dead_letters(events: list[SeenEvent]) -> list[SeenEvent]:
    return [event for event in events if "dlq_service" in event.headers]


async def test_insights_dead_letters_are_listed_by_default_and_it_confirms_erasure(
    settings: Settings,
) -> None:
    async with running(insights(), settings):
        await publish(settings, [unreadable_prospect(settings)])
        # events_when reads every topic of the deployment (cli.kafka_io.all_topics), dead letters included.
        events = await events_when(settings, lambda seen: dead_letters(seen) != [])
        await send(settings, ErasureRequested(request_id="erasure-insights", email="jana.novak@acme.de"))
        confirmed = await events_when(settings, lambda seen: of_type(seen, "personal_data.erased.v1") != [])

    [dead] = dead_letters(events)
    assert dead.topic == settings.topic(dead_letter_topic("insights"))
    assert (dead.headers["dlq_service"], dead.headers["dlq_error_code"]) == ("insights", "invalid_json")

    listed = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["deadletters", "list"],
        env=settings.environment() | {"COLUMNS": "300"},
    )
    assert listed.exit_code == 0, listed.output
    assert position(dead) in listed.output
    assert "1 dead letter(s)" in listed.output

    [confirmation] = of_type(confirmed, "personal_data.erased.v1")
    assert confirmation.data is not None
    assert (confirmation.data["service"], confirmation.data["request_id"]) == ("insights", "erasure-insights")
