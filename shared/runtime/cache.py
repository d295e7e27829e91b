"""The aggregates a consumer wrote last, and what it must forget whenever its partitions move."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from aiokafka import ConsumerRebalanceListener, TopicPartition

from shared.store import Aggregate


class AggregateCache:
    """So a deal's next event needs no read.

    Only the consumer that owns a deal's partition writes the deal, so its own copy is current for as long
    as it keeps the partition; the cache is emptied whenever partitions move. An entry is taken out while
    its event is processed, so a failed write leaves nothing stale behind.
    """

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, Aggregate] = OrderedDict()

    def pop(self, aggregate_id: str) -> Aggregate | None:
        return self._entries.pop(aggregate_id, None)

    def put(self, aggregate: Aggregate) -> None:
        self._entries[aggregate.id] = aggregate
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


class PartitionsMoved(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the cache and the deadline index when this consumer's partitions change."""

    def __init__(self, cache: AggregateCache, assigned: Callable[[set[int]], None]) -> None:
        self.cache = cache
        self.assigned = assigned

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.cache.clear()
        self.assigned(set())

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.cache.clear()
        self.assigned({partition.partition for partition in assigned})
