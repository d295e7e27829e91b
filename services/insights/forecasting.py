"""A forecast that learns: each pipeline's stage probabilities fitted from the deals' own closed history,
and a backtest of them against the playbook's static ones.

Fitted probability of a stage, in a pipeline, at a moment: of the deals of that pipeline closed before
the moment (won, lost or disqualified, in the stage they were in just before it) that had reached the
stage (or a later one), the share won. Below the playbook's `forecast_min_sample` closed deals the static
probability is used instead, and the figures say so.

Backtest: at the end of each period (month or quarter) of the history, the forecast as it would have
been made then: the deals open at that moment, each in the stage it was in then, amount x probability,
the fitted probabilities learned only from deals closed before that moment (no look-ahead). Against it:
the won amount of those same deals within `forecast_horizon_days` after it. Only periods whose horizon has
passed are scored. A deal's amount is the one it has now (a timeline keeps no history of its amount).
"""

from __future__ import annotations

import statistics
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel

from services.insights.breakdowns import PERIODS, pipeline_of
from services.insights.config import InsightsPlaybook
from services.insights.domain import (
    CLOSED_WON,
    DISQUALIFIED,
    LOST,
    Timeline,
    converted_minor,
    funnel_rank,
    stage_just_before,
    stays,
    to_minor,
)

Used = Literal["fitted", "static"]


class FittedProbability(BaseModel):
    pipeline: str
    stage: str
    static: float
    fitted: float | None  # None: no closed deal reached it
    won: int
    closed: int  # the sample: closed deals that reached the stage
    used: Used


class Snapshot(BaseModel):
    """What the forecast said at the end of one period, and what those deals then won."""

    period: str
    at: datetime  # the period's end
    open_deals: int
    static_minor: int
    fitted_minor: int
    actual_minor: int  # won by those deals within the horizon
    static_error_minor: int  # forecast - actual
    fitted_error_minor: int
    static_ape: float | None  # |forecast - actual| / actual; None when nothing was won
    fitted_ape: float | None
    static_fallbacks: list[str]  # pipeline/stage whose fitted probability had too small a sample then


class BacktestSummary(BaseModel):
    periods: int
    scored: int  # periods with something won: a percentage error needs a non-zero actual
    static_mape: float | None
    fitted_mape: float | None
    better: Literal["fitted", "static", "even"] | None


class LearnedForecast(BaseModel):
    reporting_currency: str
    period: str
    horizon_days: int
    min_sample: int
    probabilities: list[FittedProbability]
    snapshots: list[Snapshot]
    summary: BacktestSummary


@dataclass(frozen=True)
class _Deal:
    """What the forecast needs of one timeline, worked out once for every moment it is asked about."""

    timeline: Timeline
    pipeline: str
    stay_starts: list[datetime]
    stay_stages: list[str]
    visit_ranks: list[tuple[datetime, int]]
    amount: Decimal | None

    def stage_before(self, moment: datetime | None) -> str | None:
        """Its stage just before `moment` (now: None), as `domain.stage_just_before` tells it."""
        if moment is None:
            return self.stay_stages[-1] if self.stay_stages else None
        if self.timeline.folded.until is not None and moment <= self.timeline.folded.until:
            return stage_just_before(self.timeline, moment)  # among folded stays: known at month ends
        index = bisect_left(self.stay_starts, moment)
        return self.stay_stages[index - 1] if index else None

    def furthest_rank_before(self, moment: datetime | None) -> int | None:
        ranks = [rank for entered, rank in self.visit_ranks if moment is None or entered < moment]
        return max(ranks) if ranks else None


def _deals(timelines: Sequence[Timeline], playbook: InsightsPlaybook) -> list[_Deal]:
    rank_of = funnel_rank(playbook)
    deals = []
    for timeline in timelines:
        all_stays = stays(timeline)
        visits = [*timeline.folded.first_entered, *timeline.visits]
        deals.append(
            _Deal(
                timeline=timeline,
                pipeline=pipeline_of(timeline, playbook),
                stay_starts=[stay.entered_at for stay in all_stays],
                stay_stages=[stay.stage for stay in all_stays],
                visit_ranks=[(v.entered_at, rank_of[v.stage]) for v in visits if v.stage in rank_of],
                amount=converted_minor(timeline, playbook),
            )
        )
    return deals


def _fitted(
    deals: Sequence[_Deal], playbook: InsightsPlaybook, before: datetime | None
) -> list[FittedProbability]:
    rank_of = funnel_rank(playbook)
    furthest: dict[str, list[tuple[bool, int]]] = defaultdict(list)  # pipeline -> (won, furthest rank)
    for deal in deals:
        stage = deal.stage_before(before)
        if stage not in CLOSED_WON and stage not in (LOST, DISQUALIFIED):
            continue
        rank = deal.furthest_rank_before(before)
        if rank is not None:
            furthest[deal.pipeline].append((stage in CLOSED_WON, rank))
    fitted = []
    for pipeline, stages in playbook.pipelines.items():
        for stage in stages:
            reached = [won for won, rank in furthest[pipeline] if rank >= rank_of[stage]]
            won = sum(reached)
            fitted.append(
                FittedProbability(
                    pipeline=pipeline,
                    stage=stage,
                    static=float(playbook.stage_probability[stage]),
                    fitted=round(won / len(reached), 4) if reached else None,
                    won=won,
                    closed=len(reached),
                    used="fitted" if len(reached) >= playbook.forecast_min_sample else "static",
                )
            )
    return fitted


def fitted_probabilities(
    timelines: Sequence[Timeline], playbook: InsightsPlaybook, before: datetime | None = None
) -> list[FittedProbability]:
    """Every pipeline's open stages, in order, fitted from the deals closed before `before` (None: now)."""
    return _fitted(_deals(timelines, playbook), playbook, before)


def _period_ends(start: datetime, last: datetime, period: str) -> list[tuple[str, datetime]]:
    """(the period's name, its end) for every period from the one holding `start` whose end is by `last`."""
    months = 1 if period == "month" else 3
    utc = start.astimezone(UTC)
    year, month = utc.year, utc.month - (utc.month - 1) % months
    ends: list[tuple[str, datetime]] = []
    while True:
        name = f"{year}-{month:02d}" if period == "month" else f"{year}-Q{(month - 1) // 3 + 1}"
        year, month = year + (month - 1 + months) // 12, (month - 1 + months) % 12 + 1
        end = datetime(year, month, 1, tzinfo=UTC)
        if end > last:
            return ends
        ends.append((name, end))


def _ape(forecast: Decimal, actual: Decimal) -> float | None:
    return None if actual == 0 else round(float(abs(forecast - actual) / actual), 4)


def snapshot(
    timelines: Sequence[Timeline], period: str, at: datetime, playbook: InsightsPlaybook
) -> Snapshot:
    """The forecast as made at `at`, with only what was known then, against what its deals won after."""
    return _snapshot(_deals(timelines, playbook), period, at, playbook)


def _snapshot(deals: Sequence[_Deal], period: str, at: datetime, playbook: InsightsPlaybook) -> Snapshot:
    learned = {(p.pipeline, p.stage): p for p in _fitted(deals, playbook, at)}
    horizon_end = at + timedelta(days=playbook.forecast_horizon_days)
    static = fitted = actual = Decimal(0)
    opened, fallbacks = 0, set()
    for deal in deals:
        stage = deal.stage_before(at)
        if stage is None or stage not in playbook.stage_probability:
            continue
        opened += 1
        if deal.amount is None:
            continue
        static_probability = playbook.stage_probability[stage]
        known = learned.get((deal.pipeline, stage))
        if known is not None and known.used == "fitted" and known.fitted is not None:
            probability = Decimal(str(known.fitted))
        else:
            probability = static_probability
            fallbacks.add(f"{deal.pipeline}/{stage}")
        static += deal.amount * static_probability
        fitted += deal.amount * probability
        won_at = deal.timeline.won_at
        if won_at is not None and at <= won_at < horizon_end:
            actual += deal.amount
    return Snapshot(
        period=period,
        at=at,
        open_deals=opened,
        static_minor=to_minor(static),
        fitted_minor=to_minor(fitted),
        actual_minor=to_minor(actual),
        static_error_minor=to_minor(static - actual),
        fitted_error_minor=to_minor(fitted - actual),
        static_ape=_ape(static, actual),
        fitted_ape=_ape(fitted, actual),
        static_fallbacks=sorted(fallbacks),
    )


def backtest(
    timelines: Sequence[Timeline], now: datetime, playbook: InsightsPlaybook, period: str = "month"
) -> list[Snapshot]:
    """A snapshot at each period end from the first deal's creation on whose horizon has passed by `now`;
    the latest `forecast_backtest_periods` of them."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}: use one of {', '.join(PERIODS)}")
    starts = [
        moment
        for timeline in timelines
        for moment in (timeline.created_at, *(visit.entered_at for visit in timeline.visits[:1]))
        if moment is not None
    ]
    if not starts:
        return []
    last = now - timedelta(days=playbook.forecast_horizon_days)
    ends = _period_ends(min(starts), last, period)[-playbook.forecast_backtest_periods :]
    deals = _deals(timelines, playbook)
    return [_snapshot(deals, name, at, playbook) for name, at in ends]


def _mape(errors: Sequence[float | None]) -> float | None:
    known = [error for error in errors if error is not None]
    return round(statistics.fmean(known), 4) if known else None


def summary(snapshots: Sequence[Snapshot]) -> BacktestSummary:
    static = _mape([s.static_ape for s in snapshots])
    fitted = _mape([s.fitted_ape for s in snapshots])
    better: Literal["fitted", "static", "even"] | None = None
    if static is not None and fitted is not None:
        better = "fitted" if fitted < static else "static" if static < fitted else "even"
    return BacktestSummary(
        periods=len(snapshots),
        scored=sum(1 for s in snapshots if s.static_ape is not None),
        static_mape=static,
        fitted_mape=fitted,
        better=better,
    )


def learned_forecast(
    timelines: Sequence[Timeline], now: datetime, playbook: InsightsPlaybook, period: str = "month"
) -> LearnedForecast:
    snapshots = backtest(timelines, now, playbook, period)
    return LearnedForecast(
        reporting_currency=playbook.reporting_currency,
        period=period,
        horizon_days=playbook.forecast_horizon_days,
        min_sample=playbook.forecast_min_sample,
        probabilities=fitted_probabilities(timelines, playbook),
        snapshots=snapshots,
        summary=summary(snapshots),
    )
