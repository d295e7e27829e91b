"""What a stage service really writes to Kafka conforms to the AsyncAPI document: events and dead letters."""

from __future__ import annotations

import pytest

from cli.kafka_io import publish
from contracts import Topic
from contracts.asyncapi import document
from contracts.events import LeadCaptured
from services.prospecting.service import definition as prospecting
from shared.envelope import KafkaRecord, encode
from shared.settings import Settings
from tests.asyncapi_conformance import record_problems
from tests.integration.helpers import events_when, fit_lead, running, send

pytestmark = pytest.mark.integration

FIT_LEAD = fit_lead("lead-fit")
INVALID_LEAD = LeadCaptured(lead_id="lead-invalid", email="not-an-email", company_name="X")


async def test_emitted_events_and_dead_letters_conform_to_the_asyncapi_document(settings: Settings) -> None:
    template = encode(FIT_LEAD, topic=settings.topic(Topic.LEADS), source="/test")
    not_json = KafkaRecord(
        topic=template.topic,
        key=b"lead-broken",
        value=b'{"lead_id": "lead-broken", "email": ',
        headers=template.headers | {"ce_id": "not-json"},
    )
    async with running(prospecting(), settings):
        await send(settings, FIT_LEAD, INVALID_LEAD)
        await publish(settings, [not_json])
        events = await events_when(
            settings,
            lambda seen: (
                {"prospect.identified.v1", "lead.rejected.v1"} <= {event.type for event in seen}
                and any("dlq_error_code" in event.headers for event in seen)
            ),
        )

    asyncapi = document()
    emitted = [event for event in events if event.headers.get("ce_source") == "/dealflow/prospecting"]
    dead = [event for event in events if "dlq_error_code" in event.headers]
    assert {event.type for event in emitted} == {"prospect.identified.v1", "lead.rejected.v1"}
    assert all({"ce_sequence", "traceparent"} <= set(event.headers) for event in emitted)
    assert len(dead) == 1
    for event in [*emitted, *dead]:
        problems = record_problems(
            asyncapi,
            topic=event.topic,
            namespace=settings.namespace,
            key=event.key,
            headers=event.headers,
            value=event.value,
        )
        assert problems == [], f"{event.topic} {event.type}: {problems}"
