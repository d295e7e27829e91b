"""The consume, decide, store, publish loop that every stage service runs.

A stage is defined by pure functions (`handlers`) that turn its state and one inbound event into a
`Decision`. This module does all the I/O around them, with these guarantees:

- an event is applied once per aggregate: its id is stored with the new state, so a redelivered or
  replayed event changes nothing and emits nothing new (its pending events are only re-published);
- the new state and the events it causes are one atomic document write (the outbox); events are
  published after the write and marked sent after the broker has them, and re-published after a crash;
- the offset is committed only after all that, so a crash means redelivery, never loss;
- a record that can never be processed goes to the service's dead-letter topic with the reason, and the
  partition moves on; a transient fault is retried with backoff, in place, so a deal's order holds.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import structlog
import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.asgi.types import ASGIApp
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage
from opentelemetry.trace import Link, SpanKind, get_current_span
from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, OperationFailure

from contracts import Event, Topic, dead_letter_topic, event_model
from contracts.events import (
    ActivityRejected,
    DeadlineReached,
    ErasureRequested,
    PersonalDataErased,
    Reason,
)
from shared.domain import Decision, RuleBroken
from shared.envelope import (
    Envelope,
    KafkaRecord,
    PoisonMessage,
    decode,
    decode_headers,
    derived_event_id,
    encode,
)
from shared.kafka import ensure_topics, make_broker, partition_of
from shared.logging import configure_logging
from shared.metrics import StageMetrics, known_type
from shared.mongo import DatabaseInterrupted, Document, interrupted, make_client, service_database
from shared.operations import operations_routes
from shared.privacy import anonymise, subject_key
from shared.settings import Settings
from shared.store import Aggregate, AggregateStore, ConcurrentWrite, ParkedRecord
from shared.tracing import current_trace_headers, extract, make_tracer

EventHandler = Callable[..., Decision[Any]]


class StageFacts(Protocol):
    """The I/O a stage needs beyond its own aggregate, kept at the edge so its rules stay pure.

    Per batch: `prefetch` reads what the batch's decisions may need (is there already a prospect with
    this email? how many leads has each rep?); for each event, `gather` answers from memory and is passed
    to the handler as a fourth argument, and `note` tells what the decision emitted, so the next event
    sees it; `commit` writes what must hold before the state is saved (raising ConcurrentWrite when another
    replica got there first: the batch is then retried); `record` writes what follows once it is published.
    """

    async def prefetch(self, events: Sequence[Event], now: datetime) -> None: ...

    def gather(self, event: Event, now: datetime) -> object: ...

    def note(self, event: Event, emitted: Sequence[Event]) -> None: ...

    async def commit(self) -> None: ...

    async def record(self, now: datetime) -> None: ...

    async def erase(self, email: str) -> int:
        """Anonymise what these facts hold about the person with this email; how many records did."""
        ...


TRANSIENT_ERRORS = (ConnectionFailure, KafkaError, ConcurrentWrite, TimeoutError)
BACKOFF_FIRST_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 10.0
# An event that waits for a deal which never opens is answered, after a while, with a dead letter.
PARKED_EXPIRY = "parked-events-expire"
DEAL_NEVER_OPENED = "deal_never_opened"
STARTUP_FAILED = 3
Deadline = tuple[
    str, str, datetime
]  # deal id, deadline id, when it is due  # as `uvicorn.run` exits when the app does not start


def with_playbook(
    handlers: Mapping[type[Event], EventHandler], playbook: object
) -> dict[type[Event], EventHandler]:
    """The handlers, each given the stage's playbook (its validated configuration)."""
    return {event_type: partial(handler, playbook=playbook) for event_type, handler in handlers.items()}


@dataclass(frozen=True)
class StageDefinition:
    """What makes one stage: its name, its state, and a pure handler per inbound event type.

    `opening_events` may create the aggregate; any other event for an aggregate that does not exist yet
    is parked and applied, in arrival order, right after the aggregate is opened.
    """

    name: str
    state_model: type[BaseModel]
    handlers: Mapping[type[Event], EventHandler]
    opening_events: frozenset[type[Event]]
    facts: Callable[[AsyncDatabase[Document]], StageFacts] | None = None
    deadlines: Callable[[Any], Mapping[str, datetime]] | None = None
    """The deadlines a state has pending, by id; each fires once as a DeadlineReached event."""
    http_port: int = 8080
    """Where its health, metrics and docs endpoints listen unless DEALFLOW_HTTP_PORT says otherwise."""
    http_routes: Callable[[AsyncDatabase[Document]], Sequence[tuple[str, ASGIApp]]] | None = None
    """The stage's own HTTP pages, by exact path, served beside the operations endpoints."""
    now_is_event_time: bool = False
    """Handlers get the event's own time (`ce_time`) as `now`, not the clock's: a read model rebuilt by
    replaying the topics then ends up in the same state as the one that saw the events live."""

    @property
    def input_topics(self) -> list[Topic]:
        return sorted({event_type.TOPIC for event_type in self.handlers})


async def _raw_body(message: StreamMessage[Any]) -> bytes:
    # Decoding is ours: FastStream's JSON decoding would fail on bad input before we could dead-letter it.
    return message.body


class StageService:
    def __init__(
        self,
        definition: StageDefinition,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.definition = definition
        self.settings = settings
        self.clock = clock
        self.source = f"/dealflow/{definition.name}"
        self.log = configure_logging(definition.name, settings.log_level)
        self.metrics = StageMetrics(definition.name)
        self.tracer, self.tracer_provider = make_tracer(definition.name, settings.traces_exporter)
        self.healthy = True
        self.started = False
        # Set by whatever runs the service: a stop asked for while it still waits for its servers.
        self.stop_requested: Callable[[], bool] = lambda: False
        self.request_stop: Callable[[], None] = lambda: None
        self.startup_abandoned = False
        self.broker = make_broker(settings, client_id=f"dealflow-{definition.name}")
        self.broker.start = partial(self._start_broker_or_stop, self.broker.start)  # type: ignore[method-assign]
        self.mongo = make_client(settings, app_name=f"dealflow-{definition.name}")
        self.database = service_database(self.mongo, settings, definition.name)
        self.store = AggregateStore(self.database["aggregates"])
        self.facts = None if definition.facts is None else definition.facts(self.database)
        self.dead_letter_topic = settings.topic(dead_letter_topic(definition.name))
        self.cache = AggregateCache()
        self._startup_watchdog: asyncio.TimerHandle | None = None

    def build_app(self) -> AsgiFastStream:
        """The service as an ASGI app: the Kafka consumer, plus its HTTP endpoints when served by uvicorn."""
        self.subscriber = self.broker.subscriber(
            *(self.settings.topic(topic) for topic in self.definition.input_topics),
            group_id=self.settings.consumer_group(self.definition.name),
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=_raw_body,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            listener=self.cache,
            batch=True,
            max_records=self.settings.batch_max_records,
            batch_timeout_ms=self.settings.batch_wait_ms,
        )

        @self.subscriber
        async def consume(message: KafkaMessage) -> None:
            records = message.raw_message
            await self.handle_batch(records if isinstance(records, tuple) else (records,))

        privacy = self.broker.subscriber(
            self.settings.topic(Topic.PRIVACY),
            # A group of its own: erasure requests are keyed by request, not by deal, so they cannot share
            # the co-partitioned assignment of the stage's inputs.
            group_id=f"{self.settings.consumer_group(self.definition.name)}.privacy",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=_raw_body,
            auto_offset_reset="earliest",
        )

        @privacy
        async def erase(message: KafkaMessage) -> None:
            await self.handle_privacy_record(message.raw_message)

        own_routes = [] if self.definition.http_routes is None else self.definition.http_routes(self.database)
        self.app = app = AsgiFastStream(
            self.broker, asgi_routes=[*operations_routes(self), *own_routes], logger=self.log
        )
        app.on_startup(self._prepare)
        app.after_startup(self._republish_pending)
        if self.definition.deadlines is not None:
            app.after_startup(self._start_timer)
            app.on_shutdown(self._stop_timer)
        app.after_shutdown(self._close)
        return app

    async def _prepare(self) -> None:
        """Wait for both servers, however long it takes: a service started during an outage (or before
        its servers, as in a fresh deployment) starts when they are back, rather than crash-loop."""
        topics = partial(
            ensure_topics,
            self.settings,
            [self.settings.topic(topic) for topic in Topic],
            large_records=[self.dead_letter_topic],
        )
        for operation in (topics, self.store.prepare):
            await self._with_retries(operation, budget_seconds=math.inf, give_up=self.stop_requested)
        # Both servers answer, so the producer and consumers FastStream starts next (group joins included)
        # start within seconds. A client that connects while the broker shuts down can be stranded by
        # aiokafka for good (see shared.kafka.running); then the start is given up and the process exits,
        # to be started afresh.
        self._startup_watchdog = asyncio.get_running_loop().call_later(
            self.settings.startup_timeout_seconds, self._abandon_startup
        )

    def _abandon_startup(self) -> None:
        self._give_up_start(
            "startup_stalled",
            detail="the Kafka producer and consumers did not start although both servers answer; stopping",
            after_seconds=self.settings.startup_timeout_seconds,
        )

    def _give_up_start(self, event: str, **fields: object) -> None:
        self.startup_abandoned = True
        self.log.error(event, **fields)
        self.request_stop()

    async def _start_broker_or_stop(self, start: Callable[[], Awaitable[None]]) -> None:
        """FastStream starts the broker after the app reports itself started, so a failure there would
        leave HTTP served without a consumer: it stops the service instead."""
        try:
            await start()
        except Exception as failure:
            self._give_up_start("broker_start_failed", error=repr(failure))
            raise

    def _stop_startup_watchdog(self) -> None:
        if self._startup_watchdog is not None:
            self._startup_watchdog.cancel()

    async def _republish_pending(self) -> None:
        """Publish the events a crash left between the state write and the broker's acknowledgement."""
        self._stop_startup_watchdog()

        async def republish() -> None:
            async for aggregate in self.store.with_pending_outbox():
                await self._flush(aggregate)

        await self._with_retries(republish)
        self.started = True
        self.log.info("service_ready", input_topics=[str(t) for t in self.definition.input_topics])

    async def _close(self) -> None:
        self.started = False
        self._stop_startup_watchdog()
        self.tracer_provider.shutdown()
        await self.mongo.close()

    @property
    def http_port(self) -> int:
        return self.definition.http_port if self.settings.http_port is None else self.settings.http_port

    @property
    def _consumer(self) -> AIOKafkaConsumer | None:
        """The stage's consumer, once it has started."""
        subscriber = getattr(self, "subscriber", None)
        return None if subscriber is None else subscriber.consumer

    def consumer_assignment(self) -> set[TopicPartition]:
        consumer = self._consumer
        return set(consumer.assignment()) if consumer is not None else set()

    async def consumer_lag(self) -> dict[TopicPartition, int]:
        """Records behind the high watermark, per assigned partition, as last fetched."""
        consumer = self._consumer
        if consumer is None:
            return {}
        lag = {}
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            if highwater is not None:
                lag[partition] = max(0, highwater - await consumer.position(partition))
        return lag

    async def _owned_and_caught_up(self, due: list[Deadline]) -> list[Deadline]:
        """The deadlines of deals in partitions this replica owns and has applied (committed) up to
        their last fetched ends, in every input topic."""
        consumer = self._consumer
        partitions = consumer and consumer.partitions_for_topic(self.settings.topic(Topic.DEADLINES))
        if consumer is None or not partitions:
            return []
        assignment = list(consumer.assignment())
        committed = await asyncio.gather(*(consumer.committed(partition) for partition in assignment))
        behind = {
            partition.partition
            for partition, applied in zip(assignment, committed, strict=True)
            if (highwater := consumer.highwater(partition)) is None or (applied or 0) < highwater
        }
        ready = {partition.partition for partition in assignment} - behind
        return [deadline for deadline in due if partition_of(deadline[0], len(partitions)) in ready]

    # --- time ------------------------------------------------------------------------------------

    async def _start_timer(self) -> None:
        self._timer = asyncio.create_task(self._announce_due_deadlines())

    async def _stop_timer(self) -> None:
        timer = getattr(self, "_timer", None)  # absent when the service failed before it started
        if timer is not None:
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)

    async def _announce_due_deadlines(self) -> None:
        """Publish a DeadlineReached for every due deadline, keyed by its deal.

        The consumer that owns the deal's partition applies it, so time never creates a second writer.
        That replica also announces it, and only once it has applied the partition's inputs up to their
        ends: a deadline is judged on the deal's latest state, never on one that a backlog (a restart, a
        replay from offset zero) has not caught up with yet. A deadline may still be announced more than
        once: its event id is derived from the deal and the deadline, so later copies are absorbed.
        """
        announced: dict[tuple[str, str], float] = {}
        while True:
            await asyncio.sleep(self.settings.timer_tick_seconds)
            now = self.clock()
            try:
                due = [
                    (aggregate.id, deadline_id, due_at)
                    async for aggregate in self.store.with_deadlines_due(now)
                    for deadline_id, due_at in aggregate.deadlines
                    if due_at <= now and announced.get((aggregate.id, deadline_id), 0) < time.monotonic()
                ]
                if due:
                    due = await self._owned_and_caught_up(due)
                await self._publish([self._deadline_record(*deadline) for deadline in due])
            except Exception as fault:  # the next tick tries again; the timer must outlive any fault
                self.log.warning("deadline_scan_failed", error=repr(fault))
                continue
            announced = {key: until for key, until in announced.items() if until > time.monotonic()}
            for deal_id, deadline_id, _ in due:
                # Announce again only if it is still pending a while later (say, the first copy was lost).
                announced[(deal_id, deadline_id)] = time.monotonic() + 30
            self.metrics.deadlines_announced.labels(self.definition.name).inc(len(due))

    def _deadline_record(self, deal_id: str, deadline_id: str, due_at: datetime) -> KafkaRecord:
        event = DeadlineReached(
            deal_id=deal_id, stage_service=self.definition.name, deadline_id=deadline_id, due_at=due_at
        )
        return encode(
            event,
            topic=self.settings.topic(event.TOPIC),
            source=self.source,
            event_id=derived_event_id(f"{self.definition.name}/{deal_id}", deadline_id),
            time=self.clock(),
        )

    # --- personal data ---------------------------------------------------------------------------

    async def handle_privacy_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            headers = decode_headers(record.headers)
            if headers.get("ce_type") != ErasureRequested.TYPE:
                return  # the other services' confirmations share the topic
            envelope = decode(headers, record.value, max_bytes=self.settings.max_event_bytes)
        except PoisonMessage as poison:
            await self._with_retries(partial(self._dead_letter, record, poison.code, poison.detail))
            return
        await self._with_retries(partial(self._erase, envelope))

    async def _erase(self, envelope: Envelope) -> None:
        """Anonymise every aggregate and fact holding the person's data, then confirm.

        Each write is conditional on the version read, so a deal its consumer changed meanwhile is a
        ConcurrentWrite: the whole erasure is retried, and it is idempotent.
        """
        request = envelope.data
        assert isinstance(request, ErasureRequested)
        holding = [aggregate async for aggregate in self.store.with_subject(subject_key(request.email))]
        for aggregate in holding:
            self.cache.pop(aggregate.id)
            anonymised = replace(
                aggregate,
                version=aggregate.version + 1,
                state=anonymise(aggregate.state, request.email),
                parked=tuple(
                    replace(parked, value=anonymise(parked.value, request.email))
                    for parked in aggregate.parked
                ),
            )
            await self.store.save_all([(aggregate, anonymised)])
        facts = 0 if self.facts is None else await self.facts.erase(request.email)
        now = self.clock()
        confirmation = PersonalDataErased(
            request_id=request.request_id,
            service=self.definition.name,
            records_anonymised=len(holding) + facts,
            erased_at=now,
        )
        await self._publish(
            [
                encode(
                    confirmation,
                    topic=self.settings.topic(confirmation.TOPIC),
                    source=self.source,
                    event_id=derived_event_id(envelope.id, self.definition.name),
                    time=now,
                )
            ]
        )
        self.log.info("personal_data_erased", request_id=request.request_id, records=len(holding) + facts)

    # --- one record ------------------------------------------------------------------------------

    async def handle_batch(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply a batch of records in order: one bulk write, one round of publishing, one commit."""
        started = time.perf_counter()
        self.metrics.batch_records.labels(self.definition.name).observe(len(records))
        accepted: list[Accepted] = []
        for record in records:
            try:
                item = self._accept(record)
            except PoisonMessage as poison:
                await self._with_retries(partial(self._dead_letter, record, poison.code, poison.detail))
                continue
            if item is not None:
                accepted.append(item)
        if not accepted:
            return
        try:
            await self._with_retries(partial(self._process, accepted))
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            # Find the record that breaks: one at a time, each failure is dead-lettered on its own.
            self.log.exception("batch_failed_retrying_one_by_one", records=len(accepted))
            for item in accepted:
                await self._process_alone(item)
        self.metrics.batch_seconds.labels(self.definition.name).observe(time.perf_counter() - started)

    async def _process_alone(self, item: Accepted) -> None:
        with structlog.contextvars.bound_contextvars(
            topic=item.record.topic,
            partition=item.record.partition,
            offset=item.record.offset,
            event_id=item.envelope.id,
            deal_id=item.envelope.data.partition_key,
        ):
            try:
                await self._with_retries(partial(self._process, [item]))
            except TRANSIENT_ERRORS:
                raise
            except Exception as bug:  # a bug on one message must not stop the partition
                self.log.exception("processing_failed")
                detail = f"{type(bug).__name__}: {bug}"
                await self._with_retries(partial(self._dead_letter, item.record, "processing_error", detail))

    def _accept(self, record: ConsumerRecord[bytes, bytes]) -> Accepted | None:
        """The record decoded, or None when it is another stage's; raises PoisonMessage for bad input."""
        event_type = next((value for name, value in record.headers if name == "ce_type"), b"")
        self.metrics.consumed.labels(
            self.definition.name, known_type(event_type.decode(errors="replace"))
        ).inc()
        headers = decode_headers(record.headers)
        if self._belongs_to_another_stage(headers.get("ce_type")):
            self.metrics.ignored.labels(self.definition.name).inc()
            return None
        envelope = decode(headers, record.value, max_bytes=self.settings.max_event_bytes)
        if isinstance(envelope.data, DeadlineReached) and envelope.data.stage_service != self.definition.name:
            self.metrics.ignored.labels(self.definition.name).inc()
            return None
        parked = ParkedRecord(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            headers=headers,
            value=(record.value or b"").decode(),
        )
        return Accepted(record, envelope, parked)

    def _belongs_to_another_stage(self, event_type: str | None) -> bool:
        model = event_model(event_type or "")
        return model is not None and model not in self.definition.handlers

    async def _process(self, items: Sequence[Accepted]) -> None:
        """Apply the items to their aggregates in memory, then write, publish and mark sent in bulk.

        Safe to run again after any failure: applied event ids make a second pass skip what the first
        stored, and it publishes whatever the first left in an outbox.
        """
        ids = list(dict.fromkeys(item.envelope.data.partition_key for item in items))
        stored = {aggregate_id: self.cache.pop(aggregate_id) for aggregate_id in ids}
        missing = [aggregate_id for aggregate_id, aggregate in stored.items() if aggregate is None]
        for aggregate in await asyncio.gather(*(self.store.load(aggregate_id) for aggregate_id in missing)):
            stored[aggregate.id] = aggregate
        before: dict[str, Aggregate] = {key: value for key, value in stored.items() if value is not None}
        if self.facts is not None:
            await self.facts.prefetch([item.envelope.data for item in items], self.clock())
        current = dict(before)
        for item in items:
            aggregate = current[item.envelope.data.partition_key]
            if aggregate.has_applied(item.envelope.id):
                self.metrics.duplicates.labels(self.definition.name, item.envelope.type).inc()
                self.log.info("duplicate_absorbed", event_id=item.envelope.id)
                continue
            changed = await self._decide(aggregate, item.envelope, item.parked)
            if changed is aggregate:  # nothing to store
                continue
            # Events a crash left unpublished stay in the outbox until this batch publishes them too.
            current[aggregate.id] = replace(changed, outbox=(*aggregate.outbox, *changed.outbox))
        if self.facts is not None:
            await self.facts.commit()
        await self.store.save_all(
            [(before[key], current[key]) for key in ids if current[key] is not before[key]]
        )
        pending = [current[key] for key in ids if current[key].outbox]
        await self._publish([record for aggregate in pending for record in aggregate.outbox])
        await self.store.mark_all_sent(pending)
        self._count_produced(record for aggregate in pending for record in aggregate.outbox)
        for key in ids:
            self.cache.put(replace(current[key], outbox=()))
        if self.facts is not None:
            await self.facts.record(self.clock())

    async def _decide(self, aggregate: Aggregate, envelope: Envelope, raw: ParkedRecord) -> Aggregate:
        state_model = self.definition.state_model
        state = None if aggregate.state is None else state_model.model_validate(aggregate.state)
        if isinstance(envelope.data, DeadlineReached) and _expires_parked(envelope.data.deadline_id):
            return self._expire_parked(aggregate, envelope)
        if state is None and type(envelope.data) not in self.definition.opening_events:
            self.metrics.parked.labels(self.definition.name, envelope.type).inc()
            self.log.info("event_parked_until_aggregate_opens")
            return aggregate.changed(
                applied_event_id=envelope.id,
                state=None,
                parked=(*aggregate.parked, raw),
                outbox=(),
                deadlines=aggregate.deadlines or self._parked_expiry(first_parked_id=envelope.id),
            )
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
            now = self.clock()
            if self.definition.now_is_event_time and envelope.time is not None:
                now = envelope.time if envelope.time.tzinfo else envelope.time.replace(tzinfo=UTC)
            before = state
            state, events = await self._apply(state, envelope, now)
            if isinstance(envelope.data, DeadlineReached) and not events and state == before:
                # A deadline that is not due in this state is left unconsumed: announced again once it
                # is due (say, after a replay applied the deal's events in another order), it must
                # not be absorbed as a copy of this one.
                return aggregate
            if aggregate.state is None and state is not None:
                for parked in aggregate.parked:
                    parked_envelope = decode(
                        parked.headers, parked.value.encode(), max_bytes=self.settings.max_event_bytes
                    )
                    state, more = await self._apply(state, parked_envelope, now)
                    events.extend(more)
            trace = current_trace_headers()
        version = aggregate.version + 1
        records = tuple(
            encode(
                event,
                topic=self.settings.topic(event.TOPIC),
                source=self.source,
                event_id=derived_event_id(envelope.id, index),
                time=now,
                # CloudEvents' sequence extension: orders a deal's events from this stage, gaps show loss.
                extra_headers={"ce_sequence": f"{version:010d}.{index:04d}", **trace},
            )
            for index, event in enumerate(events)
        )
        pending = (
            {} if state is None or self.definition.deadlines is None else self.definition.deadlines(state)
        )
        return aggregate.changed(
            applied_event_id=envelope.id,
            state=None if state is None else state.model_dump(mode="json"),
            parked=(),
            outbox=records,
            deadlines=tuple(sorted(pending.items())),
            trace=aggregate.trace or trace,
        )

    def _parked_expiry(self, *, first_parked_id: str) -> tuple[tuple[str, datetime], ...]:
        """The deadline by which a parked event's deal must open; only stages that keep time have one.

        Its id names the first parked event: a deal that parks events again after an expiry gets a new
        deadline, whose announcement is not absorbed as a copy of the first one's.
        """
        if self.definition.deadlines is None or DeadlineReached not in self.definition.handlers:
            return ()
        due_at = self.clock() + timedelta(seconds=self.settings.parked_max_age_seconds)
        return ((f"{PARKED_EXPIRY}/{first_parked_id}", due_at),)

    def _expire_parked(self, aggregate: Aggregate, envelope: Envelope) -> Aggregate:
        """Dead-letter the events still waiting for a deal that never opened: each gets its answer.

        The dead letters go out through the outbox, with the state write, so a crash repeats neither
        less nor more than the write. On an opened deal nothing is parked and nothing happens.
        """
        detail = (
            f"no {' or '.join(sorted(model.TYPE for model in self.definition.opening_events))} "
            f"for this deal within {self.settings.parked_max_age_seconds:.0f}s"
        )
        dead_letters = tuple(
            self._dead_letter_record(
                source=(parked.topic, parked.partition, parked.offset),
                key=aggregate.id.encode(),
                value=parked.value.encode(),
                headers=parked.headers,
                code=DEAL_NEVER_OPENED,
                detail=detail,
            )
            for parked in aggregate.parked
        )
        return aggregate.changed(
            applied_event_id=envelope.id,
            state=aggregate.state,
            parked=(),
            outbox=dead_letters,
            deadlines=tuple(item for item in aggregate.deadlines if not _expires_parked(item[0])),
        )

    async def _apply(
        self, state: BaseModel | None, envelope: Envelope, now: datetime
    ) -> tuple[Any, list[Event]]:
        handler = self.definition.handlers[type(envelope.data)]
        facts = () if self.facts is None else (self.facts.gather(envelope.data, now),)
        started = time.perf_counter()
        try:
            decision = handler(state, envelope.data, now, *facts)
        except RuleBroken as rule:
            self.metrics.rejected.labels(self.definition.name, envelope.type, rule.code).inc()
            self.log.info("rule_broken", code=rule.code, reason=rule.message)
            return state, [
                ActivityRejected(
                    deal_id=envelope.data.partition_key,
                    activity_type=envelope.type,
                    activity_event_id=envelope.id,
                    stage_service=self.definition.name,
                    reason=Reason(code=rule.code, field=rule.field, message=rule.message),
                )
            ]
        finally:
            self.metrics.handler_seconds.labels(self.definition.name, envelope.type).observe(
                time.perf_counter() - started
            )
        if self.facts is not None:
            self.facts.note(envelope.data, decision.events)
        return decision.state, list(decision.events)

    # --- output ----------------------------------------------------------------------------------

    async def _publish(self, records: tuple[KafkaRecord, ...] | list[KafkaRecord]) -> None:
        confirmations = [
            await self.broker.publish(
                record.value, record.topic, key=record.key, headers=record.headers, no_confirm=True
            )
            for record in records
        ]
        await asyncio.gather(*confirmations)

    async def _flush(self, aggregate: Aggregate) -> None:
        if not aggregate.outbox:
            return
        await self._publish(aggregate.outbox)
        self._count_produced(aggregate.outbox)
        await self.store.mark_sent(aggregate)

    def _count_produced(self, records: Iterable[KafkaRecord]) -> None:
        """Count what the broker has acknowledged: dead letters as such, every other record as produced."""
        for record in records:
            if record.topic == self.dead_letter_topic:
                self._count_dead_letter(record.headers)
            else:
                self.metrics.produced.labels(
                    self.definition.name, known_type(record.headers.get("ce_type"))
                ).inc()

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], code: str, detail: str) -> None:
        headers: dict[str, str] = {}
        for name, value in record.headers:
            try:
                headers[name] = value.decode()
            except UnicodeDecodeError:
                headers[f"dlq_undecodable_header_{name}"] = value.hex()
        dead_letter = self._dead_letter_record(
            source=(record.topic, record.partition, record.offset),
            key=record.key or b"",
            value=record.value or b"",
            headers=headers,
            code=code,
            detail=detail,
        )
        await self._publish([dead_letter])
        self._count_dead_letter(dead_letter.headers)

    def _dead_letter_record(
        self,
        *,
        source: tuple[str, int, int],
        key: bytes,
        value: bytes,
        headers: Mapping[str, str],
        code: str,
        detail: str,
    ) -> KafkaRecord:
        """The original record, bytes unchanged, with the reason and where it came from in its headers."""
        topic, partition, offset = source
        return KafkaRecord(
            topic=self.dead_letter_topic,
            key=key,
            value=value,
            headers={
                **headers,
                "dlq_error_code": code,
                "dlq_error": detail[:2000],
                "dlq_source_topic": topic,
                "dlq_source_partition": str(partition),
                "dlq_source_offset": str(offset),
                "dlq_service": self.definition.name,
                "dlq_time": self.clock().isoformat(),
            },
        )

    def _count_dead_letter(self, headers: Mapping[str, str]) -> None:
        code = headers["dlq_error_code"]
        self.metrics.dead_lettered.labels(
            self.definition.name, known_type(headers.get("ce_type")), code
        ).inc()
        self.log.warning("dead_lettered", code=code, detail=headers["dlq_error"][:300])

    # --- faults ----------------------------------------------------------------------------------

    async def _with_retries(
        self,
        operation: Callable[[], Awaitable[None]],
        *,
        budget_seconds: float | None = None,
        give_up: Callable[[], bool] = lambda: False,
    ) -> None:
        """Retry a transient fault with capped exponential backoff and jitter, in place.

        Retrying in place keeps the partition's order. Past the budget (or once `give_up` says so) the
        fault is raised: the consumer then seeks back to this record (no commit) and it is delivered again.
        """
        budget = self.settings.retry_budget_seconds if budget_seconds is None else budget_seconds
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            try:
                try:
                    await operation()
                except OperationFailure as failure:
                    if interrupted(failure):
                        raise DatabaseInterrupted(str(failure)) from failure
                    raise
            except TRANSIENT_ERRORS as fault:
                attempt += 1
                self.healthy = False
                self.metrics.transient_faults.labels(self.definition.name).inc()
                if time.monotonic() >= deadline or give_up():
                    self.log.error("transient_fault_budget_exhausted", error=repr(fault), attempts=attempt)
                    raise
                delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2**attempt) * random.uniform(
                    0.5, 1.0
                )
                self.log.warning(
                    "transient_fault", error=repr(fault), attempt=attempt, retry_in=round(delay, 2)
                )
                until = time.monotonic() + delay
                while time.monotonic() < until and not give_up():  # noqa: ASYNC110 (a flag, not an Event)
                    await asyncio.sleep(min(0.2, until - time.monotonic()))
            else:
                if not self.healthy:
                    self.log.info("recovered", attempts=attempt)
                    self.healthy = True
                return


def _expires_parked(deadline_id: str) -> bool:
    return deadline_id.startswith(f"{PARKED_EXPIRY}/")


@dataclass(frozen=True, slots=True)
class Accepted:
    """An inbound record this stage handles, decoded."""

    record: ConsumerRecord[bytes, bytes]
    envelope: Envelope
    parked: ParkedRecord


class AggregateCache(ConsumerRebalanceListener):  # type: ignore[misc]
    """The aggregates this consumer wrote last, so a deal's next event needs no read.

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

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._entries.clear()

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._entries.clear()


def run_stage(definition: StageDefinition, settings: Settings | None = None) -> None:
    """Entry point of `python -m services.<stage>`: consume and serve HTTP until SIGINT or SIGTERM."""
    service = StageService(definition, settings or Settings())
    if not asyncio.run(serve(service)):
        sys.exit(STARTUP_FAILED)


async def serve(service: StageService) -> bool:
    """Run the service under uvicorn until it is asked to stop; False if its start was given up."""
    server = uvicorn.Server(
        uvicorn.Config(
            service.build_app(),
            host=service.settings.http_host,
            port=service.http_port,
            # Our JSON logging stays in charge, and probes every few seconds are not worth a line each.
            log_config=None,
            access_log=False,
            # A consumer that failed to start must end the process, not leave an HTTP server without it.
            lifespan="on",
        )
    )
    # uvicorn takes SIGTERM and SIGINT before the app starts; a service still waiting for its servers
    # must see them too, or it would only stop once the servers answer.
    service.stop_requested = lambda: server.should_exit
    service.request_stop = partial(setattr, server, "should_exit", True)
    await server.serve()
    return server.started and not service.startup_abandoned
