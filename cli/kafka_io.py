"""Publishing and reading dealflow events from outside the services (CLI, demo, tests)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaTimeoutError

from contracts import Event, Topic, dead_letter_topic
from contracts.topics import SERVICES
from shared.envelope import KafkaRecord, decode_headers, encode
from shared.kafka import client_options, ensure_topics, existing_partitions, running
from shared.settings import Settings

CLI_SOURCE = "/dealflow/cli"


@dataclass(frozen=True)
class SeenEvent:
    """An event read back from a topic, decoded loosely: reading must not fail on odd records."""

    topic: str
    partition: int
    offset: int
    key: str
    headers: dict[str, str]
    data: dict[str, Any] | None
    value: bytes = field(repr=False, default=b"")
    timestamp_ms: int = 0

    @property
    def type(self) -> str:
        return self.headers.get("ce_type", "?").removeprefix("io.dealflow.")

    @property
    def time(self) -> str:
        return self.headers.get("ce_time", "")

    @property
    def id(self) -> str:
        return self.headers.get("ce_id", "")


def records_for(settings: Settings, events: Iterable[tuple[Event, str | None]]) -> list[KafkaRecord]:
    """Records as an upstream system sends them: an event's CloudEvents time is when it happened (its
    own time field, such as an activity's `occurred_at`), else now."""
    return [
        encode(
            event,
            topic=settings.topic(event.TOPIC),
            source=CLI_SOURCE,
            event_id=event_id,
            time=event.own_time,
        )
        for event, event_id in events
    ]


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        max_request_size=8 * 1024 * 1024,
    )


async def publish(settings: Settings, records: Iterable[KafkaRecord]) -> int:
    """Publish the records once their topics exist and can take writes; the number published."""
    records = list(records)
    await prepare_topics(settings, {record.topic for record in records})
    async with running(make_producer(settings)) as producer:
        await asyncio.gather(*await send(producer, records))
        return len(records)


async def send(producer: AIOKafkaProducer, records: Iterable[KafkaRecord]) -> list[asyncio.Future[Any]]:
    """Hand the records to the producer; each future resolves when Kafka acknowledged its record."""
    return [
        await producer.send(
            record.topic,
            value=record.value,
            key=record.key,
            headers=[(name, value.encode()) for name, value in record.headers.items()],
        )
        for record in records
    ]


LEADERS_TIMEOUT_SECONDS = 30.0


async def prepare_topics(settings: Settings, topics: Iterable[str]) -> None:
    """Create the topics that are missing, then wait until the leader of every partition serves it.

    Producing right after a topic is created (here or by a service that just started) makes aiokafka
    warn "Topic ... not found in cluster metadata" and "NotLeaderForPartitionError ... retrying": the
    metadata names a leader a moment before that broker serves the partition. Creating the topics here
    also gives them the configured partition count, where producing would let the broker auto-create
    them with its own default.
    """
    topics = sorted(set(topics))
    if not topics:
        return
    dead_letters = {settings.topic(dead_letter_topic(service)) for service in SERVICES}
    await ensure_topics(settings, topics, large_records=[topic for topic in topics if topic in dead_letters])
    partitions = await _partitions_with_leaders(settings, topics)
    # Only a serving leader answers ListOffsets; aiokafka retries the others quietly until they do. One
    # request per topic, all at once: a single request would learn the topics' metadata one per retry
    # (retried 20 ms apart, not 100: each retry is one small request, and the wait ends sooner).
    async with running(AIOKafkaConsumer(**client_options(settings), retry_backoff_ms=20)) as consumer:
        await asyncio.gather(
            *(consumer.end_offsets([tp for tp in partitions if tp.topic == topic]) for topic in topics)
        )


async def _partitions_with_leaders(settings: Settings, topics: list[str]) -> list[TopicPartition]:
    """The topics' partitions, once the metadata shows each topic, and every partition with a leader."""
    deadline = time.monotonic() + LEADERS_TIMEOUT_SECONDS
    async with running(AIOKafkaAdminClient(**client_options(settings))) as admin:
        while True:
            # No names: naming a topic in a metadata request may auto-create it (see existing_partitions).
            described = {topic["topic"]: topic for topic in await admin.describe_topics()}
            if all(_led(described.get(name)) for name in topics):
                return [
                    TopicPartition(name, partition["partition"])
                    for name in topics
                    for partition in described[name]["partitions"]
                ]
            if time.monotonic() >= deadline:
                raise KafkaTimeoutError(f"topics without leaders after {LEADERS_TIMEOUT_SECONDS:.0f}s")
            await asyncio.sleep(0.1)


def _led(topic: dict[str, Any] | None) -> bool:
    """Whether a described topic is known without error and has a leader for each of its partitions."""
    if topic is None or topic["error_code"] != 0 or not topic["partitions"]:
        return False
    return all(partition["leader"] >= 0 for partition in topic["partitions"])


def seen_event(record: Any) -> SeenEvent:
    try:
        headers = decode_headers(record.headers)
    except Exception:
        headers = {}
    try:
        data = json.loads(record.value) if record.value else None
    except ValueError:
        data = None
    return SeenEvent(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=(record.key or b"").decode(errors="replace"),
        headers=headers,
        data=data if isinstance(data, dict) else None,
        value=record.value or b"",
        timestamp_ms=record.timestamp,
    )


async def read_all(settings: Settings, topics: Iterable[str]) -> list[SeenEvent]:
    """Every record now in the topics, read from the start without joining a consumer group."""
    partitions = await existing_partitions(settings, topics)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    async with running(consumer):
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if end[tp] > 0}
        seen: dict[tuple[str, int, int], SeenEvent] = {}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                # By position: a fetch issued before the seek took effect can hand a record over twice.
                seen.update(((r.topic, r.partition, r.offset), seen_event(r)) for r in records)
                if records and records[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return list(seen.values())


async def existing_topics(settings: Settings, topics: Iterable[str]) -> list[str]:
    """Those of the topics that exist, in the order given; asking creates nothing."""
    wanted = list(dict.fromkeys(topics))
    found = {tp.topic for tp in await existing_partitions(settings, wanted)}
    return [topic for topic in wanted if topic in found]


async def read_at(settings: Settings, partitions: Iterable[TopicPartition], offset: int) -> list[SeenEvent]:
    """The record at `offset` in each of the partitions that has one, read without a consumer group."""
    partitions = list(partitions)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    async with running(consumer):
        consumer.assign(partitions)
        start = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        found: list[SeenEvent] = []
        for tp in partitions:
            if not start[tp] <= offset < end[tp]:
                continue
            consumer.seek(tp, offset)
            async with asyncio.timeout(60):
                records: list[Any] = []
                while not records and await consumer.position(tp) < end[tp]:
                    records = (await consumer.getmany(tp, timeout_ms=1000, max_records=1)).get(tp, [])
            # Transaction markers and compaction leave gaps: the first record read may be a later one.
            if records and records[0].offset == offset:
                found.append(seen_event(records[0]))
        return found


async def follow(
    settings: Settings, topics: Iterable[str], *, from_beginning: bool
) -> AsyncIterator[SeenEvent]:
    """Every new record of those topics that exist now (subscribing to a missing one would create it)."""
    existing = await existing_topics(settings, topics)
    if not existing:
        raise LookupError(f"none of the topics exists in namespace {settings.namespace!r}")
    consumer = AIOKafkaConsumer(
        *existing,
        **client_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        group_id=None,
    )
    async with running(consumer):
        async for record in consumer:
            yield seen_event(record)


def all_topics(settings: Settings) -> list[str]:
    """Every event topic and every dead-letter topic of the deployment."""
    return [settings.topic(topic) for topic in Topic] + [
        settings.topic(dead_letter_topic(service)) for service in SERVICES
    ]


async def wait_for(
    settings: Settings,
    topics: Iterable[str],
    done: Any,
    *,
    timeout: float,
    interval: float = 1.0,
) -> list[SeenEvent]:
    """Read the topics again and again until `done(events)` holds or the time is up; return the last read."""
    topics = list(topics)
    deadline = time.monotonic() + timeout
    while True:
        events = await read_all(settings, topics)
        if done(events) or time.monotonic() >= deadline:
            return events
        await asyncio.sleep(interval)
