"""The stage runtime on the real Kafka broker and database server: delivery, dead letters, outbox."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from pymongo import AsyncMongoClient

from cli.kafka_io import SeenEvent, publish
from contracts import Topic, dead_letter_topic
from contracts.events import DiscoveryCallLogged, LeadCaptured, ProposalAccepted
from services.proposal.service import definition as proposal
from services.prospecting.service import definition as prospecting
from services.qualification.service import definition as qualification
from shared.envelope import KafkaRecord, encode
from shared.kafka import partition_of
from shared.mongo import Document, make_client, service_database
from shared.runtime.service import StageService
from shared.settings import Settings
from shared.store import Aggregate, AggregateStore
from tests.integration.helpers import events_when, fit_lead, of_type, running

pytestmark = pytest.mark.integration

GOOD_LEAD = fit_lead("lead-good")
INVALID_LEAD = LeadCaptured(lead_id="lead-invalid", email="not-an-email", company_name="X")
OVERSIZED_NAME_LEAD = json.dumps({"lead_id": "lead-long", "email": "a@b.example", "last_name": "N" * 1001})


def lead_record(settings: Settings, lead: LeadCaptured, event_id: str) -> KafkaRecord:
    return encode(lead, topic=settings.topic(Topic.LEADS), source="/test", event_id=event_id)


def raw_lead(settings: Settings, value: bytes, **headers: str) -> KafkaRecord:
    base = lead_record(settings, GOOD_LEAD, "raw").headers
    return KafkaRecord(topic=settings.topic(Topic.LEADS), key=b"raw", value=value, headers=base | headers)


async def test_bad_records_are_dead_lettered_and_good_ones_still_flow(settings: Settings) -> None:
    records = [
        raw_lead(settings, b'{"lead_id": "broken", "email": ', ce_id="bad-json"),
        raw_lead(settings, b"{}", ce_id="bad-type", ce_type="io.dealflow.no_such_event.v1"),
        raw_lead(settings, OVERSIZED_NAME_LEAD.encode(), ce_id="bad-size"),
        lead_record(settings, GOOD_LEAD, "lead-1"),
        lead_record(settings, GOOD_LEAD, "lead-1"),  # the same event redelivered
        lead_record(settings, GOOD_LEAD, "lead-1-resent"),  # the same lead sent again by its source
        lead_record(settings, INVALID_LEAD, "lead-2"),
    ]
    async with running(prospecting(), settings) as service:
        await publish(settings, records)
        events = await events_when(
            settings,
            lambda seen: (
                len(of_type(seen, "lead.rejected.v1")) == 1
                and sum("dlq_error_code" in event.headers for event in seen) == 3
            ),
        )
        await asyncio.sleep(1)  # anything emitted twice would show up by now
        events = await events_when(settings, lambda seen: True)

    prospects = of_type(events, "prospect.identified.v1")
    assert [event.key for event in prospects] == ["lead-good"]
    assert [event.key for event in of_type(events, "lead.rejected.v1")] == ["lead-invalid"]
    dead = sorted((e for e in events if "dlq_error_code" in e.headers), key=lambda e: e.headers["ce_id"])
    assert [event.headers["dlq_error_code"] for event in dead] == [
        "invalid_json",
        "schema_violation",
        "unknown_event_type",
    ]
    # The reason names the field and the limit, never the value (it may be personal data).
    assert dead[1].headers["dlq_error"] == "last_name: String should have at most 1000 characters"
    assert dead[0].topic == settings.topic(dead_letter_topic("prospecting"))
    assert dead[0].headers["dlq_source_topic"] == settings.topic(Topic.LEADS)
    assert dead[0].headers["dlq_source_offset"].isdigit()
    assert service.metrics.total("dealflow_duplicates_absorbed") == 1
    assert service.metrics.total("dealflow_events_dead_lettered") == 3


async def recovery_done(service: StageService) -> None:
    """The recovery of the assigned partitions ended (it marks an outbox without a ticket sent)."""
    for _ in range(100):
        if service.outbox.is_recovered:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the partitions' recovery did not end")


async def stored_with_outbox(
    client: AsyncMongoClient[Document], settings: Settings, *outbox: KafkaRecord
) -> AggregateStore:
    """Prospecting's store holding a prospect whose events a crash of an earlier version (which stored no
    ticket with its outbox) left unpublished."""
    store = AggregateStore(service_database(client, settings, "prospecting")["aggregates"])
    partition = partition_of("lead-good", settings.partitions)
    stored = Aggregate(id="lead-good", partition=partition).changed(
        applied=("x", ""), state={"lead_id": "lead-good", "outcome": "prospect"}, parked=(), outbox=outbox
    )
    await store.save_all([(Aggregate(id="lead-good"), stored)])
    return store


async def test_events_left_in_the_outbox_by_a_crash_are_published_at_start(settings: Settings) -> None:
    pending = lead_record(settings, GOOD_LEAD, "left-behind")
    pending = KafkaRecord(
        topic=settings.topic(Topic.PROSPECTS), key=pending.key, value=pending.value, headers=pending.headers
    )
    client = make_client(settings, app_name="test")
    store = await stored_with_outbox(client, settings, pending)

    async with running(prospecting(), settings) as service:
        events = await events_when(
            settings, lambda seen: any(e.headers.get("ce_id") == "left-behind" for e in seen)
        )
        await recovery_done(service)

    assert len([e for e in events if e.headers.get("ce_id") == "left-behind"]) == 1
    assert (await store.load("lead-good")).outbox == ()
    await client.close()


async def test_a_record_in_the_outbox_the_broker_refuses_is_dead_lettered_not_retried_at_every_start(
    settings: Settings,
) -> None:
    good = lead_record(settings, GOOD_LEAD, "fine")
    refused = KafkaRecord(
        topic=settings.topic(Topic.PROSPECTS),
        key=b"lead-good",
        value=b'{"x": "' + b"y" * (settings.max_event_bytes * 5) + b'"}',
        headers=good.headers | {"ce_id": "too-large"},
    )
    fine = KafkaRecord(
        topic=settings.topic(Topic.PROSPECTS), key=good.key, value=good.value, headers=good.headers
    )
    client = make_client(settings, app_name="test")
    store = await stored_with_outbox(client, settings, refused, fine)

    async with running(prospecting(), settings) as service:
        events = await events_when(
            settings,
            lambda seen: (
                any(e.headers.get("dlq_error_code") == "broker_refused_record" for e in seen)
                and any(e.headers.get("ce_id") == "fine" and "dlq_error_code" not in e.headers for e in seen)
            ),
        )
        assert service.started
        await recovery_done(service)
    [dead] = [e for e in events if e.headers.get("dlq_error_code") == "broker_refused_record"]
    assert dead.headers["ce_id"] == "too-large"
    assert int(dead.headers["dlq_value_bytes"]) > settings.max_event_bytes * 5
    assert (await store.load("lead-good")).outbox == ()
    await client.close()


async def test_an_activity_that_arrives_before_its_prospect_is_held_then_applied(settings: Settings) -> None:
    call = DiscoveryCallLogged.model_validate(
        {
            "deal_id": "lead-good",
            "occurred_at": datetime.now(UTC).isoformat(),
            "answers": {"budget": True, "authority": True, "need": True, "timeline": True},
            "estimated_amount": {"amount_minor": 500000, "currency": "EUR"},
            "actor_role": "rep",
        }
    )
    async with running(qualification(), settings), running(prospecting(), settings):
        await publish(settings, [encode(call, topic=settings.topic(Topic.ACTIVITIES), source="/test")])
        await asyncio.sleep(2)
        await publish(settings, [lead_record(settings, GOOD_LEAD, "lead-1")])
        events = await events_when(settings, lambda seen: bool(of_type(seen, "lead.qualified.v1")))

    [qualified] = of_type(events, "lead.qualified.v1")
    assert qualified.key == "lead-good"
    assert qualified.data is not None
    assert qualified.data["amount"] == {"amount_minor": 500000, "currency": "EUR"}
    assert qualified.headers["ce_source"] == "/dealflow/qualification"


async def test_an_activity_whose_deal_never_opens_is_dead_lettered(settings: Settings) -> None:
    impatient = settings.model_copy(update={"parked_max_age_seconds": 1.0, "timer_tick_seconds": 0.2})
    orphan = DiscoveryCallLogged.model_validate(
        {
            "deal_id": "deal-never-opened",
            "occurred_at": datetime.now(UTC).isoformat(),
            "answers": {"budget": True, "authority": True, "need": True, "timeline": True},
        }
    )
    first, again = (
        encode(orphan, topic=settings.topic(Topic.ACTIVITIES), source="/test", event_id=event_id)
        for event_id in ("orphan-call", "orphan-call-again")
    )

    def dead_letters(seen: list[SeenEvent]) -> list[SeenEvent]:
        return [event for event in seen if "dlq_error_code" in event.headers]

    async with running(qualification(), impatient):
        await publish(settings, [first])
        await events_when(settings, lambda seen: len(dead_letters(seen)) == 1)
        # The same deal parks an event again after its first expiry: that one is answered too.
        await publish(settings, [again])
        await events_when(settings, lambda seen: len(dead_letters(seen)) == 2)
        await asyncio.sleep(1)  # a second answer for either event would arrive by now
        events = await events_when(settings, lambda seen: True)

    assert [dead.headers["ce_id"] for dead in dead_letters(events)] == ["orphan-call", "orphan-call-again"]
    dead = dead_letters(events)[0]
    assert dead.topic == settings.topic(dead_letter_topic("qualification"))
    assert dead.headers["dlq_error_code"] == "deal_never_opened"
    assert "prospect.identified.v1" in dead.headers["dlq_error"]
    assert (dead.key, dead.value) == ("deal-never-opened", first.value)
    assert dead.headers["dlq_source_topic"] == settings.topic(Topic.ACTIVITIES)
    assert of_type(events, "lead.qualified.v1") == []


async def test_a_rule_break_is_answered_with_a_rejection_and_changes_nothing(settings: Settings) -> None:
    accepted = ProposalAccepted(deal_id="lead-good", occurred_at=datetime.now(UTC))
    call = DiscoveryCallLogged.model_validate(
        {
            "deal_id": "lead-good",
            "occurred_at": datetime.now(UTC).isoformat(),
            "answers": {"budget": True, "authority": True, "need": True, "timeline": True},
            "estimated_amount": {"amount_minor": 100, "currency": "EUR"},
            "actor_role": "rep",
        }
    )
    async with (
        running(prospecting(), settings),
        running(qualification(), settings),
        running(proposal(), settings),
    ):
        await publish(
            settings,
            [
                lead_record(settings, GOOD_LEAD, "lead-1"),
                encode(call, topic=settings.topic(Topic.ACTIVITIES), source="/test"),
                encode(accepted, topic=settings.topic(Topic.ACTIVITIES), source="/test", event_id="accept-1"),
            ],
        )
        events = await events_when(settings, lambda seen: bool(of_type(seen, "activity.rejected.v1")))

    [rejected] = of_type(events, "activity.rejected.v1")
    assert rejected.data is not None
    assert rejected.data["reason"]["code"] == "no_quote"
    assert rejected.data["activity_event_id"] == "accept-1"
    stages = [json.dumps(e.data) for e in of_type(events, "deal.stage_changed.v1")]
    assert len(stages) == 1
    assert '"presentation"' in stages[0]
