"""Listing and showing dead-lettered records, and re-driving them to their source topic after a fix.

A dead letter is named `service:partition:offset` (its place in `<namespace>.deadletter.<service>.v1`).
Reading creates nothing: no topic (a missing one is reported as missing), no consumer group. A record
is re-driven either unchanged or with an edited payload, which is validated as the service would
validate it before anything is sent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from cli.kafka_io import CLI_SOURCE, SeenEvent, existing_topics, publish, read_all, read_at
from contracts import dead_letter_topic, event_model
from contracts.events import EVENT_TYPE_PREFIX
from contracts.topics import SERVICES
from shared.envelope import CONTENT_TYPE, SPEC_VERSION, KafkaRecord, PoisonMessage, decode
from shared.kafka import existing_partitions
from shared.settings import Settings

DLQ_HEADER_PREFIX = "dlq_"


class DeadLetterError(Exception):
    """A problem to tell the operator about, in a sentence; nothing was sent."""


class InvalidPayload(DeadLetterError):
    """The edited payload would be dead-lettered again; `problems` are `field: reason` lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("the payload is not valid, nothing was sent:\n" + "\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Position:
    """Where a dead letter is: its service's dead-letter topic, a partition (None: any) and an offset."""

    service: str
    partition: int | None
    offset: int

    def __str__(self) -> str:
        return f"{self.service}:{'*' if self.partition is None else self.partition}:{self.offset}"


def position(event: SeenEvent) -> str:
    """How a dead letter is named on the command line: service:partition:offset."""
    return f"{event.headers.get('dlq_service', '?')}:{event.partition}:{event.offset}"


def known_service(service: str) -> str:
    if service not in SERVICES:
        raise DeadLetterError(f"unknown service {service!r}: use one of {', '.join(SERVICES)}")
    return service


def parse_position(text: str) -> Position:
    parts = text.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise DeadLetterError(f"{text!r} is not service:partition:offset, as `deadletters list` shows them")
    return Position(known_service(parts[0]), int(parts[1]), int(parts[2]))


def missing_topic(settings: Settings, service: str) -> str:
    topic = settings.topic(dead_letter_topic(service))
    return (
        f"no dead-letter topic {topic} on {settings.kafka_bootstrap_servers}: {service} has not run in "
        f"namespace {settings.namespace!r} (it creates the topic when it starts), so it has dead-lettered "
        "nothing there"
    )


async def dead_letters(
    settings: Settings, services: Iterable[str] = SERVICES
) -> tuple[list[SeenEvent], list[str]]:
    """Every dead letter of those services, and the services whose dead-letter topic does not exist."""
    services = [known_service(service) for service in services]
    topics = {settings.topic(dead_letter_topic(service)): service for service in services}
    existing = await existing_topics(settings, topics)
    missing = [service for topic, service in topics.items() if topic not in existing]
    return await read_all(settings, existing), missing


async def find(settings: Settings, where: Position) -> SeenEvent:
    """The dead letter at that position; raises DeadLetterError saying why there is none."""
    topic = settings.topic(dead_letter_topic(known_service(where.service)))
    partitions = await existing_partitions(settings, [topic])
    if not partitions:
        raise DeadLetterError(missing_topic(settings, where.service))
    if where.partition is not None:
        chosen = [tp for tp in partitions if tp.partition == where.partition]
        if not chosen:
            raise DeadLetterError(f"{topic} has no partition {where.partition} (it has {len(partitions)})")
        partitions = chosen
    found = await read_at(settings, partitions, where.offset)
    if not found:
        raise DeadLetterError(f"no dead letter at {where} (in {topic})")
    if len(found) > 1:
        raise DeadLetterError(
            f"offset {where.offset} is in partitions {', '.join(str(dead.partition) for dead in found)} "
            f"of {topic}: say which with --partition (or as service:partition:offset)"
        )
    return found[0]


def describe(dead: SeenEvent) -> str:
    """A dead letter for the terminal: where it is, its key, every header, and its payload."""
    text = f"position   {position(dead)}\n" + _lines(dead.topic, dead.key, dead.headers, dead.value)
    if "dlq_value_sha256" in dead.headers:
        text += f"(not kept: {dead.headers.get('dlq_value_bytes', '?')} bytes, too large for the dead letter)"
    return text


def describe_record(record: KafkaRecord) -> str:
    return _lines(record.topic, record.key.decode(errors="replace"), record.headers, record.value)


def _lines(topic: str, key: str, headers: dict[str, str], value: bytes) -> str:
    return "\n".join(
        [
            f"topic      {topic}",
            f"key        {key}",
            "headers",
            *(f"  {name}: {text}" for name, text in sorted(headers.items())),
            "payload",
            payload_text(value),
        ]
    )


def payload_text(value: bytes) -> str:
    """The value as indented JSON when it is JSON, else as text (undecodable bytes replaced)."""
    try:
        return json.dumps(json.loads(value), indent=2, ensure_ascii=False)
    except ValueError:
        return value.decode(errors="replace")


def original_record(dead: SeenEvent) -> KafkaRecord:
    """The record as it was before it was dead-lettered: same key, value and headers, same source topic."""
    if "dlq_value_sha256" in dead.headers:
        raise DeadLetterError(
            f"the dead letter at {position(dead)} kept only the digest of its "
            f"{dead.headers.get('dlq_value_bytes', '?')}-byte value (too large to keep), so it cannot be "
            "re-driven unchanged: send its payload with --payload"
        )
    return KafkaRecord(
        topic=source_topic(dead), key=dead.key.encode(), value=dead.value, headers=headers_of(dead)
    )


def source_topic(dead: SeenEvent) -> str:
    if not dead.headers.get("dlq_source_topic"):
        raise DeadLetterError(
            f"the record at {position(dead)} does not say where it came from (dlq_source_topic)"
        )
    return dead.headers["dlq_source_topic"]


def headers_of(dead: SeenEvent) -> dict[str, str]:
    return {name: value for name, value in dead.headers.items() if not name.startswith(DLQ_HEADER_PREFIX)}


def with_new_id(record: KafkaRecord) -> KafkaRecord:
    return KafkaRecord(record.topic, record.key, record.value, record.headers | {"ce_id": str(uuid.uuid4())})


def edited_record(
    dead: SeenEvent, payload: bytes, *, max_bytes: int, new_id: bool = False, event_type: str | None = None
) -> KafkaRecord:
    """The dead letter with its payload replaced, as the service will accept it; raises InvalidPayload.

    It keeps the original `ce_*` and other headers (not the `dlq_*` ones) and `ce_id` unless `new_id`;
    `ce_type` may be named when the original lacks one. The key and `ce_subject` are the payload's
    partition key, so the event lands in the partition of its deal. The value is the edited JSON as
    given (fields the model does not know are kept), and it passes the same checks as in the service.
    """
    topic, headers = source_topic(dead), headers_of(dead)
    if event_type is not None:
        headers["ce_type"] = event_type if event_type.startswith("io.") else EVENT_TYPE_PREFIX + event_type
    model = event_model(headers.get("ce_type", ""))
    if model is None:
        raise InvalidPayload(
            [f"ce_type: {headers.get('ce_type')!r} is not a dealflow event type; name one with --type"]
        )
    try:
        data = json.loads(payload)
    except ValueError as error:
        raise InvalidPayload([f"<payload>: not JSON: {error}"]) from None
    try:
        event = model.model_validate(data)
    except ValidationError as error:
        raise InvalidPayload(
            [
                f"{'.'.join(map(str, problem['loc'])) or '<root>'}: {problem['msg']}"
                for problem in error.errors()
            ]
        ) from None
    headers |= {
        "ce_specversion": SPEC_VERSION,
        "content-type": CONTENT_TYPE,
        "ce_subject": event.partition_key,
    }
    headers.setdefault("ce_source", CLI_SOURCE)
    if new_id or not headers.get("ce_id"):
        headers["ce_id"] = str(uuid.uuid4())
    record = KafkaRecord(
        topic=topic,
        key=event.partition_key.encode(),
        value=json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(),
        headers=headers,
    )
    try:  # the service's own decoding: size, ids, what the database can store
        decode(record.headers, record.value, max_bytes=max_bytes)
    except PoisonMessage as poison:
        raise InvalidPayload([f"{poison.code}: {poison.detail}"]) from None
    return record


async def send(settings: Settings, records: Sequence[KafkaRecord]) -> None:
    """Publish to the source topics, each of which must exist (sending to a missing one would create it)."""
    topics = {record.topic for record in records}
    missing = topics - set(await existing_topics(settings, topics))
    if missing:
        raise DeadLetterError(
            f"the source topic {', '.join(sorted(missing))} does not exist; nothing was sent"
        )
    await publish(settings, records)


async def redrive(
    settings: Settings, chosen: Iterable[Position], *, new_id: bool = False
) -> list[KafkaRecord]:
    """Publish the chosen dead letters again, unchanged, to their source topics; returns what was sent."""
    records = []
    for where in chosen:
        record = original_record(await find(settings, where))
        records.append(with_new_id(record) if new_id else record)
    await send(settings, records)
    return records


async def redrive_edited(
    settings: Settings,
    where: Position,
    payload: bytes,
    *,
    new_id: bool = False,
    event_type: str | None = None,
    dry_run: bool = False,
) -> KafkaRecord:
    """Publish the dead letter at `where` with `payload` instead of its value (see `edited_record`)."""
    record = edited_record(
        await find(settings, where),
        payload,
        max_bytes=settings.max_event_bytes,
        new_id=new_id,
        event_type=event_type,
    )
    if not dry_run:
        await send(settings, [record])
    return record
