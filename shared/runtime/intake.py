"""Turning a consumed record into an inbound event, or saying exactly why it can never be one.

Whatever a record holds, `accept` ends in one of three answers: an Inbound to apply, None (another
stage's event, or a deadline of another stage), or PoisonMessage with a reason code. Nothing it meets
escapes as another exception.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import ConsumerRecord

from contracts import event_model
from contracts.events import DeadlineReached
from shared.envelope import PoisonMessage, decode, decode_headers
from shared.kafka import partition_of
from shared.runtime.definition import StageDefinition
from shared.runtime.transition import Inbound
from shared.store import ParkedRecord


def accept(
    record: ConsumerRecord[bytes, bytes],
    definition: StageDefinition,
    *,
    max_event_bytes: int,
    partitions: Callable[[str], int | None],
) -> Inbound | None:
    """The record decoded; None when it is another stage's; raises PoisonMessage for bad input.

    The key contract: a record's key is its event's partition key, and the record sits in the partition
    Kafka's default partitioner (murmur2) gives that key. Otherwise two consumers would write one deal,
    so such a record is refused (`key_mismatch`, `wrong_partition`).
    """
    try:
        return _accept(record, definition, max_event_bytes=max_event_bytes, partitions=partitions)
    except PoisonMessage:
        raise
    except Exception as surprise:  # the decoder met something nobody foresaw: it is the record's fault
        raise PoisonMessage("undecodable", f"{type(surprise).__name__}: {surprise}"[:500]) from surprise


def _accept(
    record: ConsumerRecord[bytes, bytes],
    definition: StageDefinition,
    *,
    max_event_bytes: int,
    partitions: Callable[[str], int | None],
) -> Inbound | None:
    headers = decode_headers(record.headers)
    model = event_model(headers.get("ce_type") or "")
    if model is not None and model not in definition.handlers:
        return None
    envelope = decode(headers, record.value, max_bytes=max_event_bytes)
    if isinstance(envelope.data, DeadlineReached) and envelope.data.stage_service != definition.name:
        return None
    partition_key = envelope.data.partition_key
    if record.key != partition_key.encode():
        shown = "no key" if record.key is None else f"key {record.key[:80]!r}"
        raise PoisonMessage("key_mismatch", f"{shown}, but the event's partition key is {partition_key!r}")
    count = partitions(record.topic)
    if count is not None and record.partition != (expected := partition_of(partition_key, count)):
        raise PoisonMessage(
            "wrong_partition",
            f"partition {record.partition}, but murmur2 puts key {partition_key!r} in partition {expected} "
            "(produce with Kafka's default partitioner; see README, Delivery guarantees)",
        )
    raw = ParkedRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        headers=headers,
        value=(record.value or b"").decode(),
    )
    return Inbound(envelope, raw)
