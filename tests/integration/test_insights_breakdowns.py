"""The insights process on the real broker and database, fed imported deals (deal.imported.v1) and a live
one: the breakdown by owner and month of close, the forecast that learns, and a rep's view, served by the
process's own HTTP routes (`/api/report?by=owner&period=month`, `/reps/<owner>`, `/api/reps/<owner>`).

Imported (as of 1 Nov 2026, EUR): anna.schmidt won imp-a on 3 Mar (10,000.00) and lost imp-b on 14 Apr;
luc.martin won imp-c on 20 Apr (5,000.00); anna.schmidt has imp-d open in negotiation, its next step due
5 Nov (overdue), and imp-e open in proposal, due a week from now (upcoming): the rep view is about now,
so the process's HTTP routes read the wall clock.
Live: deal-b of tests/insights_events.py, jordan.lee's win of 22 Oct for 2,500.00 USD (2,300.00 EUR).
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from cli.main import app as cli
from contracts.events import Company, DealImported, ImportedStage, Money, NextStep
from services.insights.service import definition
from shared.runtime import StageService
from shared.settings import Settings
from tests.insights_events import NOW, known_events
from tests.integration.helpers import Clock, send
from tests.integration.test_insights_read_model import eventually
from tests.integration.test_insights_report_cli import AUTHORIZED, TOKEN_ENV, serving, with_token

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def at(month: int, day_of_month: int) -> datetime:
    return datetime(2026, month, day_of_month, 9, tzinfo=UTC)


def imported(
    source_id: str, owner: str, stage: str, history: list[tuple[str, datetime]], **fields: Any
) -> DealImported:
    return DealImported(
        deal_id=f"imp-{source_id}",
        source="salesforce",
        source_id=source_id,
        owner=owner,
        company=Company(name=f"Company {source_id}", country="DE"),
        pipeline="new_business",
        stage=stage,
        stage_history=[ImportedStage(stage=name, entered_at=entered) for name, entered in history],
        created_at=history[0][1],
        as_of=AS_OF,
        stage_service="proposal",
        **fields,
    )


def imports() -> list[DealImported]:
    eur = "EUR"
    return [
        imported(
            "a",
            "anna.schmidt",
            "won",
            [("qualification", at(1, 2)), ("proposal", at(2, 1))],
            closed_at=at(3, 3),
            amount=Money(amount_minor=1_000_000, currency=eur),
        ),
        imported(
            "b",
            "anna.schmidt",
            "lost",
            [("qualification", at(3, 1)), ("presentation", at(3, 20))],
            closed_at=at(4, 14),
            loss_reason="price",
            amount=Money(amount_minor=300_000, currency=eur),
        ),
        imported(
            "c",
            "luc.martin",
            "won",
            [("qualification", at(3, 21)), ("closing", at(4, 10))],
            closed_at=at(4, 20),
            amount=Money(amount_minor=500_000, currency=eur),
        ),
        imported(
            "d",
            "anna.schmidt",
            "negotiation",
            [("qualification", at(9, 1)), ("negotiation", at(10, 20))],
            amount=Money(amount_minor=200_000, currency=eur),
            next_step=NextStep(action="agree_terms", due_at=at(11, 5)),
        ),
        imported(
            "e",
            "anna.schmidt",
            "proposal",
            [("qualification", at(10, 1)), ("proposal", at(10, 25))],
            next_step=NextStep(action="send_proposal", due_at=datetime.now(UTC) + timedelta(days=7)),
        ),
    ]


def closed_rows(report: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int, int]]:
    return {
        (row["group"], row["period"]): (row["won"], row["lost"], row["won_amount_minor"])
        for row in report["breakdown"]["closed"]
    }


EXPECTED_ROWS = {
    ("anna.schmidt", "2026-03"): (1, 0, 1_000_000),
    ("anna.schmidt", "2026-04"): (0, 1, 0),
    ("luc.martin", "2026-04"): (1, 0, 500_000),
    ("jordan.lee", "2026-10"): (1, 0, 230_000),
}


def section(html: str, name: str) -> list[str]:
    """The deal ids listed in the rep page's section `name`."""
    match = re.search(rf'<section id="{name}">(.*?)</section>', html, re.S)
    assert match is not None, f"no section {name}"
    return re.findall(r'data-deal-id="([^"]+)"', match.group(1))


async def test_imported_and_live_deals_are_broken_down_by_owner_and_month_and_each_rep_has_a_view(
    settings: Settings,
) -> None:
    settings = with_token(settings).model_copy(update={"report_cache_seconds": 0.1})
    live = [(event, published) for event, published in known_events() if event.partition_key == "deal-b"]
    service = StageService(definition(), settings, clock=Clock(NOW))
    async with service.build_app() as served:
        await send(settings, *imports(), at=AS_OF)
        for event, published in live:
            await send(settings, event, at=published)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=served), base_url="http://127.0.0.1", headers=AUTHORIZED
        ) as client:
            report: dict[str, Any] = {}

            async def broken_down() -> None:
                nonlocal report
                answer = await client.get("/api/report", params={"by": "owner", "period": "month"})
                assert answer.status_code == 200, answer.text
                report = answer.json()
                assert closed_rows(report) == EXPECTED_ROWS

            await eventually(broken_down)
            refused = await client.get("/api/report", params={"by": "colour"})
            bad_period = await client.get("/api/report", params={"period": "fortnight"})
            bottlenecks = await client.get("/api/report", params={"period": "2026-10"})
            page = await client.get("/reps/anna.schmidt")
            view = await client.get("/api/reps/anna.schmidt")
            nobody = await client.get("/reps/")

    anna = next(
        r for r in report["breakdown"]["closed"] if (r["group"], r["period"]) == ("anna.schmidt", "2026-03")
    )
    assert anna["cycle_from_creation"]["median_days"] == 60.0  # 2 Jan to 3 Mar, in business time
    assert report["breakdown"]["by"] == "owner"
    assert {row["group"]: row["deals"] for row in report["breakdown"]["open_pipeline"]} == {"anna.schmidt": 2}
    learned = report["learned_forecast"]
    assert learned["period"] == "month"
    proposal = next(
        p for p in learned["probabilities"] if (p["pipeline"], p["stage"]) == ("new_business", "proposal")
    )
    assert proposal["static"] == 0.4
    assert proposal["used"] == "static"  # three closed deals reached it: below the default sample of 10

    assert (refused.status_code, refused.json()["error"]) == (400, "bad_dimension")
    assert (bad_period.status_code, bad_period.json()["error"]) == (400, "bad_period")
    assert bottlenecks.status_code == 200
    assert [entry["period"] for entry in bottlenecks.json()["bottlenecks"]] == ["2026-10"]  # as before

    assert page.status_code == 200
    assert "script-src" not in page.headers["content-security-policy"]  # the rep page runs no script
    html = page.text
    assert section(html, "overdue") == ["imp-d"]
    assert section(html, "upcoming") == ["imp-e"]
    assert section(html, "due_today") == section(html, "without_next_step") == []
    assert view.json()["overdue"][0]["deal_id"] == "imp-d"
    assert nobody.status_code == 404


async def test_the_cli_prints_the_breakdown_the_forecast_and_a_reps_next_steps(settings: Settings) -> None:
    # Over the known timelines of tests/insights_events.py, served at NOW: anna.schmidt lost deal-c and
    # deal-g and won nothing; jordan.lee won deal-b for 2,300.00 EUR.
    env = {"COLUMNS": "250", **TOKEN_ENV}

    def run(*arguments: str) -> Result:
        return CliRunner().invoke(cli, list(arguments), env=env)

    async with serving(settings) as url:
        by_owner = await asyncio.to_thread(run, "report", "--url", url, "--by", "owner")
        as_json = await asyncio.to_thread(
            run, "report", "--url", url, "--by", "team", "--period", "quarter", "--json"
        )
        forecast = await asyncio.to_thread(run, "forecast", "--url", url)
        steps = await asyncio.to_thread(run, "next", "--url", url, "--owner", "anna.schmidt")
    unknown = await asyncio.to_thread(run, "report", "--by", "colour")

    assert by_owner.exit_code == 0, by_owner.output
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in by_owner.output.splitlines()]
    rows: dict[str, list[str]] = {}
    for row in cells:  # the closed deals' table comes first, the open pipeline's after it
        if row and row[0] in ("anna.schmidt", "jordan.lee"):
            rows.setdefault(row[0], row)
    assert rows["anna.schmidt"][1:6] == ["all", "0", "2", "0.0%", "0.00"]
    assert rows["jordan.lee"][1:6] == ["all", "1", "0", "100.0%", "2,300.00"]
    assert rows["jordan.lee"][6] == "20.0"  # deal-b: prospect 2 Oct, won 22 Oct
    assert as_json.exit_code == 0, as_json.output
    figures = json.loads(as_json.output)["breakdown"]
    assert (figures["by"], figures["period"]) == ("team", "quarter")
    assert {(row["group"], row["period"]) for row in figures["closed"]} == {
        ("americas", "2026-Q4"),
        ("emea", "2026-Q4"),
    }
    assert forecast.exit_code == 0, forecast.output
    assert "Stage probabilities" in forecast.output
    assert "Backtest" in forecast.output
    assert steps.exit_code == 0, steps.output
    assert steps.output.startswith("anna.schmidt (team emea): 2 open deals")
    assert "Overdue (0)" in steps.output
    assert "No next step (2)" in steps.output  # deal-a and deal-h: their stage changes carried none
    assert "deal-a" in steps.output
    assert "deal-h" in steps.output
    assert unknown.exit_code == 2
    assert "unknown dimension 'colour'" in unknown.output
