"""Reading events from a JSON Lines file, and telling its author, line by line, what is wrong with it.

One line is one event: `{"type": "lead.captured.v1", "id": "optional", "data": {...}}`. A line that is not
valid JSON, names no known type or breaks its contract is a problem of that line alone; the good lines are
still read. Fields the contract does not know are ignored by the services, so they are reported too: a
misspelt `compnay_name` is otherwise lost without a word.
"""

from __future__ import annotations

import contextlib
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from contracts import Event, event_model

# An activity's times move with `time_shift`, so a scripted story can be replayed as if it were now.
SHIFTED_TIMES = ("occurred_at", "captured_at", "meeting_at", "scheduled_for", "due_at")


@dataclass(frozen=True)
class Problem:
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return (
            f"line {self.line}: {self.field}: {self.reason}"
            if self.field
            else f"line {self.line}: {self.reason}"
        )


@dataclass
class EventFile:
    events: list[tuple[Event, str | None]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # lines that were not read
    unknown_fields: list[Problem] = field(default_factory=list)  # read, but these fields were ignored


def read_event_file(path: Path, time_shift: timedelta = timedelta(0)) -> EventFile:
    read = EventFile()
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            _read_line(read, number, line, time_shift)
    return read


def events_from_file(path: Path, time_shift: timedelta = timedelta(0)) -> Iterator[tuple[Event, str | None]]:
    """The events of a file that must be entirely valid (the demo's own story): the first problem raises."""
    read = read_event_file(path, time_shift)
    if read.problems:
        raise ValueError(f"{path}: {read.problems[0]}")
    yield from read.events


class _Refused(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


def _read_line(read: EventFile, number: int, line: str, time_shift: timedelta) -> None:
    try:
        kind, model, data, event_id = _envelope(line)
    except _Refused as refused:
        read.problems.append(Problem(number, refused.field, refused.reason))
        return
    for name in SHIFTED_TIMES:
        if isinstance(data.get(name), str):
            with contextlib.suppress(ValueError):  # the contract's validation below names the field
                data[name] = (datetime.fromisoformat(data[name]) + time_shift).isoformat()
    try:
        event = model.model_validate(data)
    except ValidationError as error:
        read.problems.extend(
            Problem(number, ".".join(str(part) for part in detail["loc"]), detail["msg"])
            for detail in error.errors(include_url=False)
        )
        return
    read.events.append((event, event_id))
    read.unknown_fields.extend(
        Problem(number, path, f"not a field of {kind}: ignored") for path in unknown_fields(model, data)
    )


def _envelope(line: str) -> tuple[str, type[Event], dict[str, Any], str | None]:
    """The line's event type, its contract, a copy of its data and its id; _Refused says what is wrong."""
    try:
        item = json.loads(line)
    except ValueError as error:
        raise _Refused("", f"not valid JSON ({error})") from error
    if not isinstance(item, dict):
        raise _Refused("", 'not an object: {"type": ..., "data": {...}}')
    kind, data, event_id = item.get("type"), item.get("data"), item.get("id")
    if not isinstance(kind, str):
        raise _Refused("type", 'missing: name the event, e.g. "lead.captured.v1"')
    model = event_model(kind if kind.startswith("io.") else f"io.dealflow.{kind}")
    if model is None:
        raise _Refused("type", f"unknown event type {kind!r}")
    if not isinstance(data, dict):
        raise _Refused("data", "missing: the event's fields, as an object")
    if event_id is not None and not isinstance(event_id, str):
        raise _Refused("id", "must be a string")
    return kind, model, dict(data), event_id


def unknown_fields(model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> list[str]:
    """The paths of the keys in `data` that the model (and the models nested in it) does not declare."""
    known = {name: info for name, info in model.model_fields.items()} | {
        info.alias: info for info in model.model_fields.values() if info.alias
    }
    unknown = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        info = known.get(key)
        if info is None:
            unknown.append(path)
            continue
        nested = _nested_model(info.annotation)
        if nested is None:
            continue
        if isinstance(value, dict):
            unknown.extend(unknown_fields(nested, value, f"{path}."))
        elif isinstance(value, list):
            for index, element in enumerate(value):
                if isinstance(element, dict):
                    unknown.extend(unknown_fields(nested, element, f"{path}.{index}."))
    return unknown


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, directly, optionally or as the elements of a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, tuple, frozenset, set):
        for argument in typing.get_args(annotation):
            if (found := _nested_model(argument)) is not None:
                return found
    return None
