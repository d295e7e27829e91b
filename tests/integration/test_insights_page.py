"""The insights page in headless Chromium, over the known timelines: columns and totals as worked out, once
the browser has signed in with the token; nothing without it."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from shared.settings import Settings
from tests.browser import page_view, rendered_dom
from tests.insights_events import EXPECTED_BOARD
from tests.integration.test_insights_report_cli import API_TOKEN, serving

pytestmark = pytest.mark.integration


async def test_the_page_shows_each_deal_in_its_stage_column_and_the_forecast_totals(
    settings: Settings,
) -> None:
    # Opened as `make run` prints it: the token in the URL sets the session cookie, the redirect drops
    # the token, and the page's own requests to the report API carry the cookie.
    async with serving(settings) as url:
        view = page_view(await rendered_dom(f"{url}/?token={quote(API_TOKEN, safe='')}"))

    assert view.loaded, "the page never drew a report"
    # The open columns list the longest in the stage first; the ended ones their latest deal first.
    ended = {"won", "onboarding", "live", "lost", "disqualified"}
    assert view.columns == {
        stage: list(reversed(ids)) if stage in ended else ids for stage, ids in EXPECTED_BOARD.items()
    }
    assert view.texts["total-deals"] == "8"
    assert view.texts["total-amount"] == "4,651.00 EUR"  # converted at the playbook's rates
    assert view.texts["total-weighted"] == "3,620.80 EUR"
    assert view.texts["total-stalled"] == "3"
    assert view.month_totals == {"2026-10": "2,300.00", "2026-11": "1,000.80", "unscheduled": "320.00"}


async def test_the_page_shows_no_deal_to_a_browser_without_the_token(settings: Settings) -> None:
    async with serving(settings) as url:
        unsigned = await rendered_dom(f"{url}/")
        wrong = await rendered_dom(f"{url}/?token=not-the-token-at-all")

    for dom in (unsigned, wrong):
        view = page_view(dom)
        assert not view.loaded
        assert view.columns == {}
        assert "deal-a" not in dom
        assert "unauthorized" in dom  # the JSON refusal, as the browser shows it
