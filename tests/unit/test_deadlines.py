"""Time in the runtime: which replica may announce a deadline, and what a deadline that is not due does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import DefaultPartitioner

from contracts.events import DeadlineReached, Event
from services.qualification.service import definition as qualification
from shared.envelope import decode, encode
from shared.kafka import partition_of
from shared.settings import Settings
from shared.stage import StageService
from shared.store import Aggregate, ParkedRecord
from tests.unit.test_qualification import prospect

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("deal_id", ["deal-1", "lead-acme-001", "ü-unicode", "x" * 200])
@pytest.mark.parametrize("partitions", [1, 6, 12])
def test_a_deal_maps_to_the_partition_the_producers_send_it_to(deal_id: str, partitions: int) -> None:
    everything = list(range(partitions))
    assert partition_of(deal_id, partitions) == DefaultPartitioner()(deal_id.encode(), everything, everything)


async def decided(service: StageService, aggregate: Aggregate, event: Event, event_id: str) -> Aggregate:
    record = encode(event, topic=service.settings.topic(event.TOPIC), source="/test", event_id=event_id)
    envelope = decode(record.headers, record.value, max_bytes=service.settings.max_event_bytes)
    raw = ParkedRecord(record.topic, 0, 0, record.headers, record.value.decode())
    return await service._decide(aggregate, envelope, raw)


async def test_a_deadline_not_due_in_the_state_is_left_unconsumed_and_a_due_one_is_applied() -> None:
    service = StageService(qualification(), Settings(), clock=lambda: NOW)
    opened = await decided(service, Aggregate(id="d-1"), prospect("A", NOW), "prospect-1")
    pending = dict(opened.deadlines)
    assert "1:first_touch_overdue" in pending

    def deadline(deadline_id: str) -> DeadlineReached:
        return DeadlineReached(
            deal_id="d-1", stage_service="qualification", deadline_id=deadline_id, due_at=NOW
        )

    not_due = await decided(service, opened, deadline("1:reopen"), "deadline-reopen")
    assert not_due is opened, "nothing stored, so the same deadline announced later is not a copy"

    due = await decided(service, opened, deadline("1:first_touch_overdue"), "deadline-first-touch")
    assert due.has_applied("deadline-first-touch")
    assert [record.headers["ce_type"] for record in due.outbox] == [
        "io.dealflow.qualification.sla_breached.v1"
    ]
