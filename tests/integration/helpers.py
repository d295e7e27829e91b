from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from cli.kafka_io import SeenEvent, all_topics, publish, wait_for
from contracts import Event
from contracts.events import LeadCaptured
from shared.envelope import encode
from shared.runtime import StageDefinition, StageService
from shared.settings import Settings


def fit_lead(lead_id: str) -> LeadCaptured:
    """A lead that passes prospecting's rules and fits the ICP: it becomes a prospect."""
    return LeadCaptured(
        lead_id=lead_id,
        email="jana@acme-robotics.de",
        title="CTO",
        company_name="Acme Robotics",
        country="DE",
        employees=250,
        industry="software",
    )


class Clock:
    """A clock the test moves by hand; a service reads it for `now` and to find due deadlines."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def running(definition: StageDefinition, settings: Settings) -> AsyncIterator[StageService]:
    """A stage service consuming from the real broker in this process, until the block ends."""
    service = StageService(definition, settings)
    async with service.build_app():
        yield service


async def events_when(
    settings: Settings, done: Callable[[list[SeenEvent]], bool], timeout: float = 60
) -> list[SeenEvent]:
    events = await wait_for(settings, all_topics(settings), done, timeout=timeout, interval=0.5)
    assert done(events), f"timed out; saw {Counter(e.type for e in events)}"
    return events


def of_type(events: list[SeenEvent], event_type: str) -> list[SeenEvent]:
    return [event for event in events if event.type == event_type]


async def send(
    settings: Settings, *events: Event, event_id: str | None = None, at: datetime | None = None
) -> None:
    """Publish events as an upstream system would, each to its contract's topic.

    `at` is their CloudEvents time (default: now): the business time of an event without a time field
    of its own, such as prospect.identified.
    """
    await publish(
        settings,
        [
            encode(event, topic=settings.topic(event.TOPIC), source="/test", event_id=event_id, time=at)
            for event in events
        ],
    )


def by(events: list[SeenEvent], key: str, event_type: str) -> list[SeenEvent]:
    return [event for event in events if event.key == key and event.type == event_type]
