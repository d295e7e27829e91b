"""Listing dead-lettered records and re-driving chosen ones to their source topic after a fix."""

from __future__ import annotations

from collections.abc import Iterable

from cli.kafka_io import SeenEvent, publish, read_all
from contracts import dead_letter_topic
from contracts.topics import SERVICES
from shared.envelope import KafkaRecord
from shared.settings import Settings

DLQ_HEADER_PREFIX = "dlq_"


def position(event: SeenEvent) -> str:
    """How a dead letter is named on the command line: service:partition:offset."""
    return f"{event.headers.get('dlq_service', '?')}:{event.partition}:{event.offset}"


async def dead_letters(settings: Settings, services: Iterable[str] = SERVICES) -> list[SeenEvent]:
    return await read_all(settings, [settings.topic(dead_letter_topic(service)) for service in services])


def original_record(dead: SeenEvent) -> KafkaRecord:
    """The record as it was before it was dead-lettered: same key, value and headers, same source topic."""
    headers = {name: value for name, value in dead.headers.items() if not name.startswith(DLQ_HEADER_PREFIX)}
    return KafkaRecord(
        topic=dead.headers["dlq_source_topic"], key=dead.key.encode(), value=dead.value, headers=headers
    )


async def redrive(settings: Settings, chosen: Iterable[str]) -> list[str]:
    """Publish the chosen dead letters again to their source topics; returns the positions re-driven."""
    wanted = set(chosen)
    letters = [dead for dead in await dead_letters(settings) if position(dead) in wanted]
    unknown = wanted - {position(dead) for dead in letters}
    if unknown:
        raise KeyError(f"no dead letter at {', '.join(sorted(unknown))}")
    await publish(settings, [original_record(dead) for dead in letters])
    return [position(dead) for dead in letters]
