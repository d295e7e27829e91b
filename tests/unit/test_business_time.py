"""Business time everywhere: decisions and emitted times come from what caused them, never from when the
services processed it; the processing clock decides only what is due and what is plausible.

A small pure pipeline runs the five stages' definitions through `step`, routing each emitted record to
the stages that read its topic, without brokers or databases: the demo's story and the workload's
scripted deals go through it, and the insights report must show the days in stage their dates imply.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from cli.demo import STORY_ENDS_BEFORE_NOW, demo_records, story_shift
from cli.kafka_io import CLI_SOURCE, records_for
from cli.workload import STEPS, scripted_deals
from contracts import Event
from contracts.events import (
    Activity,
    Company,
    Contact,
    DeadlineReached,
    DealWon,
    DemoHeld,
    LeadCaptured,
    LeadQualified,
    Money,
    Needs,
    ProposalSent,
    TouchLogged,
)
from services.insights import domain as insights
from services.insights.config import load_playbook as insights_playbook
from services.insights.service import definition as insights_definition
from services.onboarding.service import definition as onboarding
from services.proposal.service import definition as proposal
from services.prospecting.domain import KnownLeads
from services.prospecting.service import definition as prospecting
from services.qualification.service import definition as qualification
from shared.envelope import KafkaRecord, PoisonMessage, decode, encode
from shared.runtime.dead_letters import dead_letter_record
from shared.runtime.definition import StageDefinition
from shared.runtime.transition import RECORDED_TIME_HEADER, Context, Inbound, Limits, step
from shared.settings import Settings
from shared.store import Aggregate, ParkedRecord
from tests.unit.test_qualification import prospect

SETTINGS = Settings()
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
LIMITS = Limits(
    max_parked=100,
    max_document_bytes=SETTINGS.max_document_bytes,
    max_record_bytes=SETTINGS.max_event_bytes,
    max_event_bytes=SETTINGS.max_event_bytes,
    parked_max_age=timedelta(days=7),
)
DEFINITIONS = [prospecting(), qualification(), proposal(), onboarding(), insights_definition()]


def context(definition: StageDefinition, clock: datetime) -> Context:
    def dead_letter(**fields: Any) -> KafkaRecord:
        return dead_letter_record(topic="dlq", service=definition.name, now=clock, max_bytes=10**6, **fields)

    return Context(
        clock=clock,
        source=f"/dealflow/{definition.name}",
        topic=SETTINGS.topic,
        limits=LIMITS,
        dead_letter=dead_letter,
        # Prospecting's facts: no earlier prospect to merge with, no rep busier than another.
        gather=(lambda event, now: (KnownLeads(),)) if definition.facts is not None else (lambda e, n: ()),
    )


@dataclass
class Pipeline:
    """Every stage, in memory: each record goes to the stages reading its topic, in publication order."""

    clock: datetime
    aggregates: dict[tuple[str, str], Aggregate] = field(default_factory=dict)
    published: list[KafkaRecord] = field(default_factory=list)
    offsets: Iterator[int] = field(default_factory=count)

    def run(self, records: Iterable[KafkaRecord]) -> Pipeline:
        queue = deque(records)
        while queue:
            record = queue.popleft()
            self.published.append(record)
            for definition in DEFINITIONS:
                if record.topic not in {SETTINGS.topic(topic) for topic in definition.input_topics}:
                    continue
                try:
                    envelope = decode(record.headers, record.value, max_bytes=SETTINGS.max_event_bytes)
                except PoisonMessage:
                    continue  # the demo's malformed lead: dead-lettered by the real service
                if type(envelope.data) not in definition.handlers:
                    continue
                key = (definition.name, envelope.data.partition_key)
                aggregate = self.aggregates.get(key, Aggregate(id=key[1]))
                raw = ParkedRecord(record.topic, 0, next(self.offsets), record.headers, record.value.decode())
                outcome = step(definition, aggregate, Inbound(envelope, raw), context(definition, self.clock))
                queue.extend(outcome.aggregate.outbox)
                self.aggregates[key] = replace(outcome.aggregate, outbox=())
        return self

    def timelines(self) -> dict[str, insights.Timeline]:
        return {
            deal_id: insights.Timeline.model_validate(aggregate.state)
            for (stage, deal_id), aggregate in self.aggregates.items()
            if stage == "insights" and aggregate.state is not None
        }

    def emitted(self, event_type: str) -> list[KafkaRecord]:
        return [
            record
            for record in self.published
            if record.headers["ce_type"] == f"io.dealflow.{event_type}"
            and record.headers["ce_source"] != CLI_SOURCE
        ]

    def pending_deadlines(self) -> list[tuple[str, str, datetime]]:
        return [
            (stage, deal_id, due_at)
            for (stage, deal_id), aggregate in self.aggregates.items()
            for _, due_at in aggregate.deadlines
        ]


def days_in_stages(timeline: insights.Timeline) -> list[tuple[str, float | None]]:
    return [
        (stay.stage, None if stay.left_at is None else insights.days_between(stay.entered_at, stay.left_at))
        for stay in insights.stays(timeline)
    ]


def sent(*events: Event) -> list[KafkaRecord]:
    return records_for(SETTINGS, ((event, None) for event in events))


def published(event: Event, at: datetime, source: str = "/dealflow/prospecting") -> KafkaRecord:
    """A record whose CloudEvents time is `at`: the business time of an event without a time field."""
    return encode(event, topic=SETTINGS.topic(event.TOPIC), source=source, time=at)


# --- the demo: its report shows the days its activities' dates imply ---------------------------------

# Days between the story's dates (deploy/demo): acme captured 14 Sep, discovery call 21 Sep, demo 30
# Sep, proposal sent 9 Oct, accepted 20 Oct, paid 26 Oct, live 30 Nov; globex 12 Oct, 22 Oct, 28 Oct,
# 4 Nov, 17 Nov, paid 24 Nov; initech 20 Oct, 24 Oct, 5 Nov, 11 Nov, 23 Nov, paid 29 Nov; umbrella 26 Oct,
# 2 Nov, 9 Nov, 13 Nov, lost 20 Nov; hooli 10 Nov, disqualified 16 Nov. None is open.
WON_PATH = ("qualification", "presentation", "proposal", "negotiation", "closing", "won")
DEMO_DAYS = {
    "lead-acme-001": [
        *zip(WON_PATH, (7.0, 9.0, 9.0, 11.0, 6.0, 0.0), strict=True),
        ("onboarding", 35.0),
        ("live", None),
    ],
    "lead-globex-002": [*zip(WON_PATH, (10.0, 6.0, 7.0, 13.0, 7.0, 0.0), strict=True), ("onboarding", None)],
    "lead-initech-003": [*zip(WON_PATH, (4.0, 12.0, 6.0, 12.0, 6.0, 0.0), strict=True), ("onboarding", None)],
    "lead-umbrella-004": [
        *zip(WON_PATH[:4], (7.0, 7.0, 4.0, 7.0), strict=True),
        ("lost", None),
    ],
    "lead-hooli-005": [("qualification", 6.0), ("disqualified", None)],
    "lead-acme-001-x1": [("qualification", None)],  # the expansion deal acme's go-live opened
}
# Stays that ended, all periods: (stays, median, p90) of the days above.
DEMO_TIME_IN_STAGE = {
    "qualification": (5, 7.0, 10.0),
    "nurture": (0, None, None),
    "presentation": (4, 8.0, 12.0),
    "proposal": (4, 6.5, 9.0),
    "negotiation": (4, 11.5, 13.0),
    "closing": (3, 6.0, 7.0),
    "onboarding": (1, 35.0, 35.0),
}


@pytest.fixture(scope="module")
def demo() -> Pipeline:
    return Pipeline(clock=NOW).run(demo_records(SETTINGS, NOW))


def test_every_demo_activity_lies_in_the_past_the_last_a_little_before_now() -> None:
    shift = story_shift(NOW)
    records = demo_records(SETTINGS, NOW)
    times = [
        event.own_time
        for record in records[1:]  # the first one is the malformed lead
        if isinstance(event := decode(record.headers, record.value, max_bytes=10**6).data, Activity)
        or isinstance(event, LeadCaptured)
    ]
    assert all(time is not None for time in times)
    assert max(time for time in times if time) == NOW - STORY_ENDS_BEFORE_NOW
    assert min(time for time in times if time) == datetime(2026, 9, 14, 10, tzinfo=UTC) + shift
    assert NOW - min(time for time in times if time) > timedelta(weeks=10)


def test_the_demos_report_shows_the_days_in_stage_its_activities_dates_imply(demo: Pipeline) -> None:
    timelines = demo.timelines()
    assert {deal_id: days_in_stages(timeline) for deal_id, timeline in timelines.items()} == DEMO_DAYS

    report = insights.report(list(timelines.values()), NOW, insights_playbook())
    everything = next(entry for entry in report.bottlenecks if entry.period == "all")
    times = {t.stage: (t.stays, t.median_days, t.p90_days) for t in everything.time_in_stage}
    assert times == DEMO_TIME_IN_STAGE
    # 1 open deal (the expansion) x 3/4 won x 1,627,400 EUR minor units (1,580,000 EUR, USD and GBP at
    # 0.92 and 1.17) / 41.67 days (42, 43 and 40 days from capture to won).
    assert everything.velocity.model_dump() == {
        "open_deals": 1,
        "won": 3,
        "lost": 1,
        "win_rate": 0.75,
        "average_won_minor": 1_627_400,
        "average_cycle_days": 41.67,
        "per_day_minor": 29_293,
    }
    assert report.stalled == []
    board = {stage: [card.deal_id for card in cards] for stage, cards in report.board.items() if cards}
    assert board == {
        "qualification": ["lead-acme-001-x1"],
        "onboarding": ["lead-globex-002", "lead-initech-003"],
        "live": ["lead-acme-001"],
        "lost": ["lead-umbrella-004"],
        "disqualified": ["lead-hooli-005"],
    }


def test_the_demos_won_deal_carries_its_business_times(demo: Pipeline) -> None:
    shift = story_shift(NOW)
    [acme] = [r for r in demo.emitted("deal.won.v1") if r.key == b"lead-acme-001"]
    won = decode(acme.headers, acme.value, max_bytes=10**6).data
    assert isinstance(won, DealWon)
    assert won.won_at == datetime(2026, 10, 26, 10, tzinfo=UTC) + shift  # the payment, not the processing
    assert acme.headers["ce_time"] == won.won_at.isoformat()
    assert acme.headers[RECORDED_TIME_HEADER] == NOW.isoformat()
    assert [(visit.stage, visit.seconds / 86_400) for visit in won.stage_history] == [
        ("presentation", 9.0),
        ("proposal", 9.0),
        ("negotiation", 11.0),
        ("closing", 6.0),
    ]
    [rejected] = demo.emitted("activity.rejected.v1")
    assert (rejected.key, decode(rejected.headers, rejected.value, max_bytes=10**6).data.reason.code) == (  # type: ignore[attr-defined]
        b"lead-umbrella-004",
        "deal_closed",
    )


def test_nothing_the_demo_leaves_pending_is_due_before_it_ends(demo: Pipeline) -> None:
    # The next onboarding tasks, the expansion deal's first touch, the lost deal's quote expiry: all
    # after the demo, so no deadline adds an event it does not expect.
    assert demo.pending_deadlines()
    assert min(due_at for _, _, due_at in demo.pending_deadlines()) > NOW + timedelta(hours=12)


# --- the workload's scripted deals ---------------------------------------------------------------


def test_a_scripted_deals_days_in_stage_are_what_its_dates_imply_and_it_emits_what_it_expects() -> None:
    deals = scripted_deals(50, now=NOW)
    by_outcome = {deal.outcome: deal for deal in reversed(deals)}
    assert {"won", "lost", "disqualified", "invalid", "not_a_fit"} <= set(by_outcome)
    pipeline = Pipeline(clock=NOW).run(sent(*(event for deal in deals for event in deal.events)))

    won, lost = by_outcome["won"], by_outcome["lost"]
    timelines = pipeline.timelines()
    days = {stage: (offset.total_seconds() / 86_400) for stage, offset in STEPS.items()}
    assert days_in_stages(timelines[won.deal_id]) == [
        ("qualification", days["discovery_call"]),  # from the lead's capture
        ("presentation", days["demo_held"] - days["discovery_call"]),
        ("proposal", days["proposal_sent"] - days["demo_held"]),
        ("negotiation", days["proposal_accepted"] - days["proposal_sent"]),
        ("closing", days["closed"] - days["proposal_accepted"]),
        ("won", 0.0),
        ("onboarding", None),
    ]
    assert days_in_stages(timelines[lost.deal_id])[-2:] == [("negotiation", 1.0), ("lost", None)]

    every_event = [*pipeline.published]
    for deal in (won, lost, by_outcome["disqualified"], by_outcome["invalid"]):
        emitted = Counter(
            record.headers["ce_type"].removeprefix("io.dealflow.")
            for record in every_event
            if record.key == deal.deal_id.encode() and record.headers["ce_source"] != CLI_SOURCE
        )
        assert emitted == deal.expected, deal.outcome
    assert all(event.own_time and event.own_time < NOW for deal in deals for event in deal.events)
    assert min(due_at for _, _, due_at in pipeline.pending_deadlines()) > NOW + DAY


# --- the rule: what the processing clock may refuse -----------------------------------------------


def qualified_deal(at: datetime) -> LeadQualified:
    return LeadQualified(
        deal_id="d-1",
        owner="anna.schmidt",
        contact=Contact(email="cfo@d-1.example"),
        company=Company(name="Customer"),
        framework="BANT",
        needs=Needs(),
        amount=Money(amount_minor=1_000_000, currency="EUR"),
        qualified_at=at,
    )


def reason_codes(pipeline: Pipeline, event_type: str) -> list[str]:
    codes = []
    for record in pipeline.emitted(event_type):
        data = decode(record.headers, record.value, max_bytes=10**6).data
        reasons = getattr(data, "reasons", None) or [data.reason]  # type: ignore[attr-defined]
        codes += [reason.code for reason in reasons]
    return codes


@pytest.mark.parametrize(
    ("dated", "code"),
    [
        (NOW + timedelta(minutes=4), None),  # within the 5 minutes of clock skew the playbooks allow
        (NOW + timedelta(minutes=6), "occurred_in_future"),
        (NOW + timedelta(days=21), "occurred_in_future"),
        (NOW - timedelta(days=365 * 9), None),  # imported history years old
        (NOW - timedelta(days=3651), "occurred_too_long_ago"),
    ],
)
def test_an_activity_dated_implausibly_by_the_stages_clock_is_refused(dated: datetime, code: str) -> None:
    pipeline = Pipeline(clock=NOW).run(
        sent(qualified_deal(NOW - timedelta(days=365 * 9)), DemoHeld(deal_id="d-1", occurred_at=dated))
    )

    assert reason_codes(pipeline, "activity.rejected.v1") == ([code] if code else [])
    moves = [
        decode(r.headers, r.value, max_bytes=10**6).data.model_dump()
        for r in pipeline.emitted("deal.stage_changed.v1")
    ]
    assert [move["stage"] for move in moves] == (["presentation"] if code else ["presentation", "proposal"])
    if code is None:
        assert moves[-1]["changed_at"] == dated  # the demo's time, not the processing time


def test_a_lead_captured_in_the_future_is_refused_with_lead_rejected() -> None:
    lead = LeadCaptured(
        lead_id="lead-1",
        email="cto@acme.example",
        title="CTO",
        company_name="Acme",
        country="DE",
        employees=300,
        industry="software",
        captured_at=NOW + timedelta(hours=1),
    )
    pipeline = Pipeline(clock=NOW).run(sent(lead))

    assert reason_codes(pipeline, "lead.rejected.v1") == ["occurred_in_future"]
    assert pipeline.emitted("prospect.identified.v1") == []
    [refusal] = pipeline.emitted("lead.rejected.v1")
    assert refusal.headers["ce_time"] == NOW.isoformat(), "an implausible time dates nothing"

    in_time = Pipeline(clock=NOW).run(sent(lead.model_copy(update={"captured_at": NOW - DAY})))
    [identified] = in_time.emitted("prospect.identified.v1")
    assert identified.headers["ce_time"] == (NOW - DAY).isoformat()
    prospect_event = decode(identified.headers, identified.value, max_bytes=10**6).data
    assert prospect_event.next_step.due_at == NOW - DAY + timedelta(hours=4)  # type: ignore[attr-defined]


def test_a_lead_without_captured_at_is_dated_by_its_cloudevents_time() -> None:
    lead = LeadCaptured(lead_id="lead-2", email="cto@globex.example", company_name="Globex", title="CTO")
    captured = NOW - timedelta(days=3)
    pipeline = Pipeline(clock=NOW).run([published(lead, captured, source="/crm")])

    [answer] = [*pipeline.emitted("prospect.identified.v1"), *pipeline.emitted("lead.rejected.v1")]
    assert answer.headers["ce_time"] == captured.isoformat()


# --- derived events take their cause's time -------------------------------------------------------


def test_a_deadlines_consequence_is_dated_when_it_was_due_not_when_it_was_announced() -> None:
    opened_at = NOW - timedelta(days=20)
    pipeline = Pipeline(clock=opened_at).run([published(prospect("A", opened_at), opened_at)])
    aggregate = pipeline.aggregates[("qualification", "d-1")]
    first_touch_id, due_at = min(aggregate.deadlines, key=lambda deadline: deadline[1])
    assert due_at == opened_at + timedelta(hours=4)

    announced = DeadlineReached(
        deal_id="d-1", stage_service="qualification", deadline_id=first_touch_id, due_at=due_at
    )
    later = Pipeline(clock=NOW, aggregates=pipeline.aggregates, offsets=pipeline.offsets).run(
        [published(announced, NOW, source="/dealflow/qualification")]  # announced 20 days late
    )
    [breach] = later.emitted("qualification.sla_breached.v1")
    assert breach.headers["ce_time"] == due_at.isoformat()
    assert breach.headers[RECORDED_TIME_HEADER] == NOW.isoformat()


def test_an_activity_dated_before_the_deals_current_stage_moves_it_no_earlier_than_it_entered() -> None:
    qualified_at = NOW - timedelta(days=10)
    pipeline = Pipeline(clock=NOW).run(
        sent(
            qualified_deal(qualified_at),
            DemoHeld(deal_id="d-1", occurred_at=qualified_at - timedelta(days=2)),  # logged out of order
            ProposalSent(
                deal_id="d-1",
                occurred_at=qualified_at + timedelta(days=3),
                currency="EUR",
                lines=[{"product": "dealflow-platform", "quantity": 1}],
            ),
        )
    )
    moves = [
        decode(r.headers, r.value, max_bytes=10**6).data.model_dump()
        for r in pipeline.emitted("deal.stage_changed.v1")
    ]
    assert [(move["stage"], move["changed_at"]) for move in moves] == [
        ("presentation", qualified_at),
        ("proposal", qualified_at),
        ("negotiation", qualified_at + timedelta(days=3)),
    ]


def test_events_parked_until_the_deal_opens_keep_their_own_times() -> None:
    opened_at = NOW - timedelta(days=9)
    touches = [
        TouchLogged(
            deal_id="d-1", occurred_at=opened_at + timedelta(days=n), channel="call", outcome="no_answer"
        )
        for n in (1, 2)
    ]
    pipeline = Pipeline(clock=NOW).run([*sent(*touches), published(prospect("A", opened_at), opened_at)])

    scheduled = pipeline.emitted("qualification.next_step_scheduled.v1")
    assert [record.headers["ce_time"] for record in scheduled] == [
        opened_at.isoformat(),
        touches[0].occurred_at.isoformat(),
        touches[1].occurred_at.isoformat(),
    ]
