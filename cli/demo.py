"""The `make run` demo: publish the sample leads and activities, wait for every outcome, print journeys."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cli.journey import journey, line
from cli.kafka_io import SeenEvent, all_topics, events_from_file, publish, records_for, wait_for
from contracts import Topic
from shared.envelope import KafkaRecord
from shared.settings import Settings

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "deploy" / "demo"
STORY_STARTS = datetime(2026, 11, 1, tzinfo=UTC)
MALFORMED_LEAD = b'{"lead_id": "lead-broken-001", "email": '


@dataclass(frozen=True)
class DemoOutcome:
    expected: dict[str, str]  # lead id -> the event type its journey should end with
    events: list[SeenEvent]

    def reached(self, lead_id: str) -> bool:
        return any(event.key == lead_id and event.type == self.expected[lead_id] for event in self.events)

    @property
    def all_reached(self) -> bool:
        return all(self.reached(lead_id) for lead_id in self.expected)


def expected_outcomes(sample_dir: Path = SAMPLE_DIR) -> dict[str, str]:
    outcomes = {}
    for text in (sample_dir / "leads.jsonl").read_text().splitlines():
        if text.strip():
            item = json.loads(text)
            outcomes[item["data"]["lead_id"]] = item["expect"]
    return outcomes


def malformed_record(settings: Settings) -> KafkaRecord:
    return KafkaRecord(
        topic=settings.topic(Topic.LEADS),
        key=b"lead-broken-001",
        value=MALFORMED_LEAD,
        headers={
            "ce_specversion": "1.0",
            "ce_id": "demo-malformed-lead-1",
            "ce_source": "/demo/web-form",
            "ce_type": "io.dealflow.lead.captured.v1",
            "content-type": "application/json",
        },
    )


async def run_demo(settings: Settings, *, timeout: float, sample_dir: Path = SAMPLE_DIR) -> DemoOutcome:
    leads = records_for(settings, events_from_file(sample_dir / "leads.jsonl"))
    # The story is written from 1 November 2026; replay it as if it started today.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    activities = records_for(
        settings, events_from_file(sample_dir / "activities.jsonl", today - STORY_STARTS)
    )
    # A malformed record goes first to show it cannot block the good leads behind it. Activities go out
    # with their leads, not after them: the services hold early ones until the deal exists.
    await publish(settings, [malformed_record(settings), *leads, *activities])
    expected = expected_outcomes(sample_dir)
    events = await wait_for(
        settings,
        all_topics(settings),
        lambda seen: DemoOutcome(expected, seen).all_reached,
        timeout=timeout,
    )
    return DemoOutcome(expected, events)


def report(outcome: DemoOutcome) -> str:
    lines = []
    for lead_id, expected in outcome.expected.items():
        status = "reached" if outcome.reached(lead_id) else "NOT reached"
        lines.append(f"\n{lead_id}  (expected end: {expected}, {status})")
        lines.extend(line(event) for event in journey(outcome.events, lead_id))
    won = [event for event in outcome.events if event.type == "deal.won.v1"]
    lines.append(f"\n{len(won)} deal-won events on the deals.won topic:")
    lines.extend(json.dumps(event.data, sort_keys=True)[:300] + " ..." for event in won)
    dead = [event for event in outcome.events if "dlq_error_code" in event.headers]
    lines.append(
        f"\n{len(dead)} dead-lettered record(s): "
        + ", ".join(
            f"{event.headers.get('dlq_error_code')} from {event.headers.get('dlq_source_topic')}"
            for event in dead
        )
    )
    return "\n".join(lines)
