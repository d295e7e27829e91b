"""Dead-letter records: the original record with why and where from, always small enough to publish."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from shared.envelope import KafkaRecord

DETAIL_CHARS = 2000
HEADER_VALUE_CHARS = 4096
HEADERS_KEPT = 64


@dataclass(frozen=True, slots=True)
class Source:
    topic: str
    partition: int
    offset: int


def readable_headers(raw: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    """A record's headers as text; a value that is not UTF-8 is kept as hex under a marked name."""
    headers: dict[str, str] = {}
    for name, value in raw:
        try:
            headers[name] = (value or b"").decode()
        except UnicodeDecodeError:
            headers[f"dlq_undecodable_header_{name}"] = (value or b"").hex()
    return headers


def dead_letter_record(
    *,
    topic: str,
    service: str,
    source: Source,
    key: bytes,
    value: bytes,
    headers: Mapping[str, str],
    code: str,
    detail: str,
    now: datetime,
    max_bytes: int,
) -> KafkaRecord:
    """The original record, bytes unchanged, with the reason and where it came from in its headers.

    Whatever a sender put in headers and value, the dead letter fits in `max_bytes`: headers are cut to
    a bounded number and length, and a value too large to keep is replaced by its digest, so the dead
    letter itself can never be the record the broker refuses.
    """
    kept: dict[str, str] = {}
    budget = max_bytes // 2
    for name, text in headers.items():
        if name.startswith("dlq_") and not name.startswith("dlq_undecodable_header_"):
            continue  # a redriven record's old reasons make way for the new ones
        name, text = name[:256], text[:HEADER_VALUE_CHARS]
        budget -= len(name.encode()) + len(text.encode())
        if budget < 0 or len(kept) == HEADERS_KEPT:
            break
        kept[name] = text
    reason = {
        "dlq_error_code": code,
        "dlq_error": detail[:DETAIL_CHARS],
        "dlq_source_topic": source.topic,
        "dlq_source_partition": str(source.partition),
        "dlq_source_offset": str(source.offset),
        "dlq_service": service,
        "dlq_time": now.isoformat(),
    }
    header_bytes = sum(len(name.encode()) + len(text.encode()) for name, text in (kept | reason).items())
    if header_bytes + len(key) + len(value) > max_bytes:
        reason["dlq_value_sha256"] = hashlib.sha256(value).hexdigest()
        reason["dlq_value_bytes"] = str(len(value))
        key, value = key[:256], b""
    return KafkaRecord(topic=topic, key=key, value=value, headers={**kept, **reason})
