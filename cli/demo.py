"""The `make run` demo: import a year of generated CRM history, then publish the sample leads and
activities, wait for every outcome, print journeys."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cli import opportunity_import as importing
from cli.event_files import events_from_file
from cli.history import generate_history
from cli.journey import journey, line
from cli.kafka_io import SeenEvent, all_topics, publish, read_all, records_for, wait_for
from cli.opportunity_import import ImportRead
from contracts import Topic
from contracts.events import Activity, LeadCaptured
from shared.envelope import KafkaRecord
from shared.playbook import load_document
from shared.settings import Settings

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "deploy" / "demo"
# Generated once, on the day of the first demo, and imported again as it is: the same history each time.
HISTORY_DIR = Path(__file__).resolve().parent.parent / ".local" / "history"
# The story is replayed as if its last activity happened this long before the demo starts: every
# activity lies in the past, weeks apart as written, and what is still pending (an expansion deal's
# first touch, the next onboarding tasks) is due after the demo.
STORY_ENDS_BEFORE_NOW = timedelta(hours=2)
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


def story_shift(now: datetime, sample_dir: Path = SAMPLE_DIR) -> timedelta:
    """How far to move the story's times so its last activity happened STORY_ENDS_BEFORE_NOW ago."""
    last = max(
        activity.occurred_at
        for activity, _ in events_from_file(sample_dir / "activities.jsonl")
        if isinstance(activity, Activity)
    )
    return (now - STORY_ENDS_BEFORE_NOW) - last


def demo_records(
    settings: Settings, now: datetime, sample_dir: Path = SAMPLE_DIR, shift: timedelta | None = None
) -> list[KafkaRecord]:
    """The demo's records, in the order it publishes them, its story moved to end just before `now`
    (or by `shift`, to tell it again exactly as before).

    A malformed record goes first to show it cannot block the good leads behind it. Activities go out
    with their leads, not after them: the services hold early ones until the deal exists. Each lead says
    when it was captured (`captured_at`), so the deal's first stage starts then, not when it is sent.
    """
    shift = story_shift(now, sample_dir) if shift is None else shift
    leads = records_for(settings, events_from_file(sample_dir / "leads.jsonl", shift))
    activities = records_for(settings, events_from_file(sample_dir / "activities.jsonl", shift))
    return [malformed_record(settings), *leads, *activities]


async def told_before(settings: Settings, sample_dir: Path = SAMPLE_DIR) -> timedelta | None:
    """The shift the story was told with last time on this stack, if it was.

    Told again with other times, every record would reuse its id with other content, and the services
    would dead-letter the whole story as id conflicts; told the same, they absorb it as copies.
    """
    first_lead, first_id = next(iter(events_from_file(sample_dir / "leads.jsonl")))
    if not isinstance(first_lead, LeadCaptured) or first_lead.captured_at is None:
        return None
    told = [
        event
        for event in await read_all(settings, [settings.topic(Topic.LEADS)])
        if event.id == first_id and isinstance((event.data or {}).get("captured_at"), str)
    ]
    if not told:
        return None
    return datetime.fromisoformat(told[-1].data["captured_at"]) - first_lead.captured_at  # type: ignore[index]


def history_export(directory: Path, today: date) -> Path:
    """The generated export's mapping file in `directory`, generated there first if it is not yet."""
    mapping = directory / "mapping.yaml"
    if not mapping.exists():
        generate_history(directory, until=today)
    return mapping


def read_history(directory: Path, now: datetime) -> ImportRead:
    """The generated export as `dealflow import opportunities` reads it, known up to `now`."""
    document = load_document()
    mapping = importing.load_mapping(history_export(directory, now.date()), document)
    reference = importing.reference_for(
        mapping, document, now, accounts=directory / "accounts.csv", teams=directory / "teams.csv"
    )
    return importing.read_opportunities(importing.read_rows(directory / "opportunities.csv"), reference)


def answered_imports(events: list[SeenEvent], deal_ids: set[str]) -> set[str]:
    """The imported deals a stage service answered: with deal.imported, or a rejection."""
    answers = {"deal.imported.v1", "activity.rejected.v1"}
    return {event.key for event in events if event.type in answers and event.key in deal_ids}


async def run_demo(
    settings: Settings,
    *,
    timeout: float,
    sample_dir: Path = SAMPLE_DIR,
    history_dir: Path | None = None,
    say: Callable[[str], None] = print,
) -> DemoOutcome:
    imported: set[str] = set()
    if history_dir is not None:
        history = read_history(history_dir, datetime.now(UTC))
        export = history_dir / "opportunities.csv"
        for problem in history.problems:  # the messiness of a real export, spoilt on purpose
            say(f"history: {export}: {problem.severity}: {problem}")
        say(f"history: {export}: {history.summary(dry_run=False)}")
        await publish(settings, records_for(settings, importing.iter_events(history)))
        imported = {row.event.deal_id for row in history.mapped}
    shift = await told_before(settings, sample_dir)
    await publish(settings, demo_records(settings, datetime.now(UTC), sample_dir, shift))
    say("live: the sample leads and activities are published; waiting for every outcome ...")
    expected = expected_outcomes(sample_dir)
    events = await wait_for(
        settings,
        all_topics(settings),
        lambda seen: DemoOutcome(expected, seen).all_reached and answered_imports(seen, imported) == imported,
        timeout=timeout,
    )
    if history_dir is not None:
        say(f"history: {len(answered_imports(events, imported))} of {len(imported)} imported deals answered")
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
