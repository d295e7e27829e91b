"""Time in the runtime: which replica may announce a deadline, and where due deadlines are found."""

from __future__ import annotations

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


async def test_due_deadlines_come_from_memory_filled_once_per_assignment() -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    earlier, later = now - timedelta(hours=1), now + timedelta(hours=1)
    index = DeadlineIndex()
    index.assigned({0, 1})
    assert not index.loaded(0), "nothing is announced for a partition before its deadlines are read"
    index.fill([Aggregate(id="stored-deal", partition=0, deadlines=(("first_touch/1@x", earlier),))], {0, 1})
    assert index.loaded(0)
    assert index.loaded(1)
    index.note(
        Aggregate(id="written-deal", partition=1, deadlines=(("quote/1@y", earlier), ("quote/2@z", later)))
    )
    for _ in range(3):
        due = index.due(now)
        assert sorted(d.deal_id for d in due) == ["stored-deal", "written-deal"]
        index.postpone(due)
    index.note(Aggregate(id="written-deal", partition=1))  # its write removed the deadlines
    assert [d.deal_id for d in index.due(now)] == ["stored-deal"]


def test_a_write_made_before_the_read_is_not_undone_by_it() -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    index = DeadlineIndex()
    index.assigned({0})
    index.note(Aggregate(id="deal", partition=0, deadlines=(("quote/2@z", now),)))
    index.fill([Aggregate(id="deal", partition=0, deadlines=(("quote/1@y", now),))], {0})
    assert [d.deadline_id for d in index.due(now)] == ["quote/2@z"]


def test_a_new_assignment_forgets_the_partitions_it_lost() -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    index = DeadlineIndex()
    index.assigned({0, 1})
    index.fill(
        [
            Aggregate(id="kept", partition=0, deadlines=(("a", now),)),
            Aggregate(id="moved", partition=1, deadlines=(("b", now),)),
        ],
        {0, 1},
    )
    index.assigned({0})
    assert not index.loaded(1)
    assert [d.deal_id for d in index.due(now)] == ["kept"]
