"""The pure step at the centre of every stage: an aggregate and one inbound event make a new aggregate
with its outbox, or leave it as it was. No I/O: tests call `step` directly, without brokers or databases.

What it guarantees, for every record:
- an event is applied once per aggregate: a replay (a position already consumed), a re-sent copy (an id
  already applied, same content) or a business duplicate (an `activity_id` already applied) changes
  nothing; the same id with other content is refused as `id_conflict`;
- a deadline applies only when it is pending in the state, for that due time, and due by the stage's
  clock; any other DeadlineReached changes nothing;
- an event for an aggregate that is not open yet is parked (up to a limit) and applied when it opens,
  unless the stage leaves it to another (`ignored_before_opening`): then it changes nothing;
  parked events of a deal that never opens are dead-lettered, and a redrive of them is applied again;
- a rule the event breaks is answered with an ActivityRejected (or the stage's own refusal);
- the handler gets the event's business time (see shared.domain.business_time), never the processing
  clock; an upstream event whose own time is implausible by that clock is refused, if the stage has
  rules for it; every emitted event's CloudEvents `time` is its business time (its own time field, else
  its cause's) and its `recordedtime` the processing clock;
- every emitted event has an id unique to (stage, aggregate, cause, index), and nothing it emits or
  stores breaks a size or storability limit: such an event is refused with the reason instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from contracts import Event
from contracts.events import ActivityRejected, DeadlineReached, Reason
from contracts.events import Inbound as UpstreamEvent
from shared.domain import Deadline, RuleBroken, business_time
from shared.envelope import Envelope, KafkaRecord, decode, derived_event_id, encode
from shared.runtime.dead_letters import Source
from shared.runtime.definition import StageDefinition
from shared.runtime.faults import PermanentFault
from shared.storable import storable_problem
from shared.store import Aggregate, ParkedRecord, document_bytes, estimated_document_bytes

PARKED_EXPIRY = "parked_expiry"
DEAL_NEVER_OPENED = "deal_never_opened"
# The CloudEvents recorded-time extension: when the event was made, where `ce_time` is when it happened.
RECORDED_TIME_HEADER = "ce_recordedtime"


@dataclass(frozen=True, slots=True)
class Inbound:
    """An inbound record this stage handles, decoded, and where it was read."""

    envelope: Envelope
    raw: ParkedRecord

    @property
    def source(self) -> Source:
        return Source(self.raw.topic, self.raw.partition, self.raw.offset)


@dataclass(frozen=True)
class Limits:
    max_parked: int
    max_document_bytes: int
    max_record_bytes: int
    max_event_bytes: int
    parked_max_age: timedelta


@dataclass(frozen=True)
class Context:
    """What a step may know beyond the aggregate and the event: time, names, limits and batch facts."""

    clock: datetime
    """The stage's clock, the processing time: it decides that a deadline is due and whether an upstream
    event's own time is plausible, and is carried as `ce_recordedtime`; no decision is dated by it."""
    source: str
    topic: Callable[[str], str]
    limits: Limits
    dead_letter: Callable[..., KafkaRecord]
    """Builds a dead-letter record (see dead_letters.dead_letter_record, with the stage's names bound)."""
    trace: dict[str, str] = field(default_factory=dict)
    gather: Callable[[Event, datetime], tuple[object, ...]] = lambda event, now: ()
    note: Callable[[Event, list[Event]], None] = lambda event, emitted: None


@dataclass(frozen=True)
class Step:
    """The outcome of one event: the aggregate after it, and what happened, for metrics and logs."""

    aggregate: Aggregate
    outcome: str  # applied | parked | duplicate | unchanged | parked_expired
    rejections: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.outcome in ("applied", "parked", "parked_expired")


def pending_deadlines(
    definition: StageDefinition, state: BaseModel | None
) -> tuple[tuple[str, datetime], ...]:
    if state is None or definition.deadlines is None:
        return ()
    return tuple(sorted((deadline.id, deadline.due_at) for deadline in definition.deadlines(state)))


def step(definition: StageDefinition, aggregate: Aggregate, inbound: Inbound, context: Context) -> Step:
    envelope = inbound.envelope
    if aggregate.consumed(*inbound.raw.position):
        return Step(aggregate, "duplicate")
    digest = aggregate.applied_digest(envelope.id)
    if digest is not None:
        if digest and digest != envelope.digest:
            raise PermanentFault("id_conflict", f"event {envelope.id} was applied before with other content")
        return Step(aggregate, "duplicate")
    activity_id = getattr(envelope.data, "activity_id", None)
    if activity_id is not None and activity_id in aggregate.activities:
        return Step(aggregate, "duplicate")
    if isinstance(envelope.data, DeadlineReached):
        due = _due(aggregate, envelope.data, context.clock)
        if due is None:
            # Left unconsumed: announced again once due (or after a replay applied the deal's events in
            # another order), it must not be absorbed as a copy of this one.
            return Step(aggregate, "unchanged")
        if due.kind == PARKED_EXPIRY:
            return _expire_parked(definition, aggregate, inbound, context)
    state_model = definition.state_model
    state = None if aggregate.state is None else state_model.model_validate(aggregate.state)
    if state is None and type(envelope.data) not in definition.opening_events:
        if type(envelope.data) in definition.ignored_before_opening:
            return Step(aggregate, "unchanged")  # another stage's to answer: nothing to keep here
        return _park(definition, aggregate, inbound, context)
    rejections: list[str] = []
    state, events = _apply(definition, state, envelope, context, rejections)
    if aggregate.state is None and state is not None:
        for parked in aggregate.parked:
            parked_envelope = decode(
                parked.headers, parked.value.encode(), max_bytes=context.limits.max_event_bytes
            )
            state, more = _apply(definition, state, parked_envelope, context, rejections)
            events.extend(more)
    state_document = None if state is None else state.model_dump(mode="json")
    problem = None if state_document is None else storable_problem(state_document)
    if problem is not None:
        raise PermanentFault("unstorable_state", f"the new state cannot be stored: {problem}")
    version = aggregate.version + 1
    outbox = tuple(
        encode(
            event,
            topic=context.topic(event.TOPIC),
            source=context.source,
            event_id=derived_event_id(f"{definition.name}/{aggregate.id}/{envelope.id}", index),
            time=business_time(event, cause_time, cause_time),
            # CloudEvents' sequence extension: orders a deal's events from this stage, gaps show loss.
            extra_headers={
                "ce_sequence": f"{version:010d}.{index:04d}",
                RECORDED_TIME_HEADER: context.clock.isoformat(),
                **context.trace,
            },
        )
        for index, (event, cause_time) in enumerate(events)
    )
    for record in outbox:
        size = len(record.key) + len(record.value) + sum(len(k) + len(v) for k, v in record.headers.items())
        if size > context.limits.max_record_bytes:
            raise PermanentFault(
                "output_too_large",
                f"it would emit a {record.headers['ce_type']} of {size} bytes, "
                f"over the limit of {context.limits.max_record_bytes}",
            )
    changed = aggregate.changed(
        applied=(envelope.id, envelope.digest),
        state=state_document,
        parked=(),
        outbox=outbox,
        deadlines=pending_deadlines(definition, state),
        trace=aggregate.trace or context.trace,
        activity_id=activity_id,
        position=inbound.raw.position,
    )
    return Step(_within_document_limit(changed, context), "applied", tuple(rejections))


def _due(aggregate: Aggregate, reached: DeadlineReached, clock: datetime) -> Deadline | None:
    """The deadline this announcement names, if it is pending for that due time and due by the clock."""
    pending = dict(aggregate.deadlines)
    due_at = pending.get(reached.deadline_id)
    if due_at is None or due_at > clock or reached.due_at != due_at:
        return None
    try:
        return Deadline.parse(reached.deadline_id)
    except ValueError:  # an id made before deadlines were typed: still pending, so still due
        return Deadline("legacy", reached.deadline_id, due_at)


def _apply(
    definition: StageDefinition,
    state: BaseModel | None,
    envelope: Envelope,
    context: Context,
    rejections: list[str],
) -> tuple[Any, list[tuple[Event, datetime]]]:
    """The handler's decision on one event, each emitted event with the business time of its cause."""
    event = envelope.data
    now = business_time(event, envelope.time, context.clock)
    rules = definition.business_time
    try:
        if rules is not None and isinstance(event, UpstreamEvent):
            rules.check(now, context.clock, event.BUSINESS_TIME if event.own_time is not None else None)
    except RuleBroken as rule:  # an implausible time dates nothing, not even its refusal
        return state, [(_refusal(definition, envelope, rule, rejections), context.clock)]
    try:
        decision = definition.handlers[type(event)](state, event, now, *context.gather(event, now))
    except RuleBroken as rule:
        return state, [(_refusal(definition, envelope, rule, rejections), now)]
    context.note(event, list(decision.events))
    return decision.state, [(emitted, now) for emitted in decision.events]


def _refusal(
    definition: StageDefinition, envelope: Envelope, rule: RuleBroken, rejections: list[str]
) -> Event:
    rejections.append(rule.code)
    reason = Reason(code=rule.code, field=rule.field, message=rule.message)
    if definition.refusal is not None:
        return definition.refusal(envelope.data, reason)
    return ActivityRejected(
        deal_id=envelope.data.partition_key,
        activity_type=envelope.type,
        activity_event_id=envelope.id,
        stage_service=definition.name,
        reason=reason,
    )


def _park(definition: StageDefinition, aggregate: Aggregate, inbound: Inbound, context: Context) -> Step:
    if len(aggregate.parked) >= context.limits.max_parked:
        raise PermanentFault(
            "too_many_parked",
            f"{len(aggregate.parked)} events already wait for this deal to open (the limit)",
        )
    expiry = aggregate.deadlines
    if not expiry and definition.keeps_time and DeadlineReached in definition.handlers:
        # Its key names the first parked event: a deal that parks events again after an expiry gets a
        # new deadline, whose announcement is not absorbed as a copy of the first one's.
        due = Deadline(PARKED_EXPIRY, inbound.envelope.id, context.clock + context.limits.parked_max_age)
        expiry = ((due.id, due.due_at),)
    parked = aggregate.changed(
        applied=(inbound.envelope.id, inbound.envelope.digest),
        state=None,
        parked=(*aggregate.parked, inbound.raw),
        outbox=(),
        deadlines=expiry,
        activity_id=getattr(inbound.envelope.data, "activity_id", None),
        position=inbound.raw.position,
    )
    return Step(_within_document_limit(parked, context), "parked")


def _expire_parked(
    definition: StageDefinition, aggregate: Aggregate, inbound: Inbound, context: Context
) -> Step:
    """Dead-letter the events still waiting for a deal that never opened: each gets its answer.

    The dead letters go out through the outbox, with the state write, so a crash repeats neither less
    nor more than the write. Their ids are forgotten, so a redrive of one of them is applied again.
    """
    opening = " or ".join(sorted(model.TYPE for model in definition.opening_events))
    detail = f"no {opening} for this deal within {context.limits.parked_max_age.total_seconds():.0f}s"
    dead_letters = tuple(
        context.dead_letter(
            source=Source(parked.topic, parked.partition, parked.offset),
            key=aggregate.id.encode(),
            value=parked.value.encode(),
            headers=parked.headers,
            code=DEAL_NEVER_OPENED,
            detail=detail,
        )
        for parked in aggregate.parked
    )
    forgotten = aggregate.forgetting({parked.headers.get("ce_id", "") for parked in aggregate.parked})
    expired = forgotten.changed(
        applied=(inbound.envelope.id, inbound.envelope.digest),
        state=aggregate.state,
        parked=(),
        outbox=dead_letters,
        deadlines=(),
        position=inbound.raw.position,
    )
    # A redriven parked event comes back at a new offset, past the watermark: it is applied again.
    return Step(expired, "parked_expired")


def _within_document_limit(aggregate: Aggregate, context: Context) -> Aggregate:
    limit = context.limits.max_document_bytes
    if 3 * estimated_document_bytes(aggregate) < limit:
        return aggregate  # the exact size costs a full encoding: only near the limit is it worth it
    size = document_bytes(aggregate)
    if size > context.limits.max_document_bytes:
        raise PermanentFault(
            "aggregate_too_large",
            f"the deal's document would be {size} bytes, over the limit of "
            f"{context.limits.max_document_bytes}",
        )
    return aggregate
