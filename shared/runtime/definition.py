"""What defines a stage: its name, its state, its pure handlers and the facts and deadlines it keeps."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from faststream.asgi.types import ASGIApp
from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from contracts import Event, Topic
from contracts.events import Reason
from shared.domain import BusinessTimeRules, Deadline, Decision
from shared.settings import Settings

Document = dict[str, Any]  # as shared.mongo names it, without importing the database client


class EventHandler(Protocol):
    """A pure rule: the state (None before the aggregate opens), one event, the business time it
    happened and, for stages with facts, what they know; the new state and what it causes.

    The business time (`now`) is the event's own time (an activity's `occurred_at`, a deadline's
    `due_at`, a derived event's time field), else its CloudEvents `time`: never the processing clock,
    unless the record has no time at all. Whatever the handler emits is dated from it."""

    def __call__(self, state: Any, event: Any, now: datetime, /, *facts: Any) -> Decision[Any]: ...


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


def with_playbook(
    handlers: Mapping[type[Event], Callable[..., Decision[Any]]], playbook: object
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
    ignored_before_opening: frozenset[type[Event]] = frozenset()
    """Events another stage answers while this one has no aggregate yet (a rep's activity on a lead still
    in qualification): for an aggregate not open they change nothing, instead of being parked."""
    facts: Callable[[AsyncDatabase[Document]], StageFacts] | None = None
    deadlines: Callable[[Any], Iterable[Deadline]] | None = None
    """The deadlines a state has pending; each fires once, when due, as a DeadlineReached event."""
    http_port: int = 8080
    """Where its health, metrics and docs endpoints listen unless DEALFLOW_HTTP_PORT says otherwise."""
    http_routes: Callable[[AsyncDatabase[Document], Settings], Sequence[tuple[str, ASGIApp]]] | None = None
    """The stage's own HTTP pages, by exact path, served beside the operations endpoints; they get the
    service's database and settings."""
    business_time: BusinessTimeRules | None = None
    """When set, an upstream event (an activity, a lead) whose own time is implausible by the stage's
    clock is refused as a rule break before its handler runs (occurred_in_future, occurred_too_long_ago)."""
    refusal: Callable[[Event, Reason], Event] | None = None
    """How the stage answers a rule break, when not with activity.rejected (prospecting: lead.rejected)."""

    @property
    def input_topics(self) -> list[Topic]:
        return sorted({event_type.TOPIC for event_type in self.handlers})

    @property
    def keeps_time(self) -> bool:
        return self.deadlines is not None
