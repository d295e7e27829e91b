"""CloudEvents 1.0 in Kafka binary content mode.

The event's attributes travel as `ce_*` headers, its data is the JSON record value, and the record key is
the partition key (the deal or lead id), so one partition, and one consumer, sees each deal in order.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from contracts import Event, event_model
from shared.storable import storable_problem
from shared.tracing import trace_headers

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
REQUIRED_ATTRIBUTES = ("ce_specversion", "ce_id", "ce_source", "ce_type")
# Derived event ids are stable across redeliveries and replays, so downstream deduplication holds.
MAX_ID_CHARS = 256
_EVENT_ID_NAMESPACE = uuid.UUID("8f9d3a64-1f5e-4c3b-9d0e-3d6a2b7c5e11")


class PoisonMessage(Exception):
    """A record that can never be processed as it is; it belongs in the dead-letter topic."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    topic: str
    key: bytes
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded CloudEvent: its attributes and its validated payload."""

    id: str
    source: str
    type: str
    time: datetime | None
    subject: str | None
    data: Event
    trace: dict[str, str] = field(default_factory=dict)
    """The W3C trace context it arrived with (`traceparent`, `tracestate`), if any."""
    digest: str = ""
    """Of its type and bytes: a second event under the same id with other content is a conflict."""


def derived_event_id(cause_id: str, index: int | str) -> str:
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{cause_id}/{index}"))


def encode(
    event: Event,
    *,
    topic: str,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> KafkaRecord:
    headers = {
        "ce_specversion": SPEC_VERSION,
        "ce_id": event_id or str(uuid.uuid4()),
        "ce_source": source,
        "ce_type": event.TYPE,
        "ce_time": (time or datetime.now(UTC)).isoformat(),
        "ce_subject": event.partition_key,
        "content-type": CONTENT_TYPE,
        **(extra_headers or {}),
    }
    return KafkaRecord(
        topic=topic,
        key=event.partition_key.encode(),
        value=event.model_dump_json(exclude_none=True).encode(),
        headers=headers,
    )


def decode_headers(raw_headers: Iterable[tuple[str, bytes]] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(raw_headers, Mapping):
        return dict(raw_headers)
    try:
        return {name: (value or b"").decode() for name, value in raw_headers}
    except UnicodeDecodeError as error:
        raise PoisonMessage("invalid_header", f"a header is not UTF-8: {error}") from error


def decode(headers: Mapping[str, str], value: bytes | None, *, max_bytes: int) -> Envelope:
    """Turn a record into an Envelope, or raise PoisonMessage saying exactly what is wrong with it."""
    missing = [name for name in REQUIRED_ATTRIBUTES if not headers.get(name)]
    if missing:
        raise PoisonMessage("missing_cloudevents_attribute", f"missing headers: {', '.join(missing)}")
    if headers["ce_specversion"] != SPEC_VERSION:
        raise PoisonMessage("unsupported_specversion", f"ce_specversion {headers['ce_specversion']!r}")
    content_type = headers.get("content-type", CONTENT_TYPE).split(";")[0].strip()
    if content_type != CONTENT_TYPE:
        raise PoisonMessage(
            "unsupported_content_type", f"content-type {content_type!r}, expected {CONTENT_TYPE}"
        )
    model = event_model(headers["ce_type"])
    if model is None:
        raise PoisonMessage("unknown_event_type", f"ce_type {headers['ce_type']!r} is not a dealflow event")
    if value is None:
        raise PoisonMessage("empty_value", "the record has no value")
    if len(value) > max_bytes:
        raise PoisonMessage("oversized_payload", f"{len(value)} bytes exceeds the limit of {max_bytes}")
    event_id = headers["ce_id"]
    if len(event_id) > MAX_ID_CHARS or not event_id.isprintable():
        raise PoisonMessage("invalid_id", f"ce_id must be at most {MAX_ID_CHARS} printable characters")
    payload = _json(value)
    try:
        data = model.model_validate(payload)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, problem['loc'])) or '<root>'}: {problem['msg']}"[:300]
            for problem in error.errors()[:10]
        )
        raise PoisonMessage("schema_violation", problems) from error
    problem = storable_problem(data.model_dump(mode="json"))
    if problem is not None:
        raise PoisonMessage("unstorable_value", problem)
    return Envelope(
        id=event_id,
        source=headers["ce_source"],
        type=headers["ce_type"],
        time=_parse_time(headers.get("ce_time")),
        subject=headers.get("ce_subject"),
        data=data,
        trace=trace_headers(headers),
        digest=hashlib.sha256(headers["ce_type"].encode() + b"\n" + value).hexdigest()[:32],
    )


def _json(value: bytes) -> object:
    """The record's JSON, strictly: UTF-8 (RFC 8259 section 8.1), no NaN or Infinity, bounded nesting."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PoisonMessage("invalid_encoding", f"the value is not UTF-8: {error}") from error
    if text.startswith("\ufeff"):
        raise PoisonMessage("invalid_encoding", "the value starts with a byte order mark")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise PoisonMessage("too_deeply_nested", "the JSON nests deeper than the decoder allows") from None
    except ValueError as error:  # JSONDecodeError, and integers too long to convert
        raise PoisonMessage("invalid_json", str(error)[:300]) from error


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as error:
        raise PoisonMessage("invalid_time", f"ce_time {text!r} is not RFC 3339") from error
