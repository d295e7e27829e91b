"""Which stored outboxes may be unpublished, told without a write per event (shared.runtime.outbox)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from shared.envelope import KafkaRecord
from shared.runtime.deadlines import DeadlineIndex
from shared.runtime.outbox import Outbox
from shared.store import Aggregate, PartitionEntry


def record(name: str) -> KafkaRecord:
    return KafkaRecord(topic="t", key=name.encode(), value=b"{}", headers={"ce_id": name})


def stored(aggregate_id: str, partition: int, ticket: int | None, *events: str) -> Aggregate:
    return Aggregate(
        id=aggregate_id,
        version=1,
        partition=partition,
        outbox=tuple(record(event) for event in events),
        outbox_ticket=ticket,
    )


class FakeStore:
    """The database as recovery sees it: aggregates and per-partition checkpoints, with reads counted."""

    def __init__(self, aggregates: Sequence[Aggregate], checkpoints: dict[int, int]) -> None:
        self.aggregates = {aggregate.id: aggregate for aggregate in aggregates}
        self.checkpoints = dict(checkpoints)
        self.scans: list[list[int]] = []
        self.marked_sent: list[str] = []
        self.returned: list[str] = []

    async def in_partitions(
        self, partitions: Sequence[int], published_through: Mapping[int, int]
    ) -> AsyncIterator[PartitionEntry]:
        """As AggregateStore's query: deadlines, or an outbox after the checkpoint (or without a ticket)."""
        self.scans.append(list(partitions))
        for aggregate in self.aggregates.values():
            if aggregate.partition not in partitions:
                continue
            checkpoint = published_through.get(aggregate.partition)
            after_checkpoint = bool(aggregate.outbox) and (
                checkpoint is None or aggregate.outbox_ticket is None or aggregate.outbox_ticket > checkpoint
            )
            if aggregate.deadlines or after_checkpoint:
                self.returned.append(aggregate.id)
                yield PartitionEntry(
                    aggregate.id,
                    aggregate.partition,
                    aggregate.deadlines,
                    bool(aggregate.outbox),
                    aggregate.outbox_ticket,
                )

    async def load_many(self, ids: Sequence[str]) -> list[Aggregate]:
        return [self.aggregates.get(aggregate_id) or Aggregate(id=aggregate_id) for aggregate_id in ids]

    async def mark_sent(self, aggregate: Aggregate) -> None:
        self.marked_sent.append(aggregate.id)

    async def read(self, partitions: Sequence[int]) -> dict[int, int]:
        return {p: t for p, t in self.checkpoints.items() if p in partitions}

    async def write(self, published_through: dict[int, int]) -> None:
        for partition, ticket in published_through.items():
            self.checkpoints[partition] = max(ticket, self.checkpoints.get(partition, ticket))


async def recovered(store: FakeStore, partitions: set[int]) -> tuple[Outbox, list[str]]:
    published: list[str] = []

    async def publish(records: Sequence[KafkaRecord]) -> None:
        published.extend(r.headers["ce_id"] for r in records)

    outbox = Outbox(
        store=store,  # type: ignore[arg-type]
        checkpoints=store,  # type: ignore[arg-type]
        deadline_index=DeadlineIndex(),
        publish=publish,
    )
    outbox.assigned(partitions)
    await asyncio.wait_for(outbox.recovered(lambda: False), 5)
    return outbox, published


async def test_recovery_publishes_only_what_lies_past_the_checkpoint_in_one_read() -> None:
    store = FakeStore(
        [
            stored("published-long-ago", 0, 3, "old"),
            stored("left-by-a-crash", 0, 5, "crashed"),
            stored("other-partition", 1, 9, "elsewhere"),
            stored("stored-before-tickets", 0, None, "legacy"),
        ],
        checkpoints={0: 4, 1: 9},
    )
    outbox, published = await recovered(store, {0, 1})
    assert sorted(published) == ["crashed", "legacy"]
    assert store.scans == [[0, 1]]
    assert store.marked_sent == ["stored-before-tickets"], "only an outbox without a ticket is marked sent"
    assert store.checkpoints == {0: 9, 1: 9}
    assert outbox.next_ticket() == 10, "tickets go on past every ticket stored"


async def test_an_outbox_read_later_is_dropped_when_the_checkpoint_covers_it() -> None:
    outbox, _ = await recovered(FakeStore([], checkpoints={0: 7}), {0})
    assert outbox.as_read(stored("a", 0, 7, "x")).outbox == ()
    assert outbox.as_read(stored("b", 0, 8, "y")).outbox != ()
    assert outbox.as_read(stored("c", 0, None, "z")).outbox != ()


async def test_the_checkpoint_never_passes_an_outbox_a_failed_batch_left_unpublished() -> None:
    store = FakeStore([], checkpoints={0: 0})
    outbox, _ = await recovered(store, {0})
    failed = outbox.next_ticket()
    stranded = stored("stranded", 0, failed, "lost?")
    outbox.stored([stranded])  # written; the batch then failed before the broker took it
    later = outbox.next_ticket()
    fine = stored("fine", 0, later, "ok")
    outbox.stored([fine])
    outbox.published([fine], later)
    await outbox.flush()
    assert store.checkpoints[0] == failed - 1
    assert outbox.as_read(stranded).outbox != (), "a later read still publishes it"
    assert outbox.leftovers(["fine"]) == ["stranded"]
    assert outbox.backlog == 1
    outbox.published([stranded], outbox.next_ticket())
    assert outbox.published_through[0] == failed + 2, "known in memory at once"
    await outbox.flush()
    assert store.checkpoints[0] == failed + 2
    assert outbox.backlog == 0


async def test_recovery_fills_the_deadline_index_from_the_same_read() -> None:
    due = datetime(2026, 3, 2, tzinfo=UTC)
    with_deadline = replace(stored("deal", 0, 1), deadlines=(("quote/1@x", due),))
    store = FakeStore([with_deadline], checkpoints={})
    outbox, _ = await recovered(store, {0})
    assert outbox.deadline_index.loaded(0)
    assert [d.deal_id for d in outbox.deadline_index.due(due)] == ["deal"]
    assert store.scans == [[0]]


async def test_a_checkpoint_that_could_not_be_written_is_written_with_a_later_one() -> None:
    class FailingOnce(FakeStore):
        failures = 1

        async def write(self, published_through: dict[int, int]) -> None:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("database away")
            await super().write(published_through)

    store = FailingOnce([], checkpoints={0: 0, 1: 0})
    store.failures = 0
    outbox, _ = await recovered(store, {0, 1})
    store.failures = 2  # the write in the background, and the one flush tries again
    first = outbox.next_ticket()
    outbox.published([stored("a", 0, first, "x")], first)
    await outbox.flush()
    assert store.checkpoints == {0: 0, 1: 0}
    second = outbox.next_ticket()
    outbox.published([stored("b", 1, second, "y")], second)
    await outbox.flush()
    assert store.checkpoints == {0: first, 1: second}
