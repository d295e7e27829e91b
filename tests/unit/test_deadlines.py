"""Time in the runtime: which replica may announce a deadline, and where due deadlines are found."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.partitioner import DefaultPartitioner

from shared.kafka import partition_of
from shared.runtime.deadlines import DeadlineIndex
from shared.store import Aggregate


@pytest.mark.parametrize("deal_id", ["deal-1", "lead-acme-001", "ü-unicode", "x" * 200])
@pytest.mark.parametrize("partitions", [1, 6, 12])
def test_a_deal_maps_to_the_partition_the_producers_send_it_to(deal_id: str, partitions: int) -> None:
    everything = list(range(partitions))
    assert partition_of(deal_id, partitions) == DefaultPartitioner()(deal_id.encode(), everything, everything)


class CountingStore:
    """Stands in for the database: counts reads, holds one stored deal with a deadline."""

    def __init__(self, stored: dict[str, list[tuple[str, datetime]]]) -> None:
        self.stored = stored
        self.reads: list[list[int]] = []

    async def deadlines_in(
        self, partitions: list[int]
    ) -> AsyncIterator[tuple[str, list[tuple[str, datetime]]]]:
        self.reads.append(list(partitions))
        for deal_id, deadlines in self.stored.items():
            yield deal_id, deadlines


async def test_due_deadlines_come_from_memory_read_once_per_assignment() -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    earlier, later = now - timedelta(hours=1), now + timedelta(hours=1)
    store = CountingStore({"stored-deal": [("first_touch/1@x", earlier)]})
    index = DeadlineIndex(store)  # type: ignore[arg-type]
    index.assigned({0, 1})
    await asyncio.sleep(0)  # the load runs in the background
    assert store.reads == [[0, 1]]
    assert index.loaded(0)
    assert index.loaded(1)
    index.note(
        Aggregate(id="written-deal", partition=1, deadlines=(("quote/1@y", earlier), ("quote/2@z", later)))
    )
    for _ in range(3):
        due = index.due(now)
        assert sorted(d.deal_id for d in due) == ["stored-deal", "written-deal"]
        index.postpone(due)
    assert store.reads == [[0, 1]], "looking for due work reads nothing"
    index.note(Aggregate(id="written-deal", partition=1))  # its write removed the deadlines
    assert [d.deal_id for d in index.due(now)] == ["stored-deal"]
