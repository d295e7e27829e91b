"""The forecast that learns: stage probabilities fitted from closed deals, and the backtest's rule that a
forecast made at a period's end learns only from the deals closed before it.

The deals (2026, new_business, EUR, every event at 09:00):

L1: qualification 2 Jan, presentation 5 Jan, proposal 10 Jan, lost 20 Jan.
L2: qualification 3 Jan, proposal 12 Jan (presentation skipped), lost 25 Jan.
W1: qualification 4 Jan, proposal 15 Jan, negotiation 5 Feb, closing 10 Feb, won 20 Feb, 2,000.00.
W2: qualification 6 Jan, proposal 18 Jan, won 25 Feb, 3,000.00.
X:  qualification 7 Jan, proposal 20 Jan, won 15 Feb, 1,000.00.
Y:  qualification 1 Feb, proposal 20 Feb, still open, 500.00.

At the end of January (1 Feb 00:00) only L1 and L2 had closed: proposal's fitted probability was 0 of 2;
W1, W2 and X were open in proposal (6,000.00), and all three won within 30 days.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.events import Money
from services.insights import domain
from services.insights.config import load_playbook
from services.insights.forecasting import backtest, fitted_probabilities, learned_forecast, snapshot

PLAYBOOK = load_playbook().model_copy(update={"forecast_min_sample": 2, "forecast_horizon_days": 30})
END_OF_JANUARY = datetime(2026, 2, 1, tzinfo=UTC)
END_OF_FEBRUARY = datetime(2026, 3, 1, tzinfo=UTC)


def at(month: int, day_of_month: int) -> datetime:
    return datetime(2026, month, day_of_month, 9, tzinfo=UTC)


def deal(
    deal_id: str, visits: list[tuple[str, datetime]], minor: int = 100_000, **facts: Any
) -> domain.Timeline:
    return domain.Timeline(
        deal_id=deal_id,
        owner="anna.schmidt",
        pipeline="new_business",
        visits=[domain.Visit(stage=stage, entered_at=entered) for stage, entered in visits],
        created_at=visits[0][1],
        amount=Money(amount_minor=minor, currency="EUR"),
        **facts,
    )


DEALS = [
    deal(
        "l1",
        [
            ("qualification", at(1, 2)),
            ("presentation", at(1, 5)),
            ("proposal", at(1, 10)),
            ("lost", at(1, 20)),
        ],
        lost_at=at(1, 20),
    ),
    deal(
        "l2", [("qualification", at(1, 3)), ("proposal", at(1, 12)), ("lost", at(1, 25))], lost_at=at(1, 25)
    ),
    deal(
        "w1",
        [
            ("qualification", at(1, 4)),
            ("proposal", at(1, 15)),
            ("negotiation", at(2, 5)),
            ("closing", at(2, 10)),
            ("won", at(2, 20)),
        ],
        200_000,
        won_at=at(2, 20),
    ),
    deal(
        "w2",
        [("qualification", at(1, 6)), ("proposal", at(1, 18)), ("won", at(2, 25))],
        300_000,
        won_at=at(2, 25),
    ),
    deal(
        "x",
        [("qualification", at(1, 7)), ("proposal", at(1, 20)), ("won", at(2, 15))],
        100_000,
        won_at=at(2, 15),
    ),
    deal("y", [("qualification", at(2, 1)), ("proposal", at(2, 20))], 50_000),
]


def fitted(before: datetime | None = None) -> dict[str, tuple[float | None, int, int, str]]:
    return {
        p.stage: (p.fitted, p.won, p.closed, p.used)
        for p in fitted_probabilities(DEALS, PLAYBOOK, before)
        if p.pipeline == "new_business"
    }


def test_fitted_probabilities_are_the_share_won_of_the_closed_deals_that_reached_each_stage() -> None:
    now = fitted()
    assert now["qualification"] == (0.6, 3, 5, "fitted")  # Y is open: not in the sample
    assert now["presentation"] == (0.6, 3, 5, "fitted")  # L2 skipped it, but reached beyond it
    assert now["proposal"] == (0.6, 3, 5, "fitted")
    # a won deal reached every stage, even one it skipped (W2 and X went from proposal to won)
    assert now["negotiation"] == (1.0, 3, 3, "fitted")
    strict = PLAYBOOK.model_copy(update={"forecast_min_sample": 4})
    [negotiation] = [
        p
        for p in fitted_probabilities(DEALS, strict)
        if (p.pipeline, p.stage) == ("new_business", "negotiation")
    ]
    assert (negotiation.fitted, negotiation.closed, negotiation.used) == (
        1.0,
        3,
        "static",
    )  # below the minimum
    static = {p.stage: p.static for p in fitted_probabilities(DEALS, PLAYBOOK)}
    assert (static["proposal"], static["negotiation"]) == (0.4, 0.6)


def test_probabilities_fitted_at_a_moment_know_only_the_deals_closed_before_it() -> None:
    assert fitted(END_OF_JANUARY)["proposal"] == (0.0, 0, 2, "fitted")  # L1 and L2; the wins came later
    assert fitted(at(1, 22))["proposal"] == (0.0, 0, 1, "static")  # L1 only


def test_the_end_of_january_forecast_is_made_with_what_was_known_then() -> None:
    january = snapshot(DEALS, "2026-01", END_OF_JANUARY, PLAYBOOK)
    assert january.open_deals == 3  # W1, W2, X in proposal; Y was not created yet
    assert january.static_minor == 240_000  # 0.4 x 600,000
    assert january.fitted_minor == 0  # proposal fitted 0/2 then, whatever the later wins say
    assert january.actual_minor == 600_000  # all three won within 30 days
    assert (january.static_error_minor, january.fitted_error_minor) == (-360_000, -600_000)
    assert (january.static_ape, january.fitted_ape) == (0.6, 1.0)
    assert january.static_fallbacks == []


def test_below_the_minimum_sample_the_snapshot_falls_back_to_the_playbook_and_says_so() -> None:
    strict = PLAYBOOK.model_copy(update={"forecast_min_sample": 3})
    january = snapshot(DEALS, "2026-01", END_OF_JANUARY, strict)
    assert january.fitted_minor == january.static_minor == 240_000
    assert january.static_fallbacks == ["new_business/proposal"]


def test_the_backtest_scores_only_periods_whose_horizon_has_passed() -> None:
    now = datetime(2026, 4, 15, tzinfo=UTC)  # 1 Apr + 30 days is still ahead
    snapshots = backtest(DEALS, now, PLAYBOOK)
    assert [(s.period, s.at) for s in snapshots] == [
        ("2026-01", END_OF_JANUARY),
        ("2026-02", END_OF_FEBRUARY),
    ]
    february = snapshots[1]
    # Y alone is open; proposal learned from all five closed deals by then: 3 of 5
    assert (february.open_deals, february.static_minor, february.fitted_minor) == (1, 20_000, 30_000)
    assert (february.actual_minor, february.static_ape, february.fitted_ape) == (0, None, None)
    summary = learned_forecast(DEALS, now, PLAYBOOK).summary
    assert summary.model_dump() == {
        "periods": 2,
        "scored": 1,  # nothing was won after February's end: no percentage error
        "static_mape": 0.6,
        "fitted_mape": 1.0,
        "better": "static",
    }


def test_quarters_end_where_the_months_do() -> None:
    snapshots = backtest(DEALS, datetime(2026, 8, 15, tzinfo=UTC), PLAYBOOK, "quarter")
    assert [(s.period, s.at) for s in snapshots] == [
        ("2026-Q1", datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026-Q2", datetime(2026, 7, 1, tzinfo=UTC)),
    ]


def test_the_backtest_keeps_the_latest_periods_the_playbook_allows() -> None:
    short = PLAYBOOK.model_copy(update={"forecast_backtest_periods": 1})
    [only] = backtest(DEALS, datetime(2026, 4, 15, tzinfo=UTC), short)
    assert only.period == "2026-02"


def test_an_unknown_backtest_period_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown period 'week'"):
        backtest(DEALS, END_OF_FEBRUARY, PLAYBOOK, "week")
