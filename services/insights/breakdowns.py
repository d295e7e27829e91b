"""Breakdowns: win rate, won amount, cycle length and each stage's conversion and time, grouped by a
dimension of the deals (owner, team, product, ...) and by the period of their close; and the open pipeline
by stage. Pure functions of the timelines, the playbook and nothing else: every time is business time (an
imported deal's history counts when it happened, not when it was imported).

Which deals a figure counts:

- win rate: the wins and losses (each cycle's loss of a reopened deal counts) in the row's period;
- won amount: the row's wins, converted to the reporting currency as the forecast converts;
- cycle (won deals only, the usual sales-cycle definition): days from the deal's creation to its win, and
  from its first engagement (qualification; an import's engaged_at) to its win, median and p90;
- stages: the row's closed deals (won, or lost and not reopened since) as a cohort: of those that reached
  a stage (or a later one), how many went further, and how long their stays in it lasted. Only closed
  deals: an open deal has not had its chance to go further yet.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise

from pydantic import BaseModel

from services.insights.config import UNKNOWN_TEAM, InsightsPlaybook
from services.insights.domain import (
    SECONDS_PER_DAY,
    Timeline,
    converted_minor,
    current_stage,
    funnel_stages,
    losses,
    month_of,
    p90,
    reached_at,
    stays,
    to_minor,
)

DIMENSIONS = (
    "owner",
    "team",
    "manager",
    "region",
    "product",
    "source",
    "pipeline",
    "industry",
    "country",
    "origin",
)
PERIODS = ("month", "quarter")
EVERYTHING = "all"  # the group or the period of a breakdown without one
UNKNOWN = "unknown"
LIVE_ORIGIN = "live"  # a deal born in dealflow, not imported


class UnknownDimension(ValueError):
    """A dimension or period the breakdowns do not know; the message lists those they do."""


def check(by: str | None, period: str | None) -> None:
    if by is not None and by not in DIMENSIONS:
        raise UnknownDimension(f"unknown dimension {by!r}: use one of {', '.join(DIMENSIONS)}")
    if period is not None and period not in PERIODS:
        raise UnknownDimension(f"unknown period {period!r}: use one of {', '.join(PERIODS)}")


def team_of(timeline: Timeline, playbook: InsightsPlaybook) -> str:
    return timeline.team or playbook.team_of(timeline.owner)


def pipeline_of(timeline: Timeline, playbook: InsightsPlaybook) -> str:
    """Its pipeline; a deal not qualified yet is in the default one, as qualification would place it."""
    return timeline.pipeline or playbook.default_pipeline or UNKNOWN


def dimension_of(timeline: Timeline, dimension: str | None, playbook: InsightsPlaybook) -> str:
    """The deal's value of `dimension`: an import's own, else what the playbook says of its owner."""
    if dimension is None:
        return EVERYTHING
    team = team_of(timeline, playbook)
    values: dict[str, Callable[[], str | None]] = {
        "owner": lambda: timeline.owner,
        "team": lambda: None if team == UNKNOWN_TEAM else team,
        "manager": lambda: timeline.manager or playbook.team_manager.get(team),
        "region": lambda: timeline.region or playbook.team_region.get(team),
        "product": lambda: timeline.product,
        "source": lambda: timeline.lead_source,
        "pipeline": lambda: pipeline_of(timeline, playbook),
        "industry": lambda: timeline.industry,
        "country": lambda: timeline.country,
        "origin": lambda: timeline.imported_from or LIVE_ORIGIN,
    }
    return values[dimension]() or UNKNOWN


def period_of(moment: datetime, period: str | None) -> str:
    """YYYY-MM, YYYY-Qn (UTC), or `all` without a period."""
    if period is None:
        return EVERYTHING
    if period == "month":
        return month_of(moment)
    utc = moment.astimezone(UTC)
    return f"{utc.year}-Q{(utc.month - 1) // 3 + 1}"


class CycleFigures(BaseModel):
    deals: int  # won deals with the start known
    median_days: float | None
    p90_days: float | None


class StageFigures(BaseModel):
    stage: str
    reached: int
    went_further: int
    conversion: float | None
    stays: int
    median_days: float | None
    p90_days: float | None


class BreakdownRow(BaseModel):
    group: str
    period: str
    won: int
    lost: int
    win_rate: float | None
    won_amount_minor: int
    cycle_from_creation: CycleFigures
    cycle_from_engagement: CycleFigures
    stages: list[StageFigures]


class OpenStage(BaseModel):
    stage: str
    deals: int
    amount_minor: int


class OpenPipeline(BaseModel):
    group: str
    deals: int
    amount_minor: int
    stages: list[OpenStage]


class Breakdown(BaseModel):
    by: str | None
    period: str | None
    reporting_currency: str
    closed: list[BreakdownRow]
    open_pipeline: list[OpenPipeline]
    unconverted_currencies: list[str]


def _days(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / SECONDS_PER_DAY


def _spread(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return round(statistics.median(values), 2), round(p90(values), 2)


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def cycle(won: Sequence[Timeline], start: Callable[[Timeline], datetime | None]) -> CycleFigures:
    """Days from `start` to the win of each won deal that has a start at or before its win."""
    durations = [
        _days(begun, timeline.won_at)
        for timeline in won
        if timeline.won_at is not None and (begun := start(timeline)) is not None and begun <= timeline.won_at
    ]
    median, high = _spread(durations)
    return CycleFigures(deals=len(durations), median_days=median, p90_days=high)


def stage_figures(cohort: Sequence[Timeline], playbook: InsightsPlaybook) -> list[StageFigures]:
    """Per open stage: of the cohort's deals that reached it, how many reached the next one, and their
    stays in it (a stay still under way is not timelines; folded stays count at their mean length)."""
    durations: dict[str, list[float]] = defaultdict(list)
    for timeline in cohort:
        for stay in stays(timeline):
            if stay.left_at is not None:
                durations[stay.stage].append(_days(stay.entered_at, stay.left_at))
        for folded in timeline.folded.stays:
            if folded.stays == 0:  # only time added to stays counted elsewhere
                continue
            durations[folded.stage].extend([folded.seconds / folded.stays / SECONDS_PER_DAY] * folded.stays)
    figures = []
    for stage, next_stage in pairwise(funnel_stages(playbook)):
        reached = [timeline for timeline in cohort if reached_at(timeline, stage, playbook) is not None]
        further = sum(1 for timeline in reached if reached_at(timeline, next_stage, playbook) is not None)
        median, high = _spread(durations[stage])
        figures.append(
            StageFigures(
                stage=stage,
                reached=len(reached),
                went_further=further,
                conversion=_ratio(further, len(reached)),
                stays=len(durations[stage]),
                median_days=median,
                p90_days=high,
            )
        )
    return figures


def _row(
    group: str,
    period: str,
    won: Sequence[Timeline],
    lost: int,
    cohort: Sequence[Timeline],
    playbook: InsightsPlaybook,
) -> BreakdownRow:
    amounts = [amount for timeline in won if (amount := converted_minor(timeline, playbook)) is not None]
    return BreakdownRow(
        group=group,
        period=period,
        won=len(won),
        lost=lost,
        win_rate=_ratio(len(won), len(won) + lost),
        won_amount_minor=to_minor(sum(amounts, Decimal(0))),
        cycle_from_creation=cycle(won, lambda timeline: timeline.created_at),
        cycle_from_engagement=cycle(won, lambda timeline: timeline.engaged_at),
        stages=stage_figures(cohort, playbook),
    )


def closed_rows(
    timelines: Sequence[Timeline], by: str | None, period: str | None, playbook: InsightsPlaybook
) -> list[BreakdownRow]:
    """One row per group and period of close that has a win or a loss, by group then period."""
    won: dict[tuple[str, str], list[Timeline]] = defaultdict(list)
    lost: dict[tuple[str, str], int] = defaultdict(int)
    cohort: dict[tuple[str, str], list[Timeline]] = defaultdict(list)
    for timeline in timelines:
        group = dimension_of(timeline, by, playbook)
        if timeline.won_at is not None:
            key = (group, period_of(timeline.won_at, period))
            won[key].append(timeline)
            cohort[key].append(timeline)
        for loss in losses(timeline):
            lost[(group, period_of(loss.at, period))] += 1
        if timeline.lost_at is not None and timeline.won_at is None:
            cohort[(group, period_of(timeline.lost_at, period))].append(timeline)
    keys = sorted({*won, *lost})
    return [
        _row(group, when, won[(group, when)], lost[(group, when)], cohort[(group, when)], playbook)
        for group, when in keys
    ]


def open_pipeline(
    timelines: Sequence[Timeline], by: str | None, playbook: InsightsPlaybook
) -> list[OpenPipeline]:
    """The deals open now, per group and stage (the playbook's order): how many, and their amounts in the
    reporting currency (a deal without an amount, or without a rate, counts as a deal only)."""
    groups: dict[str, dict[str, list[Timeline]]] = defaultdict(lambda: defaultdict(list))
    for timeline in timelines:
        stage = current_stage(timeline)
        if stage in playbook.stage_probability:
            groups[dimension_of(timeline, by, playbook)][stage].append(timeline)
    answer = []
    for group in sorted(groups):
        per_stage = [
            OpenStage(
                stage=stage,
                deals=len(groups[group][stage]),
                amount_minor=_amount(groups[group][stage], playbook),
            )
            for stage in playbook.open_stages
            if groups[group][stage]
        ]
        answer.append(
            OpenPipeline(
                group=group,
                deals=sum(stage.deals for stage in per_stage),
                amount_minor=sum(stage.amount_minor for stage in per_stage),
                stages=per_stage,
            )
        )
    return answer


def _amount(timelines: Sequence[Timeline], playbook: InsightsPlaybook) -> int:
    amounts = [
        amount for timeline in timelines if (amount := converted_minor(timeline, playbook)) is not None
    ]
    return to_minor(sum(amounts, Decimal(0)))


def breakdown(
    timelines: Sequence[Timeline],
    playbook: InsightsPlaybook,
    by: str | None = None,
    period: str | None = None,
) -> Breakdown:
    """The closed figures by `by` and `period` (none: one group, all time), and the open pipeline by `by`."""
    check(by, period)
    return Breakdown(
        by=by,
        period=period,
        reporting_currency=playbook.reporting_currency,
        closed=closed_rows(timelines, by, period, playbook),
        open_pipeline=open_pipeline(timelines, by, playbook),
        unconverted_currencies=sorted(
            {
                timeline.amount.currency
                for timeline in timelines
                if timeline.amount is not None and timeline.amount.currency not in playbook.rate_to_reporting
            }
        ),
    )
