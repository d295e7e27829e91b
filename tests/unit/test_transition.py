"""The pure core of the runtime, called directly: no broker, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from contracts import Event
from contracts.events import DeadlineReached, TouchLogged
from services.qualification.service import definition as qualification
from shared.envelope import decode, encode
from shared.runtime.dead_letters import Source, dead_letter_record
from shared.runtime.faults import PermanentFault
from shared.runtime.transition import PARKED_EXPIRY, Context, Inbound, Limits, Step, step
from shared.settings import Settings
from shared.store import Aggregate, ParkedRecord
from tests.unit.test_qualification import prospect

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SETTINGS = Settings()
DEFINITION = qualification()
LIMITS = Limits(
    max_parked=3,
    max_document_bytes=SETTINGS.max_document_bytes,
    max_record_bytes=SETTINGS.max_event_bytes,
    max_event_bytes=SETTINGS.max_event_bytes,
    parked_max_age=timedelta(days=7),
)


def context(clock: datetime = NOW, limits: Limits = LIMITS) -> Context:
    def dead_letter(**fields: object) -> object:
        return dead_letter_record(
            topic="dlq",
            service="qualification",
            now=clock,
            max_bytes=10**6,
            **fields,  # type: ignore[arg-type]
        )

    return Context(clock=clock, source="/test", topic=SETTINGS.topic, limits=limits, dead_letter=dead_letter)  # type: ignore[arg-type]


offsets = iter(range(10**6))


def inbound(event: Event, event_id: str, offset: int | None = None) -> Inbound:
    record = encode(event, topic=SETTINGS.topic(event.TOPIC), source="/test", event_id=event_id)
    envelope = decode(record.headers, record.value, max_bytes=SETTINGS.max_event_bytes)
    position = next(offsets) if offset is None else offset
    return Inbound(envelope, ParkedRecord(record.topic, 0, position, record.headers, record.value.decode()))


def applied(aggregate: Aggregate, event: Event, event_id: str, **options: object) -> Step:
    return step(DEFINITION, aggregate, inbound(event, event_id), context(**options))  # type: ignore[arg-type]


def touch(activity_id: str | None = None, deal_id: str = "d-1") -> TouchLogged:
    return TouchLogged(
        deal_id=deal_id, activity_id=activity_id, occurred_at=NOW, channel="call", outcome="no_answer"
    )


def opened() -> Aggregate:
    return applied(Aggregate(id="d-1"), prospect("A", NOW), "prospect-1").aggregate


def deadline(aggregate: Aggregate, deadline_id: str, due_at: datetime) -> DeadlineReached:
    return DeadlineReached(
        deal_id=aggregate.id, stage_service="qualification", deadline_id=deadline_id, due_at=due_at
    )


def test_a_replayed_record_and_a_resent_copy_change_nothing() -> None:
    first = inbound(touch(), "touch-1")
    after = step(DEFINITION, opened(), first, context()).aggregate
    assert step(DEFINITION, after, first, context()).outcome == "duplicate", "the same position again"
    resent = inbound(touch(), "touch-1")
    assert step(DEFINITION, after, resent, context()).outcome == "duplicate", "the same id and content"


def test_a_replay_is_recognised_however_many_events_the_deal_saw_since() -> None:
    aggregate = opened()
    old = inbound(touch(), "touch-0")
    aggregate = step(DEFINITION, aggregate, old, context()).aggregate
    for number in range(1, 600):
        aggregate = applied(aggregate, touch(), f"touch-{number}").aggregate
    assert not aggregate.has_applied("touch-0"), "past the window of remembered ids"
    assert step(DEFINITION, aggregate, old, context()).outcome == "duplicate", "its position is behind"


def test_the_same_id_with_other_content_is_a_conflict() -> None:
    aggregate = applied(opened(), touch(), "touch-1").aggregate
    other = touch(activity_id="something-else")
    with pytest.raises(PermanentFault) as refused:
        applied(aggregate, other, "touch-1")
    assert refused.value.code == "id_conflict"


def test_a_business_duplicate_under_a_fresh_id_is_absorbed() -> None:
    aggregate = applied(opened(), touch(activity_id="call-42"), "touch-1").aggregate
    again = applied(aggregate, touch(activity_id="call-42"), "touch-1-resent")
    assert again.outcome == "duplicate"
    assert again.aggregate is aggregate


def test_emitted_ids_differ_between_deals_whose_inputs_share_an_id() -> None:
    one = applied(Aggregate(id="d-1"), prospect("A", NOW), "same-id").aggregate
    other_prospect = prospect("A", NOW).model_copy(update={"deal_id": "d-2", "lead_id": "d-2"})
    two = applied(Aggregate(id="d-2"), other_prospect, "same-id").aggregate
    ids_one = {record.headers["ce_id"] for record in one.outbox}
    ids_two = {record.headers["ce_id"] for record in two.outbox}
    assert ids_one
    assert ids_two
    assert not ids_one & ids_two


def test_a_deadline_applies_only_when_pending_for_that_time_and_due_by_the_stage_clock() -> None:
    aggregate = opened()
    deadline_id, due_at = aggregate.deadlines[0]
    not_pending = applied(aggregate, deadline(aggregate, "no-such-deadline", due_at), "d1", clock=due_at)
    early = applied(
        aggregate, deadline(aggregate, deadline_id, due_at), "d2", clock=due_at - timedelta(seconds=1)
    )
    other_time = applied(
        aggregate, deadline(aggregate, deadline_id, due_at + timedelta(days=1)), "d3", clock=due_at
    )
    far_future = applied(aggregate, deadline(aggregate, deadline_id, datetime(2099, 1, 1, tzinfo=UTC)), "d4")
    for outcome in (not_pending, early, other_time, far_future):
        assert outcome.outcome == "unchanged"
        assert outcome.aggregate is aggregate, "nothing stored: the real announcement is not a copy"
    due = applied(aggregate, deadline(aggregate, deadline_id, due_at), "d5", clock=due_at)
    assert due.outcome == "applied"
    assert due.aggregate.outbox, "the deadline's consequence is emitted"
    assert deadline_id not in dict(due.aggregate.deadlines)


def test_parked_events_are_bounded_expire_as_dead_letters_and_a_redrive_is_applied_again() -> None:
    aggregate = Aggregate(id="d-1")
    for number in range(LIMITS.max_parked):
        aggregate = applied(aggregate, touch(), f"early-{number}").aggregate
    assert len(aggregate.parked) == LIMITS.max_parked
    with pytest.raises(PermanentFault) as refused:
        applied(aggregate, touch(), "one-too-many")
    assert refused.value.code == "too_many_parked"
    ((expiry_id, due_at),) = aggregate.deadlines
    assert expiry_id.startswith(f"{PARKED_EXPIRY}/")
    expired = applied(aggregate, deadline(aggregate, expiry_id, due_at), "expiry", clock=due_at)
    assert expired.outcome == "parked_expired"
    assert [record.headers["dlq_error_code"] for record in expired.aggregate.outbox] == [
        "deal_never_opened"
    ] * 3
    redriven = applied(expired.aggregate, touch(), "early-0")
    assert redriven.outcome == "parked", "the redriven event is taken again, not absorbed as a copy"


def test_an_output_over_the_record_limit_and_a_document_over_its_limit_are_refused() -> None:
    small_records = replace(LIMITS, max_record_bytes=200)
    with pytest.raises(PermanentFault) as refused:
        applied(Aggregate(id="d-1"), prospect("A", NOW), "p", limits=small_records)
    assert refused.value.code == "output_too_large"
    small_document = replace(LIMITS, max_document_bytes=300)
    with pytest.raises(PermanentFault) as refused:
        applied(Aggregate(id="d-1"), prospect("A", NOW), "p", limits=small_document)
    assert refused.value.code == "aggregate_too_large"


def test_a_dead_letter_always_fits_the_broker() -> None:
    record = dead_letter_record(
        topic="dlq",
        service="s",
        source=Source("t", 0, 1),
        key=b"k",
        value=b"x" * 5000,
        headers={f"h{number}": "\u00ff" * 10_000 for number in range(200)},
        code="c",
        detail="d" * 10_000,
        now=NOW,
        max_bytes=4096,
    )
    size = len(record.value) + sum(len(k) + len(v.encode()) for k, v in record.headers.items())
    assert size <= 4096, "headers bounded in number and length"
    assert record.value == b""
    assert record.headers["dlq_value_bytes"] == "5000"
