"""Aggregates with their outbox, applied-event ids and parked events, each in one MongoDB document.

One document per deal (or lead) holds its state, the ids of the events already applied to it, events
that arrived before the aggregate existed, and the events its last change caused. Every change is one
conditional single-document write (MongoDB and FerretDB both make that atomic), so the state and the
events it causes are stored together or not at all. A batch's changes go to the server in a few bulk
commands; nothing is written per event after that: whether a stored outbox was published is told by its
ticket and the partition's checkpoint (see shared.runtime.outbox), and the aggregate's next write
replaces it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import chain
from typing import Any

import bson
from pymongo import ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from shared.envelope import KafkaRecord
from shared.mongo import Document
from shared.privacy import emails_in, emails_in_json, subject_key

# Re-sent copies of a deal's recent events (same id, new offset) are recognised by id; replays of what a
# deal already consumed are recognised by offset (`watermarks`), however old.
APPLIED_IDS_KEPT = 500


DUPLICATE_KEY = 11000
OUTBOX_CHECKPOINTS = "outbox_checkpoints"

# FerretDB 1.24 keeps every statement of a multi-statement write open until the command ends, so a bulk
# command of 100 replaces or more exhausts its connection pool and hangs; 25 to 50 work, and beat
# concurrent single writes by about 1.4x.
REPLACES_PER_COMMAND = 40


class ConcurrentWrite(Exception):
    """Another writer changed the aggregate since it was read; reading it again and retrying is safe."""


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """An inbound event kept until the aggregate it belongs to is opened."""

    topic: str
    partition: int
    offset: int
    headers: dict[str, str]
    value: str

    @property
    def position(self) -> tuple[str, int, int]:
        return self.topic, self.partition, self.offset

    def to_document(self) -> Document:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "headers": _headers_to_pairs(self.headers),
            "value": self.value,
        }

    @classmethod
    def from_document(cls, document: Document) -> ParkedRecord:
        return cls(
            topic=document["topic"],
            partition=document["partition"],
            offset=document["offset"],
            headers=_headers_from_pairs(document["headers"]),
            value=document["value"],
        )


@dataclass(frozen=True, slots=True)
class Aggregate:
    id: str
    version: int = 0
    state: dict[str, Any] | None = None
    applied: tuple[tuple[str, str], ...] = ()  # (event id, digest of its content), the most recent ones
    activities: tuple[str, ...] = ()  # the business ids (activity_id) of the activities applied
    watermarks: tuple[tuple[str, int, int], ...] = ()  # (topic, partition, highest offset consumed)
    partition: int | None = None  # the input partition its events come from
    parked: tuple[ParkedRecord, ...] = ()
    outbox: tuple[KafkaRecord, ...] = ()
    deadlines: tuple[tuple[str, datetime], ...] = ()  # (deadline id, when it is due), from the state
    trace: dict[str, str] = field(default_factory=dict)  # the deal's trace context, from its first event
    # Which write stored the outbox (shared.runtime.outbox); None: unpublished until marked sent.
    outbox_ticket: int | None = None

    @property
    def is_stored(self) -> bool:
        return self.version > 0

    def applied_digest(self, event_id: str) -> str | None:
        """The digest of the applied event with this id ('' when stored before digests were), or None."""
        return next((digest for applied, digest in self.applied if applied == event_id), None)

    def has_applied(self, event_id: str) -> bool:
        return self.applied_digest(event_id) is not None

    def consumed(self, topic: str, partition: int, offset: int) -> bool:
        """Whether the record at this position was consumed already: a replay of the topic."""
        return any(t == topic and p == partition and offset <= o for t, p, o in self.watermarks)

    def changed(
        self,
        *,
        applied: tuple[str, str],
        state: dict[str, Any] | None,
        parked: tuple[ParkedRecord, ...],
        outbox: tuple[KafkaRecord, ...],
        deadlines: tuple[tuple[str, datetime], ...] = (),
        trace: dict[str, str] | None = None,
        activity_id: str | None = None,
        position: tuple[str, int, int] | None = None,
    ) -> Aggregate:
        watermarks = self.watermarks
        if position is not None:
            topic, partition, _ = position
            watermarks = (*(w for w in watermarks if (w[0], w[1]) != (topic, partition)), position)
        return replace(
            self,
            version=self.version + 1,
            state=state,
            applied=(*self.applied, applied)[-APPLIED_IDS_KEPT:],
            activities=self.activities
            if activity_id is None
            else (*self.activities, activity_id)[-APPLIED_IDS_KEPT:],
            watermarks=watermarks,
            partition=self.partition if position is None else position[1],
            parked=parked,
            outbox=outbox,
            deadlines=deadlines,
            trace=self.trace if trace is None else trace,
        )

    def forgetting(self, event_ids: set[str]) -> Aggregate:
        """The aggregate no longer remembering these events: a redrive of them is applied again."""
        return replace(self, applied=tuple(item for item in self.applied if item[0] not in event_ids))


@dataclass
class AggregateStore:
    """Loads and saves aggregates; each save is one single-document write.

    Every write is conditional on the version that was read, so on MongoDB a writer that lost its
    partition cannot overwrite a newer state. FerretDB checks the condition as a read then a write, not
    atomically between writers; there the single-writer rule carries the guarantee: only the consumer
    that owns a deal's partition writes that deal.
    """

    collection: AsyncCollection[Document]
    _ready: bool = field(default=False, init=False)

    async def prepare(self) -> None:
        if not self._ready:
            await self.collection.create_index("has_outbox")
            await self.collection.create_index("subjects")
            await self.collection.create_index("partition")
            # the recovery read: outboxes of a partition after its checkpoint (real MongoDB uses it)
            await self.collection.create_index([("partition", 1), ("outbox_ticket", 1)])
            self._ready = True

    async def load(self, aggregate_id: str) -> Aggregate:
        document = await self.collection.find_one({"_id": aggregate_id})
        return Aggregate(id=aggregate_id) if document is None else _from_document(document)

    async def load_many(self, aggregate_ids: Sequence[str]) -> list[Aggregate]:
        """The aggregates with these ids, new ones for ids not stored, in one read."""
        if not aggregate_ids:
            return []
        found = {
            document["_id"]: _from_document(document)
            async for document in self.collection.find({"_id": {"$in": list(aggregate_ids)}})
        }
        return [found.get(aggregate_id) or Aggregate(id=aggregate_id) for aggregate_id in aggregate_ids]

    async def save_all(self, changes: Sequence[tuple[Aggregate, Aggregate]]) -> None:
        """Save many aggregates; raise ConcurrentWrite if any of them was stale.

        New aggregates go in one insert; changed ones are replaced in bulk commands of at most
        REPLACES_PER_COMMAND, each replace conditional on the version that was read.
        """
        new = [_to_document(current) for previous, current in changes if not previous.is_stored]
        replaced = [
            ReplaceOne({"_id": previous.id, "version": previous.version}, _to_document(current))
            for previous, current in changes
            if previous.is_stored
        ]
        if new:
            try:
                await self.collection.insert_many(new, ordered=False)
            except BulkWriteError as error:
                errors = error.details.get("writeErrors", [])
                if errors and all(item.get("code") == DUPLICATE_KEY for item in errors):
                    raise ConcurrentWrite(str(errors[:1])) from error
                raise
        matched = 0
        # One command at a time: concurrent bulk commands hang FerretDB 1.24 just as one large one does.
        for start in range(0, len(replaced), REPLACES_PER_COMMAND):
            chunk = replaced[start : start + REPLACES_PER_COMMAND]
            matched += (await self.collection.bulk_write(chunk, ordered=False)).matched_count
        stale = len(replaced) - matched
        if stale:
            raise ConcurrentWrite(f"{stale} of {len(replaced)} aggregates changed meanwhile")

    async def mark_sent(self, aggregate: Aggregate) -> None:
        """Only for an outbox stored without a ticket (by a crash of an earlier version, or by hand)."""
        # Conditional on the version: if a newer write happened meanwhile, its own outbox stays pending.
        await self.collection.update_one(
            {"_id": aggregate.id, "version": aggregate.version},
            {"$set": {"outbox": [], "has_outbox": False}},
        )

    async def with_subject(self, key: str) -> AsyncIterator[Aggregate]:
        """The aggregates holding personal data of the person with this subject key."""
        async for document in self.collection.find({"subjects": key}):
            yield _from_document(document)

    async def in_partitions(
        self, partitions: Sequence[int], published_through: Mapping[int, int]
    ) -> AsyncIterator[PartitionEntry]:
        """What recovery needs of the aggregates of these input partitions that have deadlines, or an
        outbox stored after their partition's checkpoint (`published_through`; none: every outbox).

        Read once when partitions are assigned, never on the way of an event or a tick. An outbox at or
        before its checkpoint was published, so the read leaves it out: what it returns grows with the
        pending deadlines and the unpublished outboxes, not with the collection.
        """
        chosen = list(partitions)
        since_checkpoint: list[dict[str, object]] = [
            {
                "partition": partition,
                "has_outbox": True,
                "outbox_ticket": {"$gt": published_through[partition]},
            }
            for partition in chosen
            if partition in published_through
        ]
        unchecked = [partition for partition in chosen if partition not in published_through]
        query = {
            "$or": [
                {"partition": {"$in": chosen}, "next_due_at": {"$exists": True}},
                *since_checkpoint,
                {"partition": {"$in": unchecked}, "has_outbox": True},
                # written before outbox tickets: published or not, only its outbox can tell
                {"partition": {"$in": chosen}, "has_outbox": True, "outbox_ticket": {"$exists": False}},
            ]
        }
        projection = {"partition": 1, "deadlines": 1, "outbox_ticket": 1, "has_outbox": 1}
        async for document in self.collection.find(query, projection):
            yield PartitionEntry(
                id=document["_id"],
                partition=document["partition"],
                deadlines=tuple((item["id"], item["due_at"]) for item in document.get("deadlines", ())),
                has_outbox=bool(document.get("has_outbox")),
                outbox_ticket=document.get("outbox_ticket"),
            )


@dataclass(frozen=True, slots=True)
class PartitionEntry:
    id: str
    partition: int
    deadlines: tuple[tuple[str, datetime], ...]
    has_outbox: bool
    outbox_ticket: int | None


@dataclass
class OutboxCheckpoints:
    """Per input partition, the ticket up to which every stored outbox was published."""

    collection: AsyncCollection[Document]

    async def read(self, partitions: Sequence[int]) -> dict[int, int]:
        query = {"_id": {"$in": list(partitions)}}
        found = self.collection.find(query)
        return {document["_id"]: document["published_through"] async for document in found}

    async def write(self, published_through: dict[int, int]) -> None:
        if published_through:
            await self.collection.bulk_write(
                [
                    UpdateOne({"_id": partition}, {"$max": {"published_through": ticket}}, upsert=True)
                    for partition, ticket in sorted(published_through.items())
                ],
                ordered=False,
            )


def document_bytes(aggregate: Aggregate) -> int:
    return len(bson.encode(_to_document(aggregate)))


def estimated_document_bytes(aggregate: Aggregate) -> int:
    """`document_bytes` without encoding all of it, less what the hashed subject keys add (at most twice
    the emails they hash, which the state, parked and outbox bytes count once)."""
    return (
        1024
        + len(bson.encode({"state": aggregate.state}))
        + sum(
            len(record.key) + len(record.value) + _headers_bytes(record.headers)
            for record in aggregate.outbox
        )
        + sum(len(parked.value) + _headers_bytes(parked.headers) + 128 for parked in aggregate.parked)
        + sum(64 + len(event_id) for event_id, _ in aggregate.applied)
        + sum(32 + len(activity) for activity in aggregate.activities)
        + sum(64 + len(topic) for topic, _, _ in aggregate.watermarks)
        + sum(64 + len(deadline_id) for deadline_id, _ in aggregate.deadlines)
        + sum(len(name) + len(value) for name, value in aggregate.trace.items())
    )


def _headers_bytes(headers: dict[str, str]) -> int:
    return sum(32 + len(name) + len(value.encode()) for name, value in headers.items())


def _to_document(aggregate: Aggregate) -> Document:
    return {
        "_id": aggregate.id,
        "version": aggregate.version,
        "state": aggregate.state,
        "applied": [{"id": event_id, "digest": digest} for event_id, digest in aggregate.applied],
        "activities": list(aggregate.activities),
        "watermarks": [{"topic": t, "partition": p, "offset": o} for t, p, o in aggregate.watermarks],
        "partition": aggregate.partition,
        "parked": [parked.to_document() for parked in aggregate.parked],
        "outbox": [_record_to_document(record) for record in aggregate.outbox],
        "has_outbox": bool(aggregate.outbox),
        **({} if aggregate.outbox_ticket is None else {"outbox_ticket": aggregate.outbox_ticket}),
        "deadlines": [{"id": deadline_id, "due_at": due_at} for deadline_id, due_at in aggregate.deadlines],
        "trace": aggregate.trace,
        # Whose personal data this holds, hashed, so an erasure request finds it without a scan: in its
        # state, in events waiting for it to open, and in events waiting to be published.
        "subjects": sorted(
            {
                subject_key(email)
                for email in chain(
                    emails_in(aggregate.state),
                    *(emails_in_json(parked.value.encode()) for parked in aggregate.parked),
                    *(emails_in_json(record.value) for record in aggregate.outbox),
                )
            }
        ),
        # Only the earliest matters for finding due work; absent when nothing is scheduled.
        **({"next_due_at": min(due for _, due in aggregate.deadlines)} if aggregate.deadlines else {}),
    }


def _from_document(document: Document) -> Aggregate:
    return Aggregate(
        id=document["_id"],
        version=document["version"],
        state=document.get("state"),
        applied=tuple(
            (item, "") if isinstance(item, str) else (item["id"], item["digest"])
            for item in document.get("applied", ())
        ),
        activities=tuple(document.get("activities", ())),
        watermarks=tuple((w["topic"], w["partition"], w["offset"]) for w in document.get("watermarks", ())),
        partition=document.get("partition"),
        parked=tuple(ParkedRecord.from_document(parked) for parked in document.get("parked", ())),
        outbox=tuple(_record_from_document(record) for record in document.get("outbox", ())),
        deadlines=tuple((deadline["id"], deadline["due_at"]) for deadline in document.get("deadlines", ())),
        trace=document.get("trace") or {},
        outbox_ticket=document.get("outbox_ticket"),
    )


def _record_to_document(record: KafkaRecord) -> Document:
    return {
        "topic": record.topic,
        "key": record.key.decode(),
        "value": record.value.decode(),
        "headers": _headers_to_pairs(record.headers),
    }


def _record_from_document(document: Document) -> KafkaRecord:
    return KafkaRecord(
        topic=document["topic"],
        key=document["key"].encode(),
        value=document["value"].encode(),
        headers=_headers_from_pairs(document["headers"]),
    )


# Header names are free text, but document keys may not contain dots or start with a dollar sign (and
# FerretDB stores no nested arrays), so headers are stored as a list of name-value documents.
def _headers_to_pairs(headers: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in headers.items()]


def _headers_from_pairs(pairs: list[dict[str, str]]) -> dict[str, str]:
    return {pair["name"]: pair["value"] for pair in pairs}
