"""The pure vocabulary every stage's domain module speaks: decisions and rule breaks. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

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
