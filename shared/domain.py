"""The pure vocabulary every stage's domain module speaks: decisions, rule breaks, deadlines. No I/O here."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Generic, TypeVar
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field

from contracts import Event
from contracts.events import OCCURRED_IN_FUTURE, OCCURRED_TOO_LONG_AGO

State = TypeVar("State", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Decision(Generic[State]):
    """The outcome of applying one event to an aggregate: its new state and the events it causes."""

    state: State
    events: list[Event] = field(default_factory=list)


class RuleBroken(Exception):
    """An event the stage's rules refuse. The state stays as it was and the sender is told why."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def business_time(event: Event, sent_at: datetime | None, processed_at: datetime) -> datetime:
    """When what the event records happened: its own time field, else its CloudEvents `time`, else (for
    a record without one) the moment it is processed. A time without a zone is taken as UTC."""
    at = event.own_time or sent_at or processed_at
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def not_before(moment: datetime, earliest: datetime) -> datetime:
    """`moment`, or `earliest` when it is earlier: a deal never moves back in time."""
    return max(moment, earliest)


class BusinessTimeRules(BaseModel):
    """How far from the processing clock an upstream event's own time may lie (a stage playbook's
    `business_time`): an activity's `occurred_at`, a lead's `captured_at`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clock_skew_seconds: int = Field(
        ge=0,
        le=86_400,
        description="how far ahead of the stage's clock an event may be dated (the sender's clock may run "
        "ahead); later: refused, occurred_in_future",
    )
    max_age_days: int = Field(
        ge=1,
        le=36_500,
        description="how long ago an event may be dated (imported history is years old); earlier: refused, "
        "occurred_too_long_ago",
    )

    def check(self, at: datetime, processed_at: datetime, field: str | None) -> None:
        """Raise RuleBroken when `at`, an upstream event's business time, is implausible at `processed_at`."""
        ahead = at - processed_at
        if ahead > timedelta(seconds=self.clock_skew_seconds):
            raise RuleBroken(
                OCCURRED_IN_FUTURE,
                f"dated {at.isoformat()}, {_duration(ahead)} after it was processed (at most "
                f"{self.clock_skew_seconds} s of clock skew is allowed)",
                field,
            )
        if processed_at - at > timedelta(days=self.max_age_days):
            raise RuleBroken(
                OCCURRED_TOO_LONG_AGO,
                f"dated {at.isoformat()}, more than {self.max_age_days} days before it was processed",
                field,
            )


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    return f"{seconds // 86_400} days" if seconds >= 86_400 else f"{seconds} s"


_DEADLINE_KIND = re.compile(r"[a-z][a-z0-9_]*")
_UNQUOTED_KEY = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote(key, safe="") leaves as it is


@lru_cache(maxsize=16_384)
def _deadline_id(kind: str, key: str, due_at: datetime) -> str:
    # Asked for every pending deadline of every event a stage applies, mostly the same ones again.
    due = due_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{kind}/{key if _UNQUOTED_KEY.fullmatch(key) else quote(key, safe='')}@{due}"


@dataclass(frozen=True, slots=True, order=True)
class Deadline:
    """A moment by which something must have happened in an aggregate, pending in its state.

    It alone makes and parses deadline ids. The id names the due time too, so a deadline that moves
    (a task rescheduled, a stall whose clock restarts) is a new deadline: an announcement of the old one
    that is still in flight matches nothing pending and changes nothing.
    """

    kind: str
    key: str
    due_at: datetime

    def __post_init__(self) -> None:
        if not _DEADLINE_KIND.fullmatch(self.kind):
            raise ValueError(f"deadline kind {self.kind!r} is not lower_snake_case")
        if self.due_at.tzinfo is None:
            raise ValueError("a deadline's due time must be timezone-aware")

    @property
    def id(self) -> str:
        return _deadline_id(self.kind, self.key, self.due_at)

    @classmethod
    def parse(cls, deadline_id: str) -> Deadline:
        """The deadline an id names; ValueError when it is not one this class made."""
        kind, slash, rest = deadline_id.partition("/")
        key, at, due = rest.rpartition("@")
        if not (slash and at):
            raise ValueError(f"{deadline_id!r} is not a deadline id")
        due_at = datetime.strptime(due, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
        return cls(kind=kind, key=unquote(key), due_at=due_at)


def pending_by_id(deadlines: Iterable[Deadline]) -> dict[str, Deadline]:
    return {deadline.id: deadline for deadline in deadlines}
