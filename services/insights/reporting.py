"""The whole report `/api/report` answers: the board, funnel, forecast and bottlenecks of `domain.report`,
with the breakdown asked for and the forecast that learns from the deals' closed history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.insights import domain
from services.insights.breakdowns import Breakdown, breakdown
from services.insights.config import InsightsPlaybook
from services.insights.forecasting import LearnedForecast, learned_forecast


class Report(domain.Report):
    breakdown: Breakdown
    learned_forecast: LearnedForecast


def report(
    timelines: Sequence[domain.Timeline],
    now: datetime,
    playbook: InsightsPlaybook,
    bottlenecks: str | None = None,
    by: str | None = None,
    period: str | None = None,
) -> Report:
    """`bottlenecks`: one period's bottlenecks only (`all` or YYYY-MM); `by` and `period` (month or
    quarter): the breakdown's grouping, and the backtest's period (month without one)."""
    figures = breakdown(timelines, playbook, by, period)
    base = domain.report(timelines, now, playbook, period=bottlenecks)
    return Report(
        **dict(base),
        breakdown=figures,
        learned_forecast=learned_forecast(timelines, now, playbook, period or "month"),
    )
