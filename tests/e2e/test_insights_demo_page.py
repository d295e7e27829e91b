"""The demo through all five services, then the insights page in headless Chromium: the demo's deals in
their columns and the forecast totals the demo's quotes give."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from cli import demo
from shared.settings import Settings
from tests.browser import page_view, rendered_dom
from tests.e2e.processes import service_processes

pytestmark = pytest.mark.e2e

API_TOKEN = secrets.token_urlsafe(32)

# Three deals won at 1,580,000 minor units each (10 platform licences at 10% off plus the onboarding
# package): EUR 1,580,000 + USD 1,580,000 x 0.92 + GBP 1,580,000 x 1.17 = 4,882,200 EUR minor units.
# The expansion deal acme's onboarding opened has no amount yet; lost and disqualified deals are out.
DEMO_BOARD = {
    "qualification": ["lead-acme-001-x1"],
    "nurture": [],
    "presentation": [],
    "proposal": [],
    "negotiation": [],
    "closing": [],
    "won": [],
    "onboarding": ["lead-globex-002", "lead-initech-003"],
    "live": ["lead-acme-001"],
    "lost": ["lead-umbrella-004"],
    "disqualified": ["lead-hooli-005"],
}


@pytest.fixture
def five_services(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    # The processes get the token by DEALFLOW_API_TOKEN, as `settings.environment()` passes it on.
    settings = settings.model_copy(update={"api_token": SecretStr(API_TOKEN), "api_token_file": None})
    with service_processes(settings, tmp_path) as ports:
        yield settings, f"http://127.0.0.1:{ports['insights']}"


def board_of(report: dict[str, Any]) -> dict[str, list[str]]:
    return {stage: sorted(card["deal_id"] for card in cards) for stage, cards in report["board"].items()}


async def report_when(url: str, done: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=10, headers={"authorization": f"Bearer {API_TOKEN}"}) as client:
        while True:
            try:
                report: dict[str, Any] = (await client.get(f"{url}/api/report")).json()
            except httpx.TransportError:
                report = {}
            if (report and done(report)) or time.monotonic() >= deadline:
                return report
            await asyncio.sleep(1)


async def test_the_page_shows_the_demos_deals_in_their_columns_and_the_right_totals(
    five_services: tuple[Settings, str],
) -> None:
    settings, url = five_services
    before = await report_when(url, lambda report: True)
    assert before["deals"] == 0

    outcome = await demo.run_demo(settings, timeout=180)
    assert outcome.all_reached, demo.report(outcome)
    report = await report_when(url, lambda report: board_of(report) == DEMO_BOARD)
    assert board_of(report) == DEMO_BOARD

    view = page_view(await rendered_dom(f"{url}/?token={quote(API_TOKEN, safe='')}"))
    assert view.loaded, "the page never drew a report"
    assert {stage: sorted(ids) for stage, ids in view.columns.items()} == DEMO_BOARD
    assert view.texts["total-deals"] == "6"
    assert view.texts["total-amount"] == "48,822.00 EUR"
    assert view.texts["total-weighted"] == "48,822.00 EUR"
    assert view.texts["total-stalled"] == "0"
