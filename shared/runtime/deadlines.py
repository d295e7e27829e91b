"""Time in the runtime: which deadlines are due, and announcing them to the replica that owns the deal.

Due deadlines are found in memory, never by a scan: the index holds the pending deadlines of the deals in
this replica's partitions, read once when partitions are assigned (by shared.runtime.outbox's recovery,
in the same read) and kept current by every write the replica makes. A DeadlineReached is applied by the
consumer that owns the deal's partition, so time never creates a second writer; that replica also
announces it, once it has applied the partition up to its end, so a deadline is judged on the deal's
latest state.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from aiokafka import AIOKafkaConsumer

from contracts.events import DeadlineReached
from shared.envelope import KafkaRecord, derived_event_id, encode
from shared.store import Aggregate

# A deadline announced but still pending this long after is announced again (say, the first was lost).
REANNOUNCE_SECONDS = 30.0


@dataclass(frozen=True, order=True, slots=True)
class Due:
    due_at: datetime
    deal_id: str
    deadline_id: str


class DeadlineIndex:
    def __init__(self) -> None:
        self._pending: dict[str, tuple[int | None, frozenset[tuple[str, datetime]]]] = {}
        self._heap: list[Due] = []
        self._ready: set[int] = set()

    def note(self, aggregate: Aggregate) -> None:
        """Keep the index current with a write this replica made."""
        deadlines = frozenset(aggregate.deadlines)
        if not deadlines:
            self._pending.pop(aggregate.id, None)
            return
        if self._pending.get(aggregate.id, (None, frozenset()))[1] == deadlines:
            return
        self._pending[aggregate.id] = (aggregate.partition, deadlines)
        for deadline_id, due_at in deadlines:
            heapq.heappush(self._heap, Due(due_at, aggregate.id, deadline_id))

    def assigned(self, partitions: set[int]) -> None:
        """Start over for a new assignment: forget the rest; the new partitions are filled by `fill`."""
        self._pending = {deal: entry for deal, entry in self._pending.items() if entry[0] in partitions}
        self._heap = [due for due in self._heap if due.deal_id in self._pending]
        heapq.heapify(self._heap)
        self._ready = set()

    def fill(self, stored: Sequence[Aggregate], partitions: set[int]) -> None:
        """The pending deadlines read from the database for these partitions, once they are assigned."""
        for aggregate in stored:
            if aggregate.id not in self._pending:  # a write made since is newer
                self.note(aggregate)
        self._ready = set(partitions)

    def due(self, now: datetime) -> list[Due]:
        """The pending deadlines due by `now` of partitions whose index is loaded, earliest first."""
        due: list[Due] = []
        while self._heap and self._heap[0].due_at <= now:
            candidate = heapq.heappop(self._heap)
            entry = self._pending.get(candidate.deal_id)
            if entry is not None and (candidate.deadline_id, candidate.due_at) in entry[1]:
                due.append(candidate)
        return due

    def postpone(self, deadlines: Sequence[Due]) -> None:
        """Keep deadlines that were due but not announced this time."""
        for deadline in deadlines:
            heapq.heappush(self._heap, deadline)

    def loaded(self, partition: int) -> bool:
        return partition in self._ready


class Announcer:
    """Publishes a DeadlineReached for every due deadline, keyed by its deal, every tick."""

    def __init__(
        self,
        *,
        service: str,
        source: str,
        topic: str,
        index: DeadlineIndex,
        consumer: Callable[[], AIOKafkaConsumer | None],
        partition_of: Callable[[str, int], int],
        publish: Callable[[Sequence[KafkaRecord]], Awaitable[None]],
        clock: Callable[[], datetime],
        tick_seconds: float,
        counted: Callable[[int], None],
    ) -> None:
        self.service, self.source, self.topic = service, source, topic
        self.index = index
        self.consumer = consumer
        self.partition_of = partition_of
        self.publish = publish
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.counted = counted
        self.log = structlog.get_logger()
        self._announced: dict[tuple[str, str], float] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                await self.tick()
            except Exception as fault:  # the next tick tries again; the timer must outlive any fault
                self.log.warning("deadline_announcement_failed", error=repr(fault))

    async def tick(self) -> None:
        now = self.clock()
        due = self.index.due(now)
        if not due:
            return
        caught_up = await self._caught_up_partitions()
        wanted, later = [], []
        for deadline in due:
            key = (deadline.deal_id, deadline.deadline_id)
            if caught_up is None:
                later.append(deadline)
                continue
            count, ready = caught_up
            partition = self.partition_of(deadline.deal_id, count)
            if partition not in ready or not self.index.loaded(partition):
                later.append(deadline)
            elif self._announced.get(key, 0) < time.monotonic():
                wanted.append(deadline)
        # Every due deadline stays in the index until the deal's write removes it.
        self.index.postpone([*later, *wanted])
        await self.publish([self._record(deadline, now) for deadline in wanted])
        until = time.monotonic() + REANNOUNCE_SECONDS
        self._announced = {key: at for key, at in self._announced.items() if at > time.monotonic()}
        self._announced.update({(d.deal_id, d.deadline_id): until for d in wanted})
        self.counted(len(wanted))

    async def _caught_up_partitions(self) -> tuple[int, set[int]] | None:
        """The partition count, and the partitions this replica owns and has applied (committed) up to
        their last fetched ends in every input topic."""
        consumer = self.consumer()
        partitions = consumer and consumer.partitions_for_topic(self.topic)
        if consumer is None or not partitions:
            return None
        assignment = list(consumer.assignment())
        committed = await asyncio.gather(*(consumer.committed(partition) for partition in assignment))
        behind = {
            partition.partition
            for partition, applied in zip(assignment, committed, strict=True)
            if (highwater := consumer.highwater(partition)) is None or (applied or 0) < highwater
        }
        return len(partitions), {partition.partition for partition in assignment} - behind

    def _record(self, deadline: Due, now: datetime) -> KafkaRecord:
        event = DeadlineReached(
            deal_id=deadline.deal_id,
            stage_service=self.service,
            deadline_id=deadline.deadline_id,
            due_at=deadline.due_at,
        )
        return encode(
            event,
            topic=self.topic,
            source=self.source,
            event_id=derived_event_id(f"{self.service}/{deadline.deal_id}", deadline.deadline_id),
            time=now,
        )
