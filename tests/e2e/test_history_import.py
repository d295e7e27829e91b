"""A CRM history brought in: a generated export (with the messiness of real ones) imported through the
real servers by `dealflow import opportunities`, as a team adopting dealflow would.

The report's win rate, won amount and cycle percentiles per owner, per team and per month of close must
be the figures this test computes on its own from the same file, with nothing of the importer or of
insights (its own CSV reading, date parsing and arithmetic). Importing the file again changes nothing. The
forecast backtest prints its error per period for the playbook's and the fitted probabilities. Headless
Chromium opens the page and a rep's view; their screenshots go to build/test-output/.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from math import ceil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from pydantic import SecretStr

from cli.history import generate_history
from cli.kafka_io import read_all
from contracts import Topic
from shared.kafka import group_progress
from shared.settings import Settings
from tests.browser import page_view, rendered_dom, screenshot
from tests.e2e.processes import REPO, service_processes

pytestmark = pytest.mark.e2e

API_TOKEN = secrets.token_urlsafe(32)
SCREENSHOTS = REPO / "build" / "test-output"
DATE_FORMATS = ("%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M")
WON, LOST = "Closed Won", "Closed Lost"


@dataclass(frozen=True)
class Closed:
    owner: str
    team: str
    won: bool
    created: datetime
    engaged: datetime | None
    closed: datetime
    amount_eur_minor: Decimal | None


def moment(text: str) -> datetime:
    for layout in DATE_FORMATS:
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(text)


def closed_deals(directory: Path) -> tuple[list[Closed], int]:
    """The export's closed deals as this test reads the file, and how many rows it leaves out."""
    rates = yaml.safe_load((REPO / "playbooks" / "default.yaml").read_text())["insights"]["rate_to_reporting"]
    teams = {row["Owner"]: row["Team"] for row in csv.DictReader((directory / "teams.csv").open())}
    stages = set(yaml.safe_load((directory / "mapping.yaml").read_text())["stages"])
    closed, left_out = [], 0
    for row in csv.DictReader((directory / "opportunities.csv").open(newline="")):
        if not row["Deal owner"] or row["Deal Stage"] not in stages or not row["Create Date"]:
            left_out += 1
            continue
        if row["Deal Stage"] not in (WON, LOST):
            continue
        try:
            minor: Decimal | None = Decimal(row["Amount"]) * 100 * Decimal(str(rates[row["Currency"]]))
        except ArithmeticError:
            minor = None
        closed.append(
            Closed(
                owner=row["Deal owner"],
                team=teams.get(row["Deal owner"], "unknown"),
                won=row["Deal Stage"] == WON,
                created=moment(row["Create Date"]),
                engaged=moment(row["First Meeting Date"]) if row["First Meeting Date"] else None,
                closed=moment(row["Close Date"]),
                amount_eur_minor=minor,
            )
        )
    return closed, left_out


def nearest_rank_p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[ceil(0.9 * len(ordered)) - 1]


def figures(deals: list[Closed]) -> dict[str, Any]:
    won = [deal for deal in deals if deal.won]
    days = [(deal.closed - deal.created).total_seconds() / 86_400 for deal in won]
    engaged = [
        (deal.closed - deal.engaged).total_seconds() / 86_400
        for deal in won
        if deal.engaged is not None and deal.engaged <= deal.closed
    ]
    amount = sum((deal.amount_eur_minor for deal in won if deal.amount_eur_minor is not None), Decimal(0))
    return {
        "won": len(won),
        "lost": len(deals) - len(won),
        "win_rate": round(len(won) / len(deals), 4),
        "won_amount_minor": int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP)),
        "cycle_median": round(statistics.median(days), 2) if days else None,
        "cycle_p90": round(nearest_rank_p90(days), 2) if days else None,
        "engaged_median": round(statistics.median(engaged), 2) if engaged else None,
    }


def expected_rows(deals: list[Closed], by: str | None, period: str | None) -> dict[tuple[str, str], Any]:
    groups: dict[tuple[str, str], list[Closed]] = defaultdict(list)
    for deal in deals:
        group = "all" if by is None else getattr(deal, by)
        groups[(group, "all" if period is None else f"{deal.closed:%Y-%m}")].append(deal)
    return {key: figures(members) for key, members in groups.items()}


def reported_rows(report: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {
        (row["group"], row["period"]): {
            "won": row["won"],
            "lost": row["lost"],
            "win_rate": row["win_rate"],
            "won_amount_minor": row["won_amount_minor"],
            "cycle_median": row["cycle_from_creation"]["median_days"],
            "cycle_p90": row["cycle_from_creation"]["p90_days"],
            "engaged_median": row["cycle_from_engagement"]["median_days"],
        }
        for row in report["breakdown"]["closed"]
    }


@pytest.fixture
def five_services(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    settings = settings.model_copy(update={"api_token": SecretStr(API_TOKEN), "api_token_file": None})
    with service_processes(settings, tmp_path) as ports:
        yield settings, f"http://127.0.0.1:{ports['insights']}"


def dealflow(settings: Settings, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = os.environ | settings.environment()
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *arguments],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def report(url: str, query: str = "") -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60, headers={"authorization": f"Bearer {API_TOKEN}"}) as client:
        answer = await client.get(f"{url}/api/report{query}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


async def report_when(url: str, query: str, done: Any, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = await report(url, query)
        except httpx.TransportError:
            answer = {}
        if (answer and done(answer)) or time.monotonic() >= deadline:
            return answer
        await asyncio.sleep(2)


async def imports_consumed(settings: Settings, timeout: float = 120) -> bool:
    """Whether qualification and proposal have both committed the imports topic to its end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = [
            await group_progress(settings, settings.consumer_group(service), [settings.topic(Topic.IMPORTS)])
            for service in ("qualification", "proposal")
        ]
        if all(offsets and all(done == end for done, end in offsets.values()) for offsets in progress):
            return True
        await asyncio.sleep(1)
    return False


def without_clock(answer: dict[str, Any]) -> dict[str, Any]:
    """The report less what the wall clock alone changes between two reads."""
    kept = {key: value for key, value in answer.items() if key not in ("generated_at", "board", "stalled")}
    return json.loads(json.dumps(kept, sort_keys=True))


async def test_an_imported_history_gives_the_figures_the_export_implies(
    five_services: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, url = five_services
    history = generate_history(tmp_path / "export", seed=11, until=date.today(), months=8, deals=320)
    closed, left_out = closed_deals(tmp_path / "export")
    assert left_out == 3, "the generator spoils three rows beyond use"
    command = (
        "import",
        "opportunities",
        str(history.opportunities),
        "--mapping",
        str(history.mapping),
        "--accounts",
        str(history.accounts),
        "--teams",
        str(history.teams),
    )

    first = dealflow(settings, *command)
    assert first.returncode == 1, first.stderr  # rows were left out, and said so
    assert "read 320 rows: published 317 deals" in first.stdout, first.stdout
    assert first.stderr.count(": error: ") == 3, first.stderr

    everything = await report_when(
        url,
        "?by=owner",
        lambda answer: sum(r["won"] + r["lost"] for r in answer["breakdown"]["closed"]) == len(closed),
    )
    by_owner = reported_rows(everything)
    assert by_owner == expected_rows(closed, "owner", None)
    assert reported_rows(await report(url, "?by=team")) == expected_rows(closed, "team", None)
    assert reported_rows(await report(url, "?period=month")) == expected_rows(closed, None, "month")
    by_team_and_month = await report(url, "?by=team&period=month")
    assert reported_rows(by_team_and_month) == expected_rows(closed, "team", "month")
    assert {row["group"] for row in by_team_and_month["breakdown"]["closed"]} >= {"emea", "americas"}

    before = without_clock(by_team_and_month)
    imported = [
        e for e in await read_all(settings, [settings.topic(Topic.DEALS)]) if e.type == "deal.imported.v1"
    ]
    assert len(imported) == 317

    again = dealflow(settings, *command)
    assert again.returncode == 1, again.stderr
    assert await imports_consumed(settings), "the second import was not consumed"
    after = [
        e for e in await read_all(settings, [settings.topic(Topic.DEALS)]) if e.type == "deal.imported.v1"
    ]
    assert len(after) == 317, "importing the same file again made new deals or changed some"
    assert without_clock(await report(url, "?by=team&period=month")) == before
    won_topic = await read_all(settings, [settings.topic(Topic.DEALS_WON)])
    assert won_topic == [], "an imported win is history: nothing to bill"

    backtest = dealflow(settings, "forecast", "--url", url)
    assert backtest.returncode == 0, backtest.stderr
    learned = everything["learned_forecast"]
    scored = [row for row in learned["snapshots"] if row["static_ape"] is not None]
    assert len(scored) >= 3, learned
    for row in scored:
        assert row["period"] in backtest.stdout
    assert "mean absolute percentage error" in backtest.stdout
    print(backtest.stdout)  # the backtest's error per period, for both probabilities: shown with -s

    signed_in = f"?token={quote(API_TOKEN, safe='')}"
    view = page_view(await rendered_dom(f"{url}/{signed_in}"))
    assert view.loaded, "the page never drew a report"
    assert view.texts["total-deals"] == str(everything["deals"])
    open_deals = sum(
        len(cards) for stage, cards in everything["board"].items() if stage in everything["stage_labels"]
    )
    assert sum(len(view.columns[stage]) for stage in everything["stage_labels"]) == open_deals
    await screenshot(f"{url}/{signed_in}", SCREENSHOTS / "imported-history-page.png", height=3000)

    rep = max(by_owner, key=lambda key: by_owner[key]["won"])[0]
    async with httpx.AsyncClient(timeout=60, headers={"authorization": f"Bearer {API_TOKEN}"}) as client:
        rep_answer = (await client.get(f"{url}/api/reps/{rep}")).json()
    rep_dom = await rendered_dom(f"{url}/reps/{rep}{signed_in}")
    for section in ("overdue", "due_today", "upcoming", "without_next_step"):
        for item in rep_answer[section]:
            assert item["deal_id"] in rep_dom
    assert rep in rep_dom
    await screenshot(f"{url}/reps/{rep}{signed_in}", SCREENSHOTS / "imported-history-rep.png", height=1400)
