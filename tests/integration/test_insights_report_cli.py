"""`dealflow report` against the insights API served over HTTP from a real database, with its token."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from typer.testing import CliRunner

from cli.main import app as cli
from services.insights.api import app
from shared.mongo import make_client
from shared.settings import Settings
from tests.insights_events import NOW, known_events
from tests.integration.helpers import Clock
from tests.unit.test_insights import timelines_from

pytestmark = pytest.mark.integration

API_TOKEN = secrets.token_urlsafe(32)
AUTHORIZED = {"authorization": f"Bearer {API_TOKEN}"}
# What `dealflow report` reads the token from (the file variable emptied: one source at a time).
TOKEN_ENV = {"DEALFLOW_API_TOKEN": API_TOKEN, "DEALFLOW_API_TOKEN_FILE": ""}


def with_token(settings: Settings, token: str | None = API_TOKEN) -> Settings:
    """The settings of an insights process that demands `token` (None: none configured)."""
    return settings.model_copy(update={"api_token": None if token is None else SecretStr(token)})


@asynccontextmanager
async def serving(settings: Settings, *, token: str | None = API_TOKEN) -> AsyncIterator[str]:
    """The insights API on a free loopback port, over the known timelines stored in the database, demanding
    `token` (API_TOKEN unless told)."""
    mongo = make_client(settings, app_name="insights-cli-test")
    database = mongo[settings.database_name("insights")]
    await database["aggregates"].insert_many(
        [
            {"_id": t.deal_id, "version": 1, "state": t.model_dump(mode="json")}
            for t in timelines_from(known_events())
        ]
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    served = app(database, clock=Clock(NOW), settings=with_token(settings, token))
    server = uvicorn.Server(uvicorn.Config(served, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn signals its start with a flag, not an event)
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        listener.close()
        await mongo.drop_database(settings.database_name("insights"))
        await mongo.close()


async def test_report_prints_funnel_forecast_and_bottlenecks_with_the_known_figures(
    settings: Settings,
) -> None:
    env = {"COLUMNS": "200", **TOKEN_ENV}
    async with serving(settings) as url:
        result = await asyncio.to_thread(CliRunner().invoke, cli, ["report", "--url", url], env=env)
        october = await asyncio.to_thread(
            CliRunner().invoke, cli, ["report", "--url", url, "--period", "2026-10"], env=env
        )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()

    def row(first_cell: str) -> list[str]:
        """The cells of the first table row whose first cell is `first_cell`."""
        for line in lines:
            cells = [cell.strip() for cell in line.strip("│┃ ").replace("┃", "│").split("│")]
            if cells and cells[0] == first_cell:
                return cells
        raise AssertionError(f"no row {first_cell!r} in:\n{result.output}")

    assert row("qualification")[:4] == ["qualification", "8", "1", "75.0%"]  # the funnel comes first
    assert row("2026-11")[:4] == ["2026-11", "2", "1,551.00", "1,000.80"]
    assert row("unscheduled")[:4] == ["unscheduled", "1", "800.00", "320.00"]
    assert row("total")[:8] == [
        "total",
        "4",
        "4,651.00",
        "3,620.80",
        "320.00",
        "720.00",
        "280.80",
        "2,300.00",
    ]
    assert row("anna.schmidt")[:4] == ["anna.schmidt", "2", "1,551.00", "1,000.80"]
    assert row("americas")[:4] == ["americas", "2", "3,100.00", "2,620.00"]
    assert row("GBP")[1:] == ["300.00", "240.00"]
    assert row("4")[:7] == ["4", "1", "2", "33.3%", "2,300.00", "20.0", "153.33"]  # velocity
    assert row("competitor")[:4] == ["competitor", "1", "bant_budget_not_met", "1"]
    assert row("deal-a")[:3] == ["deal-a", "anna.schmidt", "negotiation"]
    assert october.exit_code == 0, october.output
    assert "Pipeline velocity (2026-10, EUR)" in october.output
    assert "230.00" in october.output  # 23000 minor units a day in October


def test_report_says_when_the_insights_service_cannot_be_reached() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = CliRunner().invoke(cli, ["report", "--url", f"http://127.0.0.1:{port}"], env=TOKEN_ENV)

    assert result.exit_code == 1
    assert "cannot read the report" in result.output


async def test_report_sends_no_request_without_a_token_and_says_a_wrong_one_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    # No token in the environment, and no .local/api-token of a `make run` stack to fall back on.
    no_token = {"DEALFLOW_API_TOKEN": "", "DEALFLOW_API_TOKEN_FILE": "", "DEALFLOW_STATE_DIR": str(tmp_path)}
    wrong = TOKEN_ENV | {"DEALFLOW_API_TOKEN": secrets.token_urlsafe(32)}
    (tmp_path / "make-run").mkdir()
    (tmp_path / "make-run" / "api-token").write_text(API_TOKEN + "\n")
    generated = no_token | {"DEALFLOW_STATE_DIR": str(tmp_path / "make-run"), "COLUMNS": "200"}
    async with serving(settings) as url:
        missing = await asyncio.to_thread(CliRunner().invoke, cli, ["report", "--url", url], env=no_token)
        refused = await asyncio.to_thread(CliRunner().invoke, cli, ["report", "--url", url], env=wrong)
        local = await asyncio.to_thread(CliRunner().invoke, cli, ["report", "--url", url], env=generated)

    assert missing.exit_code == 1
    assert "no API token: set DEALFLOW_API_TOKEN or DEALFLOW_API_TOKEN_FILE" in missing.output
    assert refused.exit_code == 1
    assert "cannot read the report" in refused.output
    assert "401" in refused.output
    assert local.exit_code == 0, local.output  # the token `make run` generated, read from its state dir
    assert "Funnel" in local.output


async def test_the_timeline_api_shows_one_deal_across_its_stages(settings: Settings) -> None:
    async with serving(settings) as url, httpx.AsyncClient(base_url=url, headers=AUTHORIZED) as client:
        found = await client.get("/api/timeline", params={"deal_id": "deal-c"})
        missing = await client.get("/api/timeline", params={"deal_id": "no-such-deal"})

    assert found.status_code == 200
    timeline = found.json()
    assert timeline["stage"] == "lost"
    assert [(stay["stage"], stay["entered_at"][:10]) for stay in timeline["stays"]] == [
        ("qualification", "2026-10-03"),
        ("presentation", "2026-10-13"),
        ("lost", "2026-10-23"),
    ]
    assert [entry["event"] for entry in timeline["entries"]][-1] == "deal.lost"
    assert missing.status_code == 404


async def test_a_narrow_terminal_or_a_pipe_cuts_no_figure_and_json_gives_the_same_report(
    settings: Settings,
) -> None:
    async with serving(settings) as url:
        narrow = await asyncio.to_thread(
            CliRunner().invoke, cli, ["report", "--url", url], env={"COLUMNS": "40", **TOKEN_ENV}
        )
        as_json = await asyncio.to_thread(
            CliRunner().invoke, cli, ["report", "--url", url, "--json"], env=TOKEN_ENV
        )
    assert narrow.exit_code == 0, narrow.output
    assert "…" not in narrow.output
    total = next(line for line in narrow.output.splitlines() if line.strip("│┃ ").startswith("total"))
    assert "4,651.00" in total
    assert "3,620.80" in total
    assert "anna.schmidt" in narrow.output
    assert "bant_budget_not_met" in narrow.output
    assert as_json.exit_code == 0, as_json.output
    figures = json.loads(as_json.output)
    assert {"funnel", "forecast"} <= set(figures)
