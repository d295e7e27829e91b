"""Which stored outboxes may still be unpublished, without a write per event to say they were sent.

Every batch stores its aggregates with their outboxes under one ticket, a number that only grows, and
after the broker has the records it writes one small checkpoint per input partition: every outbox of that
partition with a ticket up to it was published. The aggregate's next write replaces its outbox, so
nothing else is cleared. A stored outbox with a ticket past its partition's checkpoint may be unpublished:
it is published again (at least once), when its aggregate is read, or when the partition is assigned.

What may be unpublished is known in memory: the outboxes this replica stored and has not yet seen the
broker take. The checkpoint never passes one of them, so a batch that stored its writes and then failed
loses nothing, whatever the batches after it do. Checkpoints only grow (`$max`), and a replica's tickets
start past every ticket and checkpoint of the partitions it is assigned, so a late write by the replica
that owned a partition before cannot cover an outbox of the one that owns it now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import structlog

from shared.envelope import KafkaRecord
from shared.runtime.deadlines import DeadlineIndex
from shared.store import Aggregate, AggregateStore, OutboxCheckpoints

NOTHING_PUBLISHED = -1


class StoppedBeforeRecovery(Exception):
    """A stop was asked for while a batch waited for its partitions' recovery: it is redelivered."""


@dataclass
class Outbox:
    store: AggregateStore
    checkpoints: OutboxCheckpoints
    deadline_index: DeadlineIndex
    publish: Callable[[Sequence[KafkaRecord]], Awaitable[None]]
    retry_seconds: float = 2.0
    published_through: dict[int, int] = field(default_factory=dict)
    # Aggregate id -> (input partition, ticket) of outboxes stored and not yet seen published.
    unpublished: dict[str, tuple[int, int]] = field(default_factory=dict)
    _ticket: int = NOTHING_PUBLISHED
    _unwritten: dict[int, int] = field(default_factory=dict)
    _writing: asyncio.Task[None] | None = None
    _recovered: asyncio.Event = field(default_factory=asyncio.Event)
    _recovery: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.log = structlog.get_logger()

    # --- assignment ------------------------------------------------------------------------------

    def assigned(self, partitions: set[int]) -> None:
        """Start over for a new assignment: recover what the new partitions may have left unpublished."""
        if self._recovery is not None:
            self._recovery.cancel()
        self.published_through = {}
        self.unpublished = {key: entry for key, entry in self.unpublished.items() if entry[0] in partitions}
        self._unwritten = {p: t for p, t in self._unwritten.items() if p in partitions}
        self.deadline_index.assigned(partitions)
        self._recovered = asyncio.Event()
        if partitions:
            self._recovery = asyncio.get_running_loop().create_task(self._recover(sorted(partitions)))
        else:
            self._recovered.set()

    @property
    def is_recovered(self) -> bool:
        return self._recovered.is_set()

    async def recovered(self, stopping: Callable[[], bool]) -> None:
        """Wait until the assigned partitions are recovered; a stop asked for meanwhile raises."""
        while not self._recovered.is_set():
            if stopping():
                raise StoppedBeforeRecovery
            try:
                await asyncio.wait_for(self._recovered.wait(), timeout=1.0)
            except TimeoutError:
                continue

    async def _recover(self, partitions: Sequence[int]) -> None:
        """One read of the partitions: their pending deadlines, and the outboxes past their checkpoints."""
        while True:
            try:
                await self._recover_once(partitions)
                self._recovered.set()
                return
            except asyncio.CancelledError:
                raise
            except Exception as fault:  # the servers are away: try again, the partitions must recover
                self.log.warning("partition_recovery_failed", error=repr(fault))
                await asyncio.sleep(self.retry_seconds)

    async def _recover_once(self, partitions: Sequence[int]) -> None:
        checkpoints = await self.checkpoints.read(partitions)
        pending: list[str] = []
        deadlines: list[Aggregate] = []
        highest = max(checkpoints.values(), default=NOTHING_PUBLISHED)
        async for entry in self.store.in_partitions(partitions, checkpoints):
            if entry.deadlines:
                deadlines.append(Aggregate(id=entry.id, partition=entry.partition, deadlines=entry.deadlines))
            if entry.outbox_ticket is not None:
                highest = max(highest, entry.outbox_ticket)
            if entry.has_outbox and (
                entry.outbox_ticket is None
                or entry.outbox_ticket > checkpoints.get(entry.partition, NOTHING_PUBLISHED)
            ):
                pending.append(entry.id)
        for aggregate in await self.store.load_many(pending):
            if aggregate.outbox:
                await self.publish(aggregate.outbox)
                if aggregate.outbox_ticket is None:
                    await self.store.mark_sent(aggregate)
        self._ticket = max(self._ticket, highest)
        self.published_through = {partition: highest for partition in partitions}
        await self.checkpoints.write(self.published_through)
        self.deadline_index.fill(deadlines, set(partitions))
        if pending:
            self.log.info("unpublished_events_recovered", aggregates=len(pending))

    # --- batches ---------------------------------------------------------------------------------

    def as_read(self, aggregate: Aggregate) -> Aggregate:
        """The aggregate as read, its outbox kept only if it may be unpublished."""
        if not aggregate.outbox or self.may_be_unpublished(aggregate):
            return aggregate
        return replace(aggregate, outbox=())

    def may_be_unpublished(self, aggregate: Aggregate) -> bool:
        if aggregate.outbox_ticket is None or aggregate.partition is None:
            return True
        return aggregate.outbox_ticket > self.published_through.get(aggregate.partition, NOTHING_PUBLISHED)

    def leftovers(self, besides: Iterable[str]) -> list[str]:
        """Aggregates whose stored outbox a failed batch left unpublished, other than these."""
        skip = set(besides)
        return [aggregate_id for aggregate_id in self.unpublished if aggregate_id not in skip]

    def next_ticket(self) -> int:
        self._ticket += 1
        return self._ticket

    def stored(self, aggregates: Iterable[Aggregate]) -> None:
        for aggregate in aggregates:
            if aggregate.outbox and aggregate.partition is not None and aggregate.outbox_ticket is not None:
                self.unpublished[aggregate.id] = (aggregate.partition, aggregate.outbox_ticket)

    def published(self, aggregates: Iterable[Aggregate], ticket: int) -> None:
        """The broker has these aggregates' outboxes: move the checkpoints of their partitions on.

        In memory at once; in the database in the background, off the batch's path: a checkpoint
        written late only means that a crash before it publishes those outboxes once more.
        """
        partitions = set()
        for aggregate in aggregates:
            self.unpublished.pop(aggregate.id, None)
            if aggregate.partition is not None:
                partitions.add(aggregate.partition)
        for partition in partitions:
            waiting = [t for p, t in self.unpublished.values() if p == partition]
            through = min(waiting) - 1 if waiting else ticket
            if through > self.published_through.get(partition, NOTHING_PUBLISHED):
                self.published_through[partition] = through
                self._unwritten[partition] = through
        if self._unwritten and (self._writing is None or self._writing.done()):
            self._writing = asyncio.get_running_loop().create_task(self._write_checkpoints())

    async def _write_checkpoints(self) -> None:
        while self._unwritten:
            writing, self._unwritten = self._unwritten, {}
            try:
                await self.checkpoints.write(writing)
            except Exception as fault:  # the next batch tries again
                self.log.warning("outbox_checkpoint_write_failed", error=repr(fault))
                for partition, ticket in writing.items():
                    self._unwritten[partition] = max(ticket, self._unwritten.get(partition, ticket))
                return

    async def flush(self) -> None:
        """Write the checkpoints still only in memory (at a stop), so a restart publishes less again."""
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
        await self._write_checkpoints()

    @property
    def backlog(self) -> int:
        """Aggregates whose stored events may not have reached the broker yet."""
        return len(self.unpublished)
