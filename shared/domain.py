"""The pure vocabulary every stage's domain module speaks: decisions, rule breaks, deadlines. No I/O here."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar
from urllib.parse import quote, unquote

from pydantic import BaseModel

from contracts import Event

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


_DEADLINE_KIND = re.compile(r"[a-z][a-z0-9_]*")


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
        due = self.due_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        return f"{self.kind}/{quote(self.key, safe='')}@{due}"

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
