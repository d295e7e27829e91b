"""One consumed record, one outcome: the batch loop around the pure step, and the privacy consumer.

Totality: every consumed record ends applied, answered by a rejection event, or dead-lettered with a
reason code. Whatever decoding, deciding, storing or publishing raises is decided for that record alone
and never rewinds another record or partition; transient faults are retried in place. Only a stop leaves
a batch early, and then redelivery (no commit) is what must happen.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import TypeAlias

import structlog
from aiokafka import ConsumerRecord
from opentelemetry.trace import Link, SpanKind, Tracer, get_current_span

from contracts.events import ErasureRequested, PersonalDataErased
from shared.envelope import PoisonMessage, decode, decode_headers
from shared.metrics import StageMetrics, known_type
from shared.privacy import emails_in_json
from shared.runtime.cache import AggregateCache
from shared.runtime.dead_letters import Source, readable_headers
from shared.runtime.deadlines import DeadlineIndex
from shared.runtime.definition import StageDefinition, StageFacts
from shared.runtime.erasure import Erasure
from shared.runtime.faults import PermanentFault, RetryPolicy, describe, reason_code
from shared.runtime.intake import accept
from shared.runtime.outbox import Outbox
from shared.runtime.publisher import Publisher
from shared.runtime.transition import Context, Inbound, Limits, Step, step
from shared.settings import Settings
from shared.store import Aggregate, AggregateStore
from shared.tracing import current_trace_headers, extract

Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass
class Batches:
    """Applies consumed records to the stage's aggregates; one instance per service."""

    definition: StageDefinition
    settings: Settings
    clock: Callable[[], datetime]
    source: str
    metrics: StageMetrics
    tracer: Tracer
    store: AggregateStore
    cache: AggregateCache
    facts: StageFacts | None
    retry: RetryPolicy
    publisher: Publisher
    erasure: Erasure
    deadline_index: DeadlineIndex
    outbox: Outbox
    limits: Limits
    partitions: Callable[[str], int | None]
    stopping: Callable[[], bool]

    def __post_init__(self) -> None:
        self.log = structlog.get_logger()

    # --- personal data ---------------------------------------------------------------------------

    async def handle_privacy_record(self, record: Record) -> None:
        try:
            headers = decode_headers(record.headers)
            if headers.get("ce_type") == PersonalDataErased.TYPE:
                return  # the services' confirmations share the topic
            envelope = decode(headers, record.value, max_bytes=self.settings.max_event_bytes)
            if not isinstance(envelope.data, ErasureRequested):
                raise PoisonMessage("unexpected_event_type", f"{envelope.type} does not belong on this topic")
        except Exception as bad:
            poison = bad if isinstance(bad, PoisonMessage) else PoisonMessage("undecodable", describe(bad))
            await self._dead_letter(record, poison.code, poison.detail)
            return
        try:
            await self.retry.run(partial(self.erasure.erase, envelope))
        except Exception as fault:
            if self.stopping():
                raise
            self.log.exception("erasure_failed")
            await self._dead_letter(record, reason_code(fault), describe(fault))

    # --- one batch -------------------------------------------------------------------------------

    async def handle_batch(self, records: Sequence[Record]) -> None:
        """Apply a batch of records in order: one round of writes, one of publishing, one commit.

        Each record's outcome is its own: a bad record is dead-lettered and the batch goes on; a batch
        that fails for a reason that is not transient is applied again one record at a time.
        """
        started = time.perf_counter()
        self.metrics.batch_records.labels(self.definition.name).observe(len(records))
        accepted: list[tuple[Record, Inbound]] = []
        for record in records:
            self.metrics.consumed.labels(self.definition.name, known_type(_event_type(record))).inc()
            try:
                item = accept(
                    record,
                    self.definition,
                    max_event_bytes=self.settings.max_event_bytes,
                    partitions=self.partitions,
                )
            except PoisonMessage as poison:
                await self._dead_letter(record, poison.code, poison.detail)
                continue
            if item is None:
                self.metrics.ignored.labels(self.definition.name).inc()
            else:
                accepted.append((record, item))
        accepted = await self._without_erased(accepted)
        if accepted:
            try:
                await self.retry.run(partial(self._process, [item for _, item in accepted]))
            except Exception:
                if self.stopping():
                    raise
                self.log.exception("batch_failed_retrying_one_by_one", records=len(accepted))
                for record, item in accepted:
                    await self._process_alone(record, item)
        self.metrics.batch_seconds.labels(self.definition.name).observe(time.perf_counter() - started)

    async def _without_erased(self, accepted: list[tuple[Record, Inbound]]) -> list[tuple[Record, Inbound]]:
        """Events about a person who was erased are not applied: they are dead-lettered without value."""
        erased: set[str] = set()

        # Read from the records' text (a superset of what their contracts keep): decoding them again
        # would cost more than the rest of the look.
        emails = {email for _, item in accepted for email in emails_in_json(item.raw.value.encode())}

        async def look() -> None:
            erased.update(await self.erasure.erased_among(emails))

        await self.retry.run(look)
        if not erased:
            return accepted
        kept = []
        for record, item in accepted:
            text = item.raw.value.lower()
            if any(email in text for email in erased):
                await self._dead_letter(
                    record, "subject_erased", "the event names a person who was erased", value=b""
                )
            else:
                kept.append((record, item))
        return kept

    async def _process_alone(self, record: Record, item: Inbound) -> None:
        with structlog.contextvars.bound_contextvars(
            topic=record.topic, partition=record.partition, offset=record.offset, event_id=item.envelope.id
        ):
            try:
                await self.retry.run(partial(self._process, [item]))
            except Exception as fault:  # a fault of this record alone must not stop the partition
                if self.stopping():
                    raise
                if not isinstance(fault, PermanentFault):
                    self.log.exception("processing_failed")
                await self._dead_letter(record, reason_code(fault), describe(fault))

    async def _dead_letter(self, record: Record, code: str, detail: str, value: bytes | None = None) -> None:
        dead_letter = self.publisher.dead_letter(
            source=Source(record.topic, record.partition, record.offset),
            key=record.key or b"",
            value=(record.value or b"") if value is None else value,
            headers=readable_headers(record.headers),
            code=code,
            detail=detail,
        )
        await self.retry.run(partial(self.publisher.publish, [dead_letter]), budget_seconds=math.inf)

    async def _process(self, items: Sequence[Inbound]) -> None:
        """Step the items' aggregates in memory, then write them and publish what they caused, in bulk.

        Safe to run again after any failure: applied event ids and consumed positions make a second pass
        skip what the first stored, and it publishes whatever the first may have left unpublished. A
        record the step refuses (PermanentFault) fails the pass, which is then made one record at a time.
        """
        await self.outbox.recovered(self.stopping)
        ids = list(dict.fromkeys(item.envelope.data.partition_key for item in items))
        cached = {aggregate_id: self.cache.pop(aggregate_id) for aggregate_id in ids}
        missing = [aggregate_id for aggregate_id, aggregate in cached.items() if aggregate is None]
        before: dict[str, Aggregate] = {key: value for key, value in cached.items() if value is not None}
        for aggregate in await self.store.load_many([*missing, *self.outbox.leftovers(ids)]):
            before[aggregate.id] = self.outbox.as_read(aggregate)
        if self.facts is not None:
            await self.facts.prefetch([item.envelope.data for item in items], self.clock())
        current = dict(before)
        for item in items:
            aggregate = current[item.envelope.data.partition_key]
            outcome = self._step(aggregate, item)
            if outcome.changed:
                # What may be unpublished of the stored outbox goes out again with what this event caused.
                current[aggregate.id] = replace(
                    outcome.aggregate, outbox=(*aggregate.outbox, *outcome.aggregate.outbox)
                )
        if self.facts is not None:
            await self.facts.commit()
        ticket = self.outbox.next_ticket()
        for key, aggregate in current.items():
            if aggregate is not before[key]:
                current[key] = replace(aggregate, outbox_ticket=ticket)
        changed = [(before[key], current[key]) for key in current if current[key] is not before[key]]
        await self.store.save_all(changed)
        self.outbox.stored(aggregate for _, aggregate in changed)
        pending = [aggregate for aggregate in current.values() if aggregate.outbox]
        await self.publisher.publish([record for aggregate in pending for record in aggregate.outbox])
        self.outbox.published(pending, ticket)
        for aggregate in current.values():
            self.cache.put(replace(aggregate, outbox=()))
            self.deadline_index.note(aggregate)
        if self.facts is not None:
            await self.facts.record(self.clock())

    def _step(self, aggregate: Aggregate, item: Inbound) -> Step:
        envelope = item.envelope
        # The deal's first event starts (or continues) its trace; later events join it and link their own.
        links = (
            [Link(get_current_span(extract(envelope.trace)).get_span_context())]
            if aggregate.trace and envelope.trace
            else []
        )
        with self.tracer.start_as_current_span(
            f"{self.definition.name} process {envelope.type}",
            context=extract(aggregate.trace or envelope.trace),
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.message.id": envelope.id,
                "dealflow.deal_id": aggregate.id,
            },
        ):
            facts = self.facts
            context = Context(
                clock=self.clock(),
                source=self.source,
                topic=self.settings.topic,
                limits=self.limits,
                dead_letter=self.publisher.dead_letter,
                trace=current_trace_headers(),
                gather=(lambda event, now: ())
                if facts is None
                else (lambda event, now: (facts.gather(event, now),)),
                note=(lambda event, emitted: None) if facts is None else facts.note,
            )
            started = time.perf_counter()
            try:
                outcome = step(self.definition, aggregate, item, context)
            finally:
                self.metrics.handler_seconds.labels(self.definition.name, envelope.type).observe(
                    time.perf_counter() - started
                )
        self._count(envelope.type, outcome)
        return outcome

    def _count(self, event_type: str, outcome: Step) -> None:
        name = self.definition.name
        for code in outcome.rejections:
            self.metrics.rejected.labels(name, event_type, code).inc()
            self.log.info("rule_broken", code=code)
        if outcome.outcome == "duplicate":
            self.metrics.duplicates.labels(name, event_type).inc()
            self.log.info("duplicate_absorbed")
        elif outcome.outcome == "parked":
            self.metrics.parked.labels(name, event_type).inc()
            self.log.info("event_parked_until_aggregate_opens")


def _event_type(record: Record) -> str:
    raw = next((value for name, value in record.headers if name == "ce_type"), b"") or b""
    return raw.decode(errors="replace")
