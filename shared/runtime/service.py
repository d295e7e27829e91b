"""The consume, decide, store, publish loop that every stage service runs: wiring around the pure step.

Guarantees (the step's own are in shared.runtime.transition):
- the new state and the events it causes are one atomic document write (the outbox); events are
  published after the write, and whatever a crash may have left unpublished is published again when
  the partition is next assigned (shared.runtime.outbox);
- the offset is committed only after all that, so a crash means redelivery, never loss;
- totality: every consumed record ends applied, answered by a rejection event, or dead-lettered with a
  reason code; whatever decoding, deciding, storing or publishing raises is decided for that record
  alone, and never rewinds another record or partition. Transient faults are retried in place.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage

from contracts import Topic, dead_letter_topic
from shared.kafka import ensure_topics, make_broker, partition_of
from shared.logging import configure_logging
from shared.metrics import StageMetrics
from shared.mongo import make_client, service_database
from shared.operations import operations_routes, server_checks
from shared.runtime.batch import Batches
from shared.runtime.cache import AggregateCache, PartitionsMoved
from shared.runtime.deadlines import Announcer, DeadlineIndex
from shared.runtime.definition import StageDefinition
from shared.runtime.erasure import ERASED_SUBJECTS, Erasure
from shared.runtime.faults import RetryPolicy
from shared.runtime.outbox import Outbox
from shared.runtime.publisher import Publisher
from shared.runtime.transition import Limits
from shared.settings import Settings
from shared.store import OUTBOX_CHECKPOINTS, AggregateStore, OutboxCheckpoints
from shared.tracing import make_tracer


async def _raw_body(message: StreamMessage[Any]) -> bytes:
    # Decoding is ours: FastStream's JSON decoding would fail on bad input before we could dead-letter it.
    return message.body


async def _tolerant_parse(
    message: ConsumerRecord[bytes, bytes] | tuple[ConsumerRecord[bytes, bytes], ...],
    original: Callable[[Any], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """FastStream's parser, shown headers it can read, handing on the records exactly as they came.

    It decodes every header value as UTF-8 before any handler runs, and a value that is not (or is
    None) fails the whole batch where no handler can answer it, and its offsets are committed. The
    runtime reads the original headers itself and gives each such record its dead letter.
    """
    records = message if isinstance(message, tuple) else (message,)
    readable = tuple(replace(record, headers=_readable(record.headers)) for record in records)
    parsed = await original(readable if isinstance(message, tuple) else readable[0])
    parsed.raw_message = message
    return parsed


def _readable(headers: Sequence[tuple[str, bytes | None]]) -> list[tuple[str, bytes]]:
    readable = []
    for name, value in headers:
        try:
            (value or b"").decode()
        except UnicodeDecodeError:
            value = b""
        readable.append((name, value or b""))
    return readable


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
        self.cache = AggregateCache(max_bytes=settings.cache_max_bytes)
        self.deadline_index = DeadlineIndex()
        self.retry = RetryPolicy(
            budget_seconds=settings.retry_budget_seconds,
            servers_answer=self._servers_answer,
            on_fault=self.metrics.transient_faults.labels(definition.name).inc,
        )
        self.publisher = Publisher(
            self.broker,
            self.metrics,
            service=definition.name,
            dead_letter_topic=self.dead_letter_topic,
            max_dead_letter_bytes=settings.max_event_bytes * 4,
            clock=clock,
        )
        self.outbox = Outbox(
            store=self.store,
            checkpoints=OutboxCheckpoints(self.database[OUTBOX_CHECKPOINTS]),
            deadline_index=self.deadline_index,
            publish=self.publisher.publish,
        )
        self.erasure = Erasure(
            service=definition.name,
            source=self.source,
            store=self.store,
            erased=self.database[ERASED_SUBJECTS],
            facts=self.facts,
            cache=self.cache,
            publish=self.publisher.publish,
            topic=settings.topic,
            clock=clock,
        )
        self.limits = Limits(
            max_parked=settings.max_parked_events,
            max_document_bytes=settings.max_document_bytes,
            max_record_bytes=settings.max_event_bytes,
            max_event_bytes=settings.max_event_bytes,
            parked_max_age=timedelta(seconds=settings.parked_max_age_seconds),
        )
        self._startup_watchdog: asyncio.TimerHandle | None = None
        self._timer: asyncio.Task[None] | None = None
        self.batches = Batches(
            definition=definition,
            settings=settings,
            clock=clock,
            source=self.source,
            metrics=self.metrics,
            tracer=self.tracer,
            store=self.store,
            cache=self.cache,
            facts=self.facts,
            retry=self.retry,
            publisher=self.publisher,
            erasure=self.erasure,
            deadline_index=self.deadline_index,
            outbox=self.outbox,
            limits=self.limits,
            partitions=self._partitions,
            stopping=lambda: self.stop_requested(),
        )

    @property
    def healthy(self) -> bool:
        return self.retry.healthy

    def build_app(self) -> AsgiFastStream:
        """The service as an ASGI app: the Kafka consumer, plus its HTTP endpoints when served by uvicorn."""
        self.subscriber = self.broker.subscriber(
            *(self.settings.topic(topic) for topic in self.definition.input_topics),
            group_id=self.settings.consumer_group(self.definition.name),
            # Every record's outcome is decided in handle_batch; only a stop leaves it early, and then
            # redelivery (no commit) is what must happen.
            ack_policy=AckPolicy.NACK_ON_ERROR,
            parser=_tolerant_parse,
            decoder=_raw_body,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            listener=PartitionsMoved(self.cache, self.outbox.assigned),
            batch=True,
            max_records=self.settings.batch_max_records,
            batch_timeout_ms=self.settings.batch_wait_ms,
        )

        @self.subscriber
        async def consume(message: KafkaMessage) -> None:
            records = message.raw_message
            await self.batches.handle_batch(records if isinstance(records, tuple) else (records,))

        privacy = self.broker.subscriber(
            self.settings.topic(Topic.PRIVACY),
            # A group of its own: erasure requests are keyed by request, not by deal, so they cannot share
            # the co-partitioned assignment of the stage's inputs.
            group_id=f"{self.settings.consumer_group(self.definition.name)}.privacy",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            parser=_tolerant_parse,
            decoder=_raw_body,
            auto_offset_reset="earliest",
        )

        @privacy
        async def erase(message: KafkaMessage) -> None:
            await self.batches.handle_privacy_record(message.raw_message)

        own_routes = (
            []
            if self.definition.http_routes is None
            else self.definition.http_routes(self.database, self.settings)
        )
        self.app = app = AsgiFastStream(
            self.broker, asgi_routes=[*operations_routes(self), *own_routes], logger=self.log
        )
        app.on_startup(self._prepare)
        app.after_startup(self._ready)
        if self.definition.keeps_time:
            app.after_startup(self._start_timer)
            app.on_shutdown(self._stop_timer)
        app.after_shutdown(self._close)
        return app

    # --- start and stop --------------------------------------------------------------------------

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
            await self.retry.run(operation, budget_seconds=math.inf, give_up=self.stop_requested)
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

    async def _ready(self) -> None:
        self._stop_startup_watchdog()
        self.started = True
        self.log.info("service_ready", input_topics=[str(t) for t in self.definition.input_topics])

    async def _start_timer(self) -> None:
        announcer = Announcer(
            service=self.definition.name,
            source=self.source,
            topic=self.settings.topic(Topic.DEADLINES),
            index=self.deadline_index,
            consumer=lambda: self._consumer,
            partition_of=partition_of,
            publish=self.publisher.publish,
            clock=self.clock,
            tick_seconds=self.settings.timer_tick_seconds,
            counted=self.metrics.deadlines_announced.labels(self.definition.name).inc,
        )
        self._timer = asyncio.create_task(announcer.run())

    async def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)

    async def _close(self) -> None:
        self.started = False
        try:
            await asyncio.wait_for(self.outbox.flush(), timeout=5)
        except Exception as fault:  # the next owner publishes those outboxes once more
            self.log.warning("outbox_checkpoint_not_written_at_stop", error=repr(fault))
        self._stop_startup_watchdog()
        self.tracer_provider.shutdown()
        await self.mongo.close()

    async def _servers_answer(self) -> bool:
        return all(await server_checks(self))

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

    def _partitions(self, topic: str) -> int | None:
        consumer = self._consumer
        partitions = None if consumer is None else consumer.partitions_for_topic(topic)
        return len(partitions) if partitions else None
