"""The insights page in headless Chromium, over the known timelines: columns and totals as worked out."""

from __future__ import annotations

import pytest

from shared.settings import Settings
from tests.browser import page_view, rendered_dom
from tests.insights_events import EXPECTED_BOARD
from tests.integration.test_insights_report_cli import serving

pytestmark = pytest.mark.integration


async def test_the_page_shows_each_deal_in_its_stage_column_and_the_forecast_totals(
    settings: Settings,
) -> None:
    async with serving(settings) as url:
        view = page_view(await rendered_dom(f"{url}/"))

    assert view.loaded, "the page never drew a report"
    assert view.columns == EXPECTED_BOARD
    assert view.texts["total-deals"] == "8"
    assert view.texts["total-amount"] == "4,651.00 EUR"  # converted at the playbook's rates
    assert view.texts["total-weighted"] == "3,620.80 EUR"
    assert view.texts["total-stalled"] == "3"
    assert view.month_totals == {"2026-10": "2,300.00", "2026-11": "1,000.80", "unscheduled": "320.00"}
