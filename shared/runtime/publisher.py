"""Publishing: records out to the broker, counted once the broker has them.

A record the broker refuses for good (too large, a topic it will never accept) cannot stay in an outbox,
where it would be published again after every restart and make every replica crash-loop: it is
dead-lettered instead (or, when even its dead letter is refused, logged and dropped).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

import structlog
from faststream.kafka import KafkaBroker

from shared.envelope import KafkaRecord
from shared.metrics import StageMetrics, known_type
from shared.runtime.dead_letters import Source, dead_letter_record
from shared.runtime.faults import describe, is_transient


class Publisher:
    def __init__(
        self,
        broker: KafkaBroker,
        metrics: StageMetrics,
        *,
        service: str,
        dead_letter_topic: str,
        max_dead_letter_bytes: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.broker = broker
        self.metrics = metrics
        self.service = service
        self.dead_letter_topic = dead_letter_topic
        self.max_dead_letter_bytes = max_dead_letter_bytes
        self.clock = clock
        self.log = structlog.get_logger()

    def dead_letter(
        self, *, source: Source, key: bytes, value: bytes, headers: dict[str, str], code: str, detail: str
    ) -> KafkaRecord:
        return dead_letter_record(
            topic=self.dead_letter_topic,
            service=self.service,
            source=source,
            key=key,
            value=value,
            headers=headers,
            code=code,
            detail=detail,
            now=self.clock(),
            max_bytes=self.max_dead_letter_bytes,
        )

    async def publish(self, records: Sequence[KafkaRecord]) -> None:
        """Publish all records; raise the first transient fault; dead-letter what the broker refuses.

        Records are handed to the producer one after the other, and only then are the acknowledgements
        awaited together: a task per record would wake every waiting record each time the producer's
        buffer drains, a cost that grows with the batch.
        """
        outcomes: list[object] = []
        confirmations: list[tuple[int, Awaitable[object]]] = []
        for record in records:
            try:
                confirmations.append((len(outcomes), await self._enqueue(record)))
                outcomes.append(None)
            except Exception as refused_at_once:  # e.g. a record over the producer's size limit
                outcomes.append(refused_at_once)
        acknowledged = await asyncio.gather(*(c for _, c in confirmations), return_exceptions=True)
        for (index, _), outcome in zip(confirmations, acknowledged, strict=True):
            outcomes[index] = outcome
        refused: list[tuple[KafkaRecord, BaseException]] = []
        for record, outcome in zip(records, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if is_transient(outcome) or not isinstance(outcome, Exception):
                    raise outcome
                refused.append((record, outcome))
        for record, fault in refused:
            await self._refused(record, fault)
        self._count(record for record in records if all(record is not bad for bad, _ in refused))

    async def _enqueue(self, record: KafkaRecord) -> Awaitable[object]:
        """Hand the record to the producer; the awaitable resolves when the broker has it."""
        confirmation: Awaitable[object] = await self.broker.publish(
            record.value, record.topic, key=record.key, headers=record.headers, no_confirm=True
        )
        return confirmation

    async def _refused(self, record: KafkaRecord, fault: BaseException) -> None:
        if record.topic == self.dead_letter_topic:
            self.log.error(
                "dead_letter_refused_dropped",
                error=describe(fault),
                code=record.headers.get("dlq_error_code"),
            )
            self.metrics.dead_lettered.labels(self.service, "unknown", "dropped").inc()
            return
        self.log.error("record_refused_by_broker", topic=record.topic, error=describe(fault))
        await self.publish(
            [
                self.dead_letter(
                    source=Source(record.topic, -1, -1),
                    key=record.key,
                    value=record.value,
                    headers=record.headers,
                    code="broker_refused_record",
                    detail=describe(fault),
                )
            ]
        )

    def _count(self, records: Iterable[KafkaRecord]) -> None:
        """Count what the broker has acknowledged: dead letters as such, every other record as produced."""
        for record in records:
            if record.topic == self.dead_letter_topic:
                code = record.headers["dlq_error_code"]
                self.metrics.dead_lettered.labels(
                    self.service, known_type(record.headers.get("ce_type")), code
                ).inc()
                self.log.warning("dead_lettered", code=code, detail=record.headers["dlq_error"][:300])
            else:
                self.metrics.produced.labels(self.service, known_type(record.headers.get("ce_type"))).inc()
