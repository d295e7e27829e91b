"""Two sales processes on the same code: the default playbook and the example one, each run by the five
service processes on the real servers. Each deal's events carry that playbook's stage ids, a rep's stage
move with unmet criteria is refused naming them, and the insights board shows that playbook's columns."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cli.kafka_io import SeenEvent, publish, read_all, records_for
from contracts import Event, Topic
from contracts.events import EVENT_TYPES
from shared.playbook import DEFAULT_DOCUMENT, PLAYBOOK_DIR, load_document
from shared.settings import Settings
from tests.e2e.processes import service_processes

pytestmark = pytest.mark.e2e

API_TOKEN = secrets.token_urlsafe(32)
DEAL = "lead-playbook-001"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Scenario:
    document: Path
    closing: tuple[tuple[str, dict[str, Any]], ...]  # the activities after the refused move, in order
    stages: tuple[str, ...]  # the stages the deal goes through, to won
    refused_move: str  # a stage the rep asks for too early
    unmet: str  # what the refusal names
    columns: tuple[str, ...]


COMMON = (
    ("demo_scheduled", {"scheduled_for": (NOW - timedelta(days=2)).isoformat()}),
    ("demo_held", {"attendees": ["CTO"]}),
    ("proposal_sent", {"currency": "EUR", "lines": [{"product": "dealflow-platform", "quantity": 2}]}),
    ("proposal_accepted", {}),
)
SCENARIOS = [
    Scenario(
        DEFAULT_DOCUMENT,
        closing=(
            *COMMON,
            ("contract_signed", {"signed_by": "CFO"}),
            ("payment_received", {"amount": {"amount_minor": 240000, "currency": "EUR"}}),
        ),
        stages=("presentation", "proposal", "negotiation", "closing", "won"),
        refused_move="negotiation",
        unmet="presentation: demo_held or quote_sent; proposal: quote_sent",
        columns=("qualification", "nurture", "presentation", "proposal", "negotiation", "closing"),
    ),
    Scenario(
        PLAYBOOK_DIR / "example-solution-selling.yaml",
        closing=(
            *COMMON,
            ("stage_move_requested", {"to_stage": "legal"}),  # procurement moves on only by a rep
            ("contract_signed", {"signed_by": "CFO"}),  # this playbook wins on signature
        ),
        stages=("solution_design", "technical_validation", "business_case", "procurement", "legal", "won"),
        refused_move="business_case",
        unmet="solution_design: demo_scheduled; technical_validation: demo_held",
        columns=(
            "discovery",
            "nurture",
            "solution_design",
            "technical_validation",
            "business_case",
            "procurement",
            "legal",
        ),
    ),
]


@pytest.fixture(params=SCENARIOS, ids=lambda scenario: scenario.document.stem)
def stack(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> Iterator[tuple[Settings, str, Scenario]]:
    scenario: Scenario = request.param
    settings = settings.model_copy(update={"api_token": SecretStr(API_TOKEN), "api_token_file": None})
    extra = {"DEALFLOW_PLAYBOOK": str(scenario.document)}
    with service_processes(settings, tmp_path, extra_env=extra) as ports:
        yield settings, f"http://127.0.0.1:{ports['insights']}", scenario


def event(kind: str, at: datetime, **data: Any) -> Event:
    model = EVENT_TYPES[f"io.dealflow.{kind}.v1"]
    if kind.startswith("activity."):
        data = {"deal_id": DEAL, "occurred_at": at.isoformat(), "actor": "anna.schmidt"} | data
    return model.model_validate(data)


async def send(settings: Settings, *events: Event) -> None:
    await publish(settings, records_for(settings, [(item, None) for item in events]))


async def until(settings: Settings, done: Any, timeout: float = 90) -> list[SeenEvent]:
    topics = [settings.topic(topic) for topic in Topic]
    deadline = time.monotonic() + timeout
    while True:
        events = [e for e in await read_all(settings, topics) if e.key == DEAL]
        if done(events) or time.monotonic() >= deadline:
            return events
        await asyncio.sleep(1)


def of_type(events: list[SeenEvent], kind: str) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == kind and e.data is not None]


async def report_when(url: str, done: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=10, headers={"authorization": f"Bearer {API_TOKEN}"}) as client:
        while True:
            try:
                report: dict[str, Any] = (await client.get(f"{url}/api/report")).json()
            except (httpx.TransportError, ValueError):
                report = {}
            if (report and done(report)) or time.monotonic() >= deadline:
                return report
            await asyncio.sleep(1)


async def test_each_playbook_runs_its_own_stages_criteria_and_board_on_the_same_code(
    stack: tuple[Settings, str, Scenario],
) -> None:
    settings, url, scenario = stack
    start = NOW - timedelta(days=6)
    await send(
        settings,
        event(
            "lead.captured",
            start,
            lead_id=DEAL,
            email="jana.novak@acme-robotics.de",
            title="CTO",
            company_name="Acme Robotics GmbH",
            website="acme-robotics.de",
            country="DE",
            employees=250,
            industry="software",
            source="web_form",
            captured_at=start.isoformat(),
        ),
    )
    await until(settings, lambda events: of_type(events, "prospect.identified.v1"))
    await send(
        settings,
        event("activity.touch_logged", start + timedelta(hours=1), channel="call", outcome="meeting_booked"),
        event(
            "activity.discovery_call_logged",
            start + timedelta(days=1),
            actor_role="rep",
            framework="BANT",
            answers={"budget": True, "authority": True, "need": True, "timeline": True},
            needs={"pains": ["manual reporting"]},
            estimated_amount={"amount_minor": 240000, "currency": "EUR"},
        ),
    )
    opened = await until(settings, lambda events: of_type(events, "deal.stage_changed.v1"))
    assert [e["stage"] for e in of_type(opened, "deal.stage_changed.v1")] == [scenario.stages[0]]

    # A rep asks for a later stage too early: refused, the criteria that do not hold named.
    await send(
        settings,
        event("activity.stage_move_requested", start + timedelta(days=2), to_stage=scenario.refused_move),
    )
    refused = await until(settings, lambda events: of_type(events, "activity.rejected.v1"))
    [rejection] = of_type(refused, "activity.rejected.v1")
    assert rejection["reason"]["code"] == "exit_criteria_unmet"
    assert scenario.unmet in rejection["reason"]["message"]

    await send(
        settings,
        *(
            event(f"activity.{kind}", start + timedelta(days=3, hours=index), **data)
            for index, (kind, data) in enumerate(scenario.closing)
        ),
    )
    events = await until(settings, lambda events: of_type(events, "deal.won.v1"))
    changes = of_type(events, "deal.stage_changed.v1")
    assert [change["stage"] for change in changes] == list(scenario.stages), of_type(
        events, "activity.rejected.v1"
    )
    document = load_document(scenario.document)
    for change in changes[:-1]:  # every open stage sets the playbook's next step on entry
        rule = document.stages[change["stage"]].next_step
        assert rule is not None
        assert change["next_step"]["action"] == rule.action
        assert change["probability"] == document.stages[change["stage"]].probability

    report = await report_when(url, lambda report: report.get("deals") == 1)
    assert tuple(report["board"])[: len(scenario.columns)] == scenario.columns
    assert list(report["board"])[len(scenario.columns) :] == [
        "won",
        "onboarding",
        "live",
        "lost",
        "disqualified",
    ]
