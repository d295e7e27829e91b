"""The aggregates a consumer wrote last, and what it must forget whenever its partitions move."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from aiokafka import ConsumerRebalanceListener, TopicPartition

from shared.store import Aggregate, estimated_document_bytes


class AggregateCache:
    """So a deal's next event needs no read, within a memory budget that does not grow with the data.

    Only the consumer that owns a deal's partition writes the deal, so its own copy is current for as long
    as it keeps the partition; the cache is emptied whenever partitions move. An entry is taken out while
    its event is processed, so a failed write leaves nothing stale behind. The budget counts each entry's
    stored size; the least recently written entries go first.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[Aggregate, int]] = OrderedDict()

    def pop(self, aggregate_id: str) -> Aggregate | None:
        entry = self._entries.pop(aggregate_id, None)
        if entry is None:
            return None
        self.bytes -= entry[1]
        return entry[0]

    def put(self, aggregate: Aggregate) -> None:
        self.pop(aggregate.id)
        size = estimated_document_bytes(aggregate)
        if size > self.max_bytes:
            return
        self._entries[aggregate.id] = (aggregate, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


class PartitionsMoved(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the cache and the partitions' recovery when this consumer's partitions change."""

    def __init__(self, cache: AggregateCache, assigned: Callable[[set[int]], None]) -> None:
        self.cache = cache
        self.assigned = assigned

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.cache.clear()
        self.assigned(set())

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.cache.clear()
        self.assigned({partition.partition for partition in assigned})
