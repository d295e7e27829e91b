"""The recovery read at partition assignment returns what recovery needs, not the whole partition.

Outboxes are not cleared after they are published (that would be a write per event), so nearly every
stored aggregate keeps one. The read must leave out those at or before their partition's checkpoint:
otherwise its size grows with the collection instead of with the pending work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from shared.envelope import KafkaRecord
from shared.mongo import make_client
from shared.settings import Settings
from shared.store import Aggregate, AggregateStore

pytestmark = pytest.mark.integration


def aggregate(name: str, partition: int, ticket: int | None, *, due: bool = False) -> Aggregate:
    record = KafkaRecord(topic="t", key=name.encode(), value=b"{}", headers={"ce_id": name})
    return Aggregate(
        id=name,
        version=1,
        state={"name": name},
        partition=partition,
        outbox=(record,),
        outbox_ticket=ticket,
        deadlines=((f"{name}-deadline", datetime(2026, 1, 1, tzinfo=UTC)),) if due else (),
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[AggregateStore]:
    client = make_client(settings, app_name="dealflow-recovery-read-test")
    try:
        store = AggregateStore(client[settings.database_name("recovery-read")]["aggregates"])
        await store.prepare()
        yield store
    finally:
        await client.close()


async def test_only_outboxes_after_the_checkpoint_and_pending_deadlines_are_read(
    store: AggregateStore,
) -> None:
    published = [aggregate(f"published-{n}", n % 2, n) for n in range(1, 41)]
    await store.save_all(
        [
            (Aggregate(id=a.id), a)
            for a in [
                *published,
                aggregate("after-checkpoint", 0, 90),
                aggregate("published-with-deadline", 1, 3, due=True),
                aggregate("no-ticket", 0, None),
                aggregate("unchecked-partition", 2, 1),
                aggregate("not-assigned", 3, 99),
            ]
        ]
    )

    read = [entry async for entry in store.in_partitions([0, 1, 2], {0: 50, 1: 50})]

    assert sorted(entry.id for entry in read) == [
        "after-checkpoint",
        "no-ticket",
        "published-with-deadline",
        "unchecked-partition",
    ]
    deadline = next(entry for entry in read if entry.id == "published-with-deadline")
    assert deadline.deadlines == (("published-with-deadline-deadline", datetime(2026, 1, 1, tzinfo=UTC)),)
