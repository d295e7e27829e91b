"""Insights rules: every deal's timeline across the stages, and the reports read from the timelines.

A timeline is built from the events the stage services publish. Events of one deal arrive on several
topics, whose relative order Kafka does not keep, so the timeline is ordered by the times the events carry
(their own timestamp, else when they were published): the same events in any order give the same
timeline, and so does a replay.

Reports are pure functions of a list of timelines, the playbook and `now`.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from math import ceil

from pydantic import BaseModel

from contracts.currencies import exponent
from contracts.events import (
    DeadlineReached,
    DealCorrected,
    DealImported,
    DealLost,
    DealNextStepSet,
    DealOwnerChanged,
    DealReopened,
    DealStageChanged,
    DealStalled,
    DealWon,
    ExpansionDealOpened,
    LeadDisqualified,
    LeadMerged,
    LeadNurtured,
    LeadQualified,
    Money,
    NextStep,
    NextStepMissing,
    NextStepOverdue,
    NextStepScheduled,
    OnboardingCompleted,
    OnboardingStarted,
    ProspectIdentified,
    QualificationReopened,
    QuoteExpired,
    QuoteIssued,
    SlaBreached,
)
from services.insights.config import ForecastCategory, InsightsPlaybook, Limits
from shared.domain import Deadline, Decision, pending_by_id

NURTURE = "nurture"
WON = "won"
ONBOARDING = "onboarding"
LIVE = "live"
LOST = "lost"
DISQUALIFIED = "disqualified"
CLOSED_WON = frozenset({WON, ONBOARDING, LIVE})
UNSCHEDULED = "unscheduled"
ALL_TIME = "all"
SECONDS_PER_DAY = 86_400
STALLED = "stalled"  # the deadline of a stall, keyed by the stage and the deal's last progress


class Visit(BaseModel):
    stage: str
    entered_at: datetime


class Entry(BaseModel):
    """One line of a deal's timeline."""

    at: datetime
    event: str
    detail: str


class FoldedStays(BaseModel):
    """The folded stays in one stage that ended in one month: how many, and how long in all."""

    stage: str
    month: str
    stays: int
    seconds: float


class Folded(BaseModel):
    """What the reports still need of the oldest stage visits, folded out of a timeline's `visits`.

    Exact: how many stays each stage had per month and how long they lasted in all, when the deal first
    entered each stage, the months in which it entered one, and its stage at each month's end. A median
    or p90 counts the folded stays of one stage and month as equally long. A visit that arrives late is
    placed exactly when it is older than every visit (a replay may bring the first one last); one that
    falls between folded visits is counted, but splits no folded stay.
    """

    visits: int = 0
    until: datetime | None = None  # every folded visit entered before this; the kept visits start here
    first: Visit | None = None  # the earliest folded visit: the deal's first stay began there
    first_left_at: datetime | None = None  # and ended here
    first_entered: list[Visit] = []  # per stage
    months: list[str] = []
    stays: list[FoldedStays] = []
    stage_at_month_end: dict[str, str] = {}  # YYYY-MM -> stage


class Loss(BaseModel):
    """An earlier cycle's loss of a deal reopened since."""

    at: datetime
    reason: str | None = None
    competitor: str | None = None


class Timeline(BaseModel):
    deal_id: str
    owner: str | None = None
    company: str | None = None
    amount: Money | None = None
    expected_close_date: date | None = None
    expansion_of: str | None = None
    visits: list[Visit] = []
    won_at: datetime | None = None
    lost_at: datetime | None = None
    loss_reason: str | None = None
    competitor: str | None = None
    disqualified_at: datetime | None = None
    disqualification_reason: str | None = None
    next_step: NextStep | None = None
    next_step_at: datetime | None = None  # when it was scheduled: a later stage makes it stale
    last_progress_at: datetime | None = None
    stall_raised: str | None = None  # the key of the stall raised last: once per stage and progress
    owner_at: datetime | None = None  # when deal.owner_changed last gave it its owner: older events do not
    corrected_at: dict[str, datetime] = {}  # amount / expected_close_date -> the latest correction's time
    cycle: int = 1  # one more each time the lost deal is reopened
    earlier_losses: list[Loss] = []  # the losses of the cycles before a reopening
    overdue_step: NextStep | None = None  # the next step deal.next_step_overdue raised last
    next_step_missing_at: datetime | None = None  # when deal.next_step_missing was raised last
    entries: list[Entry] = []  # the newest limits.timeline_entries
    entries_folded: int = 0  # older entries, counted only
    folded: Folded = Folded()  # the oldest visits beyond limits.stage_visits
    # What reports group by. A live deal's team, manager and region are its owner's in the playbook's
    # teams (read when reporting); an imported deal's are the export's when it had them.
    pipeline: str | None = None
    team: str | None = None
    manager: str | None = None
    region: str | None = None
    product: str | None = None
    lead_source: str | None = None
    industry: str | None = None
    country: str | None = None
    created_at: datetime | None = None  # the business time of its earliest event, or the export's creation
    engaged_at: datetime | None = None  # qualified (the discovery call), or the export's first engagement
    imported_from: str | None = None  # the CRM an import brought it from; None: it was born live here
    imported_as_of: datetime | None = None
    late_in_history: int = 0  # deadlines that fell due before its import: recorded late, paged nobody


class Stay(BaseModel):
    """A deal's time in one stage; `left_at` is None while it is still there."""

    stage: str
    entered_at: datetime
    left_at: datetime | None


def stays(timeline: Timeline) -> list[Stay]:
    """The deal's stages in time order, a repeated stage merged into one stay."""
    ordered = sorted(timeline.visits, key=lambda visit: visit.entered_at)
    distinct = [
        visit for index, visit in enumerate(ordered) if index == 0 or ordered[index - 1].stage != visit.stage
    ]
    return [
        Stay(
            stage=visit.stage,
            entered_at=visit.entered_at,
            left_at=distinct[index + 1].entered_at if index + 1 < len(distinct) else None,
        )
        for index, visit in enumerate(distinct)
    ]


def funnel_stages(playbook: InsightsPlaybook) -> tuple[str, ...]:
    """The playbook's open stages (every pipeline's, in order), then won."""
    return (*playbook.open_stages, WON)


def board_columns(playbook: InsightsPlaybook) -> tuple[str, ...]:
    stages = playbook.open_stages
    return (stages[0], NURTURE, *stages[1:], WON, ONBOARDING, LIVE, LOST, DISQUALIFIED)


def funnel_rank(playbook: InsightsPlaybook) -> dict[str, int]:
    """How far along the funnel a stage is: a deal that reached a stage has reached every earlier one,
    even when it skipped some (a quote sent during the presentation goes straight to negotiation)."""
    stages = funnel_stages(playbook)
    ranks = {stage: rank for rank, stage in enumerate(stages)}
    return ranks | {NURTURE: 0, ONBOARDING: ranks[WON], LIVE: ranks[WON]}


def current_stage(timeline: Timeline) -> str | None:
    all_stays = stays(timeline)
    return all_stays[-1].stage if all_stays else None


def furthest_rank(timeline: Timeline, playbook: InsightsPlaybook) -> int | None:
    rank_of = funnel_rank(playbook)
    visits = [*timeline.folded.first_entered, *timeline.visits]
    ranks = [rank_of[visit.stage] for visit in visits if visit.stage in rank_of]
    return max(ranks) if ranks else None


# --- building the timeline -------------------------------------------------------------------------


def _record(
    timeline: Timeline | None,
    deal_id: str,
    at: datetime,
    event: str,
    detail: str,
    *,
    limits: Limits,
    stage: str | None = None,
    entered: Sequence[Visit] = (),
    progress: bool = False,
    facts: Mapping[str, object] | None = None,
) -> Timeline:
    """The timeline with one more entry; `stage` is entered at `at` (and each of `entered` at its time,
    for an event that brings a history); `progress` resets the stall clock.

    It keeps within the playbook's limits: the oldest entries and stays beyond them are folded.
    """
    current = timeline or Timeline(deal_id=deal_id)
    visits, folded = current.visits, current.folded
    arriving = [*entered, *([] if stage is None else [Visit(stage=stage, entered_at=at)])]
    for visit in arriving:
        if any(v.stage == visit.stage and v.entered_at == visit.entered_at for v in visits):
            continue
        if folded.until is not None and visit.entered_at < folded.until:
            folded = _fold_late_visit(folded, visit)
        else:
            visits = sorted([*visits, visit], key=lambda known: known.entered_at)
        if len(visits) > limits.stage_visits:
            visits, folded = _fold_visits(visits, folded, limits.stage_visits)
    last_progress = current.last_progress_at
    if progress or arriving:
        last_progress = at if last_progress is None else max(last_progress, at)
    entries = sorted([*current.entries, Entry(at=at, event=event, detail=detail)], key=lambda entry: entry.at)
    entries_folded = current.entries_folded + max(0, len(entries) - limits.timeline_entries)
    updates = {**(facts or {})}
    # A deal was created at its first event and engaged at its first engagement, whichever arrives first.
    updates["created_at"] = _earliest(current.created_at, at, updates.get("created_at"))
    updates["engaged_at"] = _earliest(current.engaged_at, updates.get("engaged_at"))
    return current.model_copy(
        update={
            "visits": visits,
            "folded": folded,
            "last_progress_at": last_progress,
            "entries": entries[-limits.timeline_entries :],
            "entries_folded": entries_folded,
            **updates,
        }
    )


def _earliest(*moments: object) -> datetime | None:
    known = [moment for moment in moments if isinstance(moment, datetime)]
    return min(known) if known else None


def _known(**dimensions: object) -> dict[str, object]:
    """The dimensions an event names; one it leaves out keeps what the timeline has."""
    return {name: value for name, value in dimensions.items() if value is not None}


def _fold_visits(visits: list[Visit], folded: Folded, limit: int) -> tuple[list[Visit], Folded]:
    """Fold the oldest stays, whole, until at most `limit` visits are left; the current stay is kept."""
    runs: list[list[Visit]] = []  # a stay: consecutive visits of one stage
    for visit in visits:
        if runs and runs[-1][0].stage == visit.stage:
            runs[-1].append(visit)
        else:
            runs.append([visit])
    left = len(visits)
    while left > limit and len(runs) > 1:
        stay, runs = runs[0], runs[1:]
        left_at = runs[0][0].entered_at
        folded = _add_stay(folded, stay[0].stage, stay[0].entered_at, left_at)
        if folded.first is None or stay[0].entered_at < folded.first.entered_at:
            folded = folded.model_copy(update={"first": stay[0], "first_left_at": left_at})
        for visit in stay:
            folded = _count_visit(folded, visit)
        folded = folded.model_copy(update={"until": left_at})
        left -= len(stay)
    if left > limit:  # one long stay: its later visits change no stay, only the periods
        current = runs[0]
        redundant, kept = current[1 : 1 + left - limit], [current[0], *current[1 + left - limit :]]
        for visit in redundant:
            folded = _count_visit(folded, visit)
        runs = [kept]
    return [visit for run in runs for visit in run], folded


def _fold_late_visit(folded: Folded, visit: Visit) -> Folded:
    """A visit older than every kept one: before the first folded one it starts (or extends) the first
    stay; between folded ones it is only counted."""
    first, first_left_at = folded.first, folded.first_left_at
    if first is None or first_left_at is None:
        return _count_visit(folded, visit)
    if visit == first:
        return folded  # the same visit again
    if visit.entered_at < first.entered_at:
        if visit.stage == first.stage:
            folded = _extend_stay(folded, first.stage, visit.entered_at, first.entered_at, first_left_at)
        else:
            folded = _add_stay(folded, visit.stage, visit.entered_at, first.entered_at)
            first_left_at = first.entered_at
        folded = folded.model_copy(update={"first": visit, "first_left_at": first_left_at})
    return _count_visit(folded, visit)


def _add_stay(folded: Folded, stage: str, entered_at: datetime, left_at: datetime) -> Folded:
    return _extend_stay(folded, stage, entered_at, entered_at, left_at, new_stay=True)


def _extend_stay(
    folded: Folded,
    stage: str,
    entered_at: datetime,
    was_entered_at: datetime,
    left_at: datetime,
    *,
    new_stay: bool = False,
) -> Folded:
    """Count the time from `entered_at` to `was_entered_at` (or, for a new stay, to `left_at`) in the
    folded stay of `stage` that ended at `left_at`."""
    until = left_at if new_stay else was_entered_at
    month = month_of(left_at)
    bucket = next(
        (b for b in folded.stays if (b.stage, b.month) == (stage, month)),
        FoldedStays(stage=stage, month=month, stays=0, seconds=0),
    )
    bucket = bucket.model_copy(
        update={
            "stays": bucket.stays + (1 if new_stay else 0),
            "seconds": bucket.seconds + (until - entered_at).total_seconds(),
        }
    )
    others = [b for b in folded.stays if (b.stage, b.month) != (stage, month)]
    month_ends = dict(folded.stage_at_month_end)
    month_end = _next_month_start(entered_at)
    while month_end <= until:  # the stay holds the moment just before this month starts
        month_ends[month_of(month_end - timedelta(microseconds=1))] = stage
        month_end = _next_month_start(month_end)
    return folded.model_copy(
        update={
            "stays": sorted([*others, bucket], key=lambda b: (b.month, b.stage)),
            "stage_at_month_end": dict(sorted(month_ends.items())),
        }
    )


def _count_visit(folded: Folded, visit: Visit) -> Folded:
    """Count a folded visit: its stage's first entry, its month."""
    first = {known.stage: known for known in folded.first_entered}
    if visit.stage not in first or visit.entered_at < first[visit.stage].entered_at:
        first[visit.stage] = visit
    return folded.model_copy(
        update={
            "visits": folded.visits + 1,
            "first_entered": sorted(first.values(), key=lambda known: (known.entered_at, known.stage)),
            "months": sorted({*folded.months, month_of(visit.entered_at)}),
        }
    )


def _next_month_start(moment: datetime) -> datetime:
    """The start of the month after `moment`'s, in UTC: always later than `moment`."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)


def on_prospect_identified(
    timeline: Timeline | None, prospect: ProspectIdentified, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    detail = f"prospect, tier {prospect.tier.value}, fit {prospect.fit_score}, owner {prospect.owner}"
    facts: dict[str, object] = {
        **_owner(timeline, prospect.owner, now),
        "company": prospect.company.name or prospect.company.domain,
        **_known(
            lead_source=prospect.source, industry=prospect.company.industry, country=prospect.company.country
        ),
    }
    facts |= _newer_next_step(timeline, prospect.next_step, now)
    return Decision(
        _record(
            timeline,
            prospect.deal_id,
            now,
            "prospect.identified",
            detail,
            stage=playbook.qualification_stage,
            facts=facts,
            limits=playbook.limits,
        )
    )


def on_lead_merged(
    timeline: Timeline | None, merged: LeadMerged, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    detail = f"lead {merged.lead_id} merged (same {merged.matched_on})"
    return Decision(_record(timeline, merged.deal_id, now, "lead.merged", detail, limits=playbook.limits))


def on_expansion_opened(
    timeline: Timeline | None, opened: ExpansionDealOpened, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    detail = f"expansion of {opened.original_deal_id}: {opened.product} ({opened.reason})"
    facts = {
        **_owner(timeline, opened.owner, now),
        "company": opened.customer.name or opened.customer.domain,
        "expansion_of": opened.original_deal_id,
        **_known(pipeline=playbook.pipeline_of("expansion", None), product=opened.product),
    }
    return Decision(
        _record(
            timeline,
            opened.deal_id,
            now,
            "deal.expansion_opened",
            detail,
            stage=playbook.qualification_stage,
            facts=facts,
            limits=playbook.limits,
        )
    )


def _newer_next_step(timeline: Timeline | None, step: NextStep, at: datetime) -> dict[str, object]:
    """The next step, unless the timeline already has one scheduled later (events come in any order)."""
    if timeline is not None and timeline.next_step_at is not None and timeline.next_step_at > at:
        return {}
    return {"next_step": step, "next_step_at": at}


def current_next_step(timeline: Timeline) -> NextStep | None:
    """The next step scheduled in the deal's current stage; one from an earlier stage no longer applies."""
    all_stays = stays(timeline)
    if timeline.next_step_at is None or not all_stays or timeline.next_step_at < all_stays[-1].entered_at:
        return None
    return timeline.next_step


def on_next_step_scheduled(
    timeline: Timeline | None, scheduled: NextStepScheduled, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    step = scheduled.next_step
    detail = f"next step {step.action} due {step.due_at.isoformat()}"
    return Decision(
        _record(
            timeline,
            scheduled.deal_id,
            now,
            "qualification.next_step_scheduled",
            detail,
            progress=True,
            facts={**_owner(timeline, scheduled.owner, now), **_newer_next_step(timeline, step, now)},
            limits=playbook.limits,
        )
    )


def on_sla_breached(
    timeline: Timeline | None, breach: SlaBreached, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    detail, facts = _alert_or_history(timeline, breach.sla, breach.from_history, {})
    return Decision(
        _record(
            timeline,
            breach.deal_id,
            breach.due_at,
            "qualification.sla_breached",
            detail,
            facts=facts,
            limits=playbook.limits,
        )
    )


def on_lead_nurtured(
    timeline: Timeline | None, nurtured: LeadNurtured, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    detail = f"nurtured until {nurtured.reopen_on.isoformat()}: {nurtured.reason}"
    return Decision(
        _record(
            timeline, nurtured.deal_id, now, "lead.nurtured", detail, stage=NURTURE, limits=playbook.limits
        )
    )


def on_qualification_reopened(
    timeline: Timeline | None, reopened: QualificationReopened, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    return Decision(
        _record(
            timeline,
            reopened.deal_id,
            reopened.reopened_at,
            "qualification.reopened",
            "reopened",
            stage=playbook.qualification_stage,
            facts=_owner(timeline, reopened.owner, reopened.reopened_at),
            limits=playbook.limits,
        )
    )


def on_lead_qualified(
    timeline: Timeline | None, qualified: LeadQualified, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    amount = qualified.amount
    detail = f"qualified ({qualified.framework}), {amount.amount_minor} {amount.currency} minor units"
    facts: dict[str, object] = {
        **_owner(timeline, qualified.owner, qualified.qualified_at),
        "company": qualified.company.name or qualified.company.domain,
        "expansion_of": qualified.expansion_of,
        "engaged_at": qualified.qualified_at,  # the discovery call: the buyer's first engagement
        **_known(
            pipeline=playbook.pipeline_of(
                qualified.deal_type or ("expansion" if qualified.expansion_of else None),
                qualified.lead_source,
            ),
            lead_source=qualified.lead_source,
            industry=qualified.company.industry,
            country=qualified.company.country,
        ),
    }
    if _uncorrected_since(timeline, "expected_close_date", qualified.qualified_at):
        facts["expected_close_date"] = qualified.expected_close_date
    if timeline is None or timeline.amount is None:
        facts["amount"] = amount  # a sent quote, if one came first, is the better figure
    return Decision(
        _record(
            timeline,
            qualified.deal_id,
            qualified.qualified_at,
            "lead.qualified",
            detail,
            progress=True,
            facts=facts,
            limits=playbook.limits,
        )
    )


def on_lead_disqualified(
    timeline: Timeline | None, disqualified: LeadDisqualified, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    return Decision(
        _record(
            timeline,
            disqualified.deal_id,
            disqualified.disqualified_at,
            "lead.disqualified",
            disqualified.reason_code,
            stage=DISQUALIFIED,
            facts={
                "disqualified_at": disqualified.disqualified_at,
                "disqualification_reason": disqualified.reason_code,
            },
            limits=playbook.limits,
        )
    )


def on_stage_changed(
    timeline: Timeline | None, changed: DealStageChanged, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    detail = f"{changed.previous_stage or 'new'} -> {changed.stage}"
    return Decision(
        _record(
            timeline,
            changed.deal_id,
            changed.changed_at,
            "deal.stage_changed",
            detail,
            stage=changed.stage,
            facts={}
            if changed.next_step is None
            else _newer_next_step(timeline, changed.next_step, changed.changed_at),
            limits=playbook.limits,
        )
    )


def on_quote_issued(
    timeline: Timeline | None, issued: QuoteIssued, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    total = issued.quote.total
    detail = (
        f"quote v{issued.quote.version} {issued.status}: {total.amount_minor} {total.currency} minor units"
    )
    sent = issued.status == "sent" and _uncorrected_since(timeline, "amount", now)
    facts: dict[str, object] = {"amount": total} if sent else {}
    return Decision(
        _record(
            timeline,
            issued.deal_id,
            now,
            "quote.issued",
            detail,
            progress=True,
            facts=facts,
            limits=playbook.limits,
        )
    )


def on_quote_expired(
    timeline: Timeline | None, expired: QuoteExpired, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    detail = f"quote v{expired.quote_version} expired"
    return Decision(
        _record(
            timeline, expired.deal_id, expired.expired_at, "quote.expired", detail, limits=playbook.limits
        )
    )


def on_deal_lost(
    timeline: Timeline | None, lost: DealLost, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    detail = f"lost in {lost.stage}: {lost.reason_code}" + (
        f" ({lost.competitor})" if lost.competitor else ""
    )
    return Decision(
        _record(
            timeline,
            lost.deal_id,
            lost.lost_at,
            "deal.lost",
            detail,
            stage=LOST,
            facts={"lost_at": lost.lost_at, "loss_reason": lost.reason_code, "competitor": lost.competitor},
            limits=playbook.limits,
        )
    )


def on_deal_won(
    timeline: Timeline | None, won: DealWon, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    detail = f"won: {won.amount.amount_minor} {won.amount.currency} minor units"
    return Decision(
        _record(
            timeline,
            won.deal_id,
            won.won_at,
            "deal.won",
            detail,
            stage=WON,
            facts={
                "won_at": won.won_at,
                "amount": won.amount,
                **_owner(timeline, won.owner, won.won_at),
                "company": won.customer.name or won.customer.domain,
                **_known(
                    product=_main_product(won), country=won.customer.country, industry=won.customer.industry
                ),
            },
            limits=playbook.limits,
        )
    )


def _main_product(won: DealWon) -> str | None:
    """The product of the deal's largest line: a deal of several products is reported under that one."""
    if not won.lines:
        return None
    return max(won.lines, key=lambda line: line.total_minor).product


def on_deal_imported(
    timeline: Timeline | None, imported: DealImported, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    """A deal brought from another CRM with its history: its stages entered when the export says, its
    close, and every dimension the export had, all in business time; `now` is the import's as_of."""
    entered = [Visit(stage=stage.stage, entered_at=stage.entered_at) for stage in imported.stage_history]
    closed_at = imported.closed_at or imported.as_of
    facts: dict[str, object] = {
        **_owner(timeline, imported.owner, imported.as_of),
        "company": imported.company.name or imported.company.domain,
        "created_at": imported.created_at,
        "engaged_at": imported.engaged_at,
        "imported_from": imported.source,
        "imported_as_of": imported.as_of,
        **_known(
            pipeline=imported.pipeline,
            team=imported.team,
            manager=imported.manager,
            region=imported.region,
            product=imported.product,
            lead_source=imported.lead_source,
            industry=imported.company.industry,
            country=imported.company.country,
        ),
    }
    if imported.amount is not None and _uncorrected_since(timeline, "amount", imported.as_of):
        facts["amount"] = imported.amount
    if imported.expected_close_date is not None and _uncorrected_since(
        timeline, "expected_close_date", imported.as_of
    ):
        facts["expected_close_date"] = imported.expected_close_date
    if imported.stage == WON:
        entered.append(Visit(stage=WON, entered_at=closed_at))
        facts["won_at"] = closed_at
    elif imported.stage == LOST:
        entered.append(Visit(stage=LOST, entered_at=closed_at))
        facts |= {"lost_at": closed_at, "loss_reason": imported.loss_reason}
    elif not entered or entered[-1].stage != imported.stage:
        entered.append(Visit(stage=imported.stage, entered_at=imported.created_at if not entered else now))
    if imported.next_step is not None:
        facts |= _newer_next_step(timeline, imported.next_step, imported.as_of)
    # Its stall clock runs from its last move in the other CRM, not from the import.
    moves = [visit.entered_at for visit in entered if visit.entered_at <= imported.as_of]
    facts["last_progress_at"] = max(moves, default=imported.created_at)
    detail = (
        f"imported from {imported.source} ({imported.source_id}) by {imported.stage_service}: "
        f"{imported.stage}, {len(imported.stage_history)} stages known"
    )
    return Decision(
        _record(
            timeline,
            imported.deal_id,
            imported.as_of,
            "deal.imported",
            detail,
            entered=entered,
            progress=True,
            facts=facts,
            limits=playbook.limits,
        )
    )


def _alert_or_history(
    timeline: Timeline | None, detail: str, from_history: bool, alert: dict[str, object]
) -> tuple[str, dict[str, object]]:
    """An alert's entry and facts; one that fell due before the import is a record of the past, late,
    and raises no alert on the board."""
    if not from_history:
        return detail, alert
    late = (0 if timeline is None else timeline.late_in_history) + 1
    return f"{detail} (history: it fell due before the import)", {"late_in_history": late}


def on_onboarding_started(
    timeline: Timeline | None, started: OnboardingStarted, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    detail = f"onboarding started ({started.template or 'default'} plan, {len(started.plan)} tasks)"
    return Decision(
        _record(
            timeline,
            started.deal_id,
            started.started_at,
            "onboarding.started",
            detail,
            stage=ONBOARDING,
            limits=playbook.limits,
        )
    )


def on_onboarding_completed(
    timeline: Timeline | None, completed: OnboardingCompleted, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    days = completed.time_to_value_seconds / SECONDS_PER_DAY
    detail = f"live after {days:.1f} days"
    return Decision(
        _record(
            timeline,
            completed.deal_id,
            completed.completed_at,
            "onboarding.completed",
            detail,
            stage=LIVE,
            limits=playbook.limits,
        )
    )


# --- rep actions: next steps, owner changes, reopenings, corrections ---------------------------------


def _owner(timeline: Timeline | None, owner: str, at: datetime) -> dict[str, object]:
    """The owner an event names, unless a deal.owner_changed after it gave the deal another one."""
    if timeline is not None and timeline.owner_at is not None and at < timeline.owner_at:
        return {}
    return {"owner": owner}


def _uncorrected_since(timeline: Timeline | None, field: str, at: datetime) -> bool:
    """Whether a figure dated `at` still counts: no correction of `field` came after it."""
    corrected = None if timeline is None else timeline.corrected_at.get(field)
    return corrected is None or at >= corrected


def on_next_step_set(
    timeline: Timeline | None, set_event: DealNextStepSet, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    step = set_event.next_step
    detail = f"next step {step.action} due {step.due_at.isoformat()} ({set_event.source})"
    return Decision(
        _record(
            timeline,
            set_event.deal_id,
            set_event.set_at,
            "deal.next_step_set",
            detail,
            progress=True,
            facts=_newer_next_step(timeline, step, set_event.set_at),
            limits=playbook.limits,
        )
    )


def on_next_step_overdue(
    timeline: Timeline | None, overdue: NextStepOverdue, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    detail, facts = _alert_or_history(
        timeline,
        f"next step {overdue.next_step.action} overdue in {overdue.stage}",
        overdue.from_history,
        {"overdue_step": overdue.next_step},
    )
    return Decision(
        _record(
            timeline,
            overdue.deal_id,
            overdue.due_at,
            "deal.next_step_overdue",
            detail,
            facts=facts,
            limits=playbook.limits,
        )
    )


def on_next_step_missing(
    timeline: Timeline | None, missing: NextStepMissing, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    return Decision(
        _record(
            timeline,
            missing.deal_id,
            missing.detected_at,
            "deal.next_step_missing",
            f"no next step in {missing.stage}",
            facts={
                "next_step_missing_at": missing.detected_at,
                **_no_next_step(timeline, missing.detected_at),
            },
            limits=playbook.limits,
        )
    )


def _no_next_step(timeline: Timeline | None, at: datetime) -> dict[str, object]:
    """The deal has no next step since `at`, unless one was scheduled later (events come in any order)."""
    if timeline is not None and timeline.next_step_at is not None and timeline.next_step_at > at:
        return {}
    return {"next_step": None, "next_step_at": at}


def on_owner_changed(
    timeline: Timeline | None, changed: DealOwnerChanged, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    """The forecast and the board count the deal for its new owner (and their team) from now on."""
    detail = f"owner {changed.previous_owner} -> {changed.owner}" + (
        f" by {changed.actor}" if changed.actor else ""
    )
    newer = timeline is None or timeline.owner_at is None or changed.changed_at >= timeline.owner_at
    facts: dict[str, object] = {"owner": changed.owner, "owner_at": changed.changed_at} if newer else {}
    return Decision(
        _record(
            timeline,
            changed.deal_id,
            changed.changed_at,
            "deal.owner_changed",
            detail,
            facts=facts,
            limits=playbook.limits,
        )
    )


def on_deal_reopened(
    timeline: Timeline | None, reopened: DealReopened, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    """The lost deal is open again: its loss moves to the earlier cycles' (win rate and loss reasons still
    count it in the period it was lost), and the deal.stage_changed that follows places it in its stage."""
    facts: dict[str, object] = {"cycle": max(reopened.cycle, timeline.cycle if timeline else 1)}
    if timeline is not None and timeline.lost_at is not None and timeline.lost_at <= reopened.reopened_at:
        loss = Loss(at=timeline.lost_at, reason=timeline.loss_reason, competitor=timeline.competitor)
        facts |= {
            "earlier_losses": [*timeline.earlier_losses, loss],
            "lost_at": None,
            "loss_reason": None,
            "competitor": None,
        }
    detail = f"reopened into {reopened.stage}, cycle {reopened.cycle}" + (
        f": {reopened.reason}" if reopened.reason else ""
    )
    return Decision(
        _record(
            timeline,
            reopened.deal_id,
            reopened.reopened_at,
            "deal.reopened",
            detail,
            progress=True,
            facts=facts,
            limits=playbook.limits,
        )
    )


def on_deal_corrected(
    timeline: Timeline | None, corrected: DealCorrected, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    """The forecast uses the corrected figures; the entry keeps the previous ones."""
    at = corrected.corrected_at
    changes: list[str] = []
    facts: dict[str, object] = {}
    stamps = dict(timeline.corrected_at) if timeline is not None else {}
    if corrected.amount is not None:
        before = corrected.previous_amount
        shown = "none" if before is None else f"{before.amount_minor} {before.currency}"
        changes.append(f"amount {shown} -> {corrected.amount.amount_minor} {corrected.amount.currency}")
        if _uncorrected_since(timeline, "amount", at):
            facts["amount"], stamps["amount"] = corrected.amount, at
    if corrected.expected_close_date is not None:
        before_date = corrected.previous_expected_close_date
        changes.append(
            f"expected close {before_date.isoformat() if before_date else 'none'} -> "
            f"{corrected.expected_close_date.isoformat()}"
        )
        if _uncorrected_since(timeline, "expected_close_date", at):
            facts["expected_close_date"], stamps["expected_close_date"] = corrected.expected_close_date, at
    detail = "corrected " + ", ".join(changes) + (f" ({corrected.reason})" if corrected.reason else "")
    return Decision(
        _record(
            timeline,
            corrected.deal_id,
            at,
            "deal.corrected",
            detail,
            facts={**facts, "corrected_at": stamps},
            limits=playbook.limits,
        )
    )


def losses(timeline: Timeline) -> list[Loss]:
    """Every cycle's loss: the earlier cycles' and, when the deal is lost now, the current one's."""
    current = (
        []
        if timeline.lost_at is None
        else [Loss(at=timeline.lost_at, reason=timeline.loss_reason, competitor=timeline.competitor)]
    )
    return [*timeline.earlier_losses, *current]


# --- stalls ----------------------------------------------------------------------------------------


def stall_deadline(timeline: Timeline, playbook: InsightsPlaybook) -> Deadline | None:
    """The stall this deal is heading for, keyed by its stage and last progress, due that many days on."""
    stage = current_stage(timeline)
    days = None if stage is None else playbook.stall_days.get(stage)
    if days is None or timeline.last_progress_at is None:
        return None
    since = timeline.last_progress_at.astimezone(UTC)
    return Deadline(STALLED, f"{stage}:{since:%Y%m%dT%H%M%S.%fZ}", since + timedelta(days=days))


def deadlines(timeline: Timeline, playbook: InsightsPlaybook) -> list[Deadline]:
    """The pending stall, unless it was raised already: progress makes a new key, so a new stall."""
    pending = stall_deadline(timeline, playbook)
    if pending is None or _raised(timeline, pending):
        return []
    return [pending]


def _raised(timeline: Timeline, stall: Deadline) -> bool:
    # A stall raised before deadlines were typed is remembered by its old id, `stalled:<key>`.
    return timeline.stall_raised in (stall.key, f"{STALLED}:{stall.key}")


def on_deadline(
    timeline: Timeline | None, deadline: DeadlineReached, now: datetime, playbook: InsightsPlaybook
) -> Decision[Timeline]:
    if timeline is None:
        return Decision(Timeline(deal_id=deadline.deal_id))
    try:
        named = Deadline.parse(deadline.deadline_id)
    except ValueError:
        return Decision(timeline)
    stall = pending_by_id(deadlines(timeline, playbook)).get(named.id)
    if stall is None:
        return Decision(timeline)  # raised already, or the deal made progress since
    stage = current_stage(timeline) or ""
    since = timeline.last_progress_at or now
    days = (now - since) // timedelta(days=1)
    stalled = DealStalled(
        deal_id=timeline.deal_id,
        owner=timeline.owner,
        stage=stage,
        stalled_since=since,
        days_without_progress=days,
        next_step=current_next_step(timeline),
        detected_at=now,
        from_history=timeline.imported_as_of is not None and stall.due_at <= timeline.imported_as_of,
    )
    updated = _record(
        timeline,
        timeline.deal_id,
        now,
        "deal.stalled",
        f"{days} days without progress in {stage}",
        limits=playbook.limits,
    ).model_copy(update={"stall_raised": stall.key})
    return Decision(updated, [stalled])


# --- reports ---------------------------------------------------------------------------------------


def month_of(moment: datetime | date) -> str:
    return f"{moment:%Y-%m}" if not isinstance(moment, datetime) else f"{moment.astimezone(UTC):%Y-%m}"


def minor_unit_rate(currency: str, playbook: InsightsPlaybook) -> Decimal | None:
    """What one minor unit of `currency` is worth in minor units of the reporting currency; None without
    a rate. Amounts convert as money: the playbook's rate is per unit, and each currency has its own
    number of decimals (JPY none, EUR two, KWD three), so 1 JPY at 0.0062 is 0.62 EUR cents."""
    rate = playbook.rate_to_reporting.get(currency)
    if rate is None:
        return None
    return rate.scaleb(exponent(playbook.reporting_currency) - exponent(currency))


def to_minor(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


class Card(BaseModel):
    """A deal as the board and the stalled list show it."""

    deal_id: str
    company: str | None
    owner: str | None
    team: str
    stage: str
    amount_minor: int | None
    currency: str | None
    in_stage_since: datetime
    days_in_stage: float
    next_step: NextStep | None
    stalled: bool
    days_without_progress: float | None
    next_step_overdue: bool = False
    next_step_missing: bool = False
    cycle: int = 1


def days_between(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds() / SECONDS_PER_DAY, 2)


def is_stalled(timeline: Timeline, now: datetime, playbook: InsightsPlaybook) -> bool:
    pending = stall_deadline(timeline, playbook)
    return pending is not None and pending.due_at <= now


def card(timeline: Timeline, now: datetime, playbook: InsightsPlaybook) -> Card | None:
    all_stays = stays(timeline)
    if not all_stays:
        return None
    last = all_stays[-1]
    step = current_next_step(timeline)
    is_open = last.stage in playbook.stage_probability
    return Card(
        deal_id=timeline.deal_id,
        company=timeline.company,
        owner=timeline.owner,
        team=playbook.team_of(timeline.owner),
        stage=last.stage,
        amount_minor=None if timeline.amount is None else timeline.amount.amount_minor,
        currency=None if timeline.amount is None else timeline.amount.currency,
        in_stage_since=last.entered_at,
        days_in_stage=days_between(last.entered_at, now),
        next_step=step,
        stalled=is_stalled(timeline, now, playbook),
        days_without_progress=(
            None if timeline.last_progress_at is None else days_between(timeline.last_progress_at, now)
        ),
        next_step_overdue=is_open
        and step is not None
        and (step == timeline.overdue_step or step.due_at <= now),
        next_step_missing=is_open
        and step is None
        and timeline.next_step_missing_at is not None
        and timeline.next_step_missing_at >= last.entered_at,
        cycle=timeline.cycle,
    )


def board(timelines: Iterable[Timeline], now: datetime, playbook: InsightsPlaybook) -> dict[str, list[Card]]:
    """The deals by their current stage, each column oldest in the stage first."""
    columns: dict[str, list[Card]] = {stage: [] for stage in board_columns(playbook)}
    for timeline in timelines:
        shown = card(timeline, now, playbook)
        if shown is not None:
            columns.setdefault(shown.stage, []).append(shown)
    return {
        stage: sorted(cards, key=lambda c: (c.in_stage_since, c.deal_id)) for stage, cards in columns.items()
    }


def stalled(timelines: Iterable[Timeline], now: datetime, playbook: InsightsPlaybook) -> list[Card]:
    cards = [card(timeline, now, playbook) for timeline in timelines if is_stalled(timeline, now, playbook)]
    return _longest_stalled_first(c for c in cards if c is not None)


def _longest_stalled_first(cards: Iterable[Card]) -> list[Card]:
    return sorted(cards, key=lambda c: (-(c.days_without_progress or 0), c.deal_id))


class FunnelStep(BaseModel):
    stage: str
    reached: int
    now_in_stage: int
    conversion_to_next: float | None


def funnel(timelines: Sequence[Timeline], playbook: InsightsPlaybook) -> list[FunnelStep]:
    """Deals that reached each stage (or a later one), and the share of them that went further."""
    stages, rank_of = funnel_stages(playbook), funnel_rank(playbook)
    furthest = [furthest_rank(timeline, playbook) for timeline in timelines]
    reached = [sum(1 for rank in furthest if rank is not None and rank >= rank_of[s]) for s in stages]
    current = Counter(current_stage(timeline) for timeline in timelines)
    return [
        FunnelStep(
            stage=stage,
            reached=reached[index],
            now_in_stage=current[stage] + (current[ONBOARDING] + current[LIVE] if stage == WON else 0),
            conversion_to_next=(
                _ratio(reached[index + 1], reached[index]) if index + 1 < len(stages) else None
            ),
        )
        for index, stage in enumerate(stages)
    ]


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


# --- forecast --------------------------------------------------------------------------------------


class CurrencyAmounts(BaseModel):
    amount_minor: int
    weighted_minor: int


class ForecastRow(BaseModel):
    """One group of the forecast. Amounts are in the reporting currency unless `by_currency`."""

    key: str
    deals: int
    amount_minor: int
    weighted_minor: int
    by_category: dict[str, int]
    by_currency: dict[str, CurrencyAmounts]


class Forecast(BaseModel):
    reporting_currency: str
    total: ForecastRow
    by_category: list[ForecastRow]
    by_owner: list[ForecastRow]
    by_team: list[ForecastRow]
    by_month: list[ForecastRow]
    unconverted_currencies: list[str]


class _ForecastItem(BaseModel):
    owner: str
    team: str
    month: str
    category: ForecastCategory
    currency: str
    amount: Decimal
    weighted: Decimal
    rate: Decimal | None  # reporting-currency minor units per minor unit of `currency`


def _forecast_item(timeline: Timeline, playbook: InsightsPlaybook) -> _ForecastItem | None:
    stage, amount = current_stage(timeline), timeline.amount
    if stage is None or amount is None:
        return None
    category: ForecastCategory
    if stage in CLOSED_WON and timeline.won_at is not None:
        probability, category, month = Decimal(1), "closed", month_of(timeline.won_at)
    elif stage in playbook.stage_probability:
        probability, category = playbook.stage_probability[stage], playbook.forecast_category[stage]
        month = (
            UNSCHEDULED if timeline.expected_close_date is None else month_of(timeline.expected_close_date)
        )
    else:
        return None
    return _ForecastItem(
        owner=timeline.owner or "unknown",
        team=playbook.team_of(timeline.owner),
        month=month,
        category=category,
        currency=amount.currency,
        amount=Decimal(amount.amount_minor),
        weighted=Decimal(amount.amount_minor) * probability,
        rate=minor_unit_rate(amount.currency, playbook),
    )


def _forecast_row(key: str, items: Sequence[_ForecastItem]) -> ForecastRow:
    converted = [item for item in items if item.rate is not None]
    by_category: dict[str, Decimal] = defaultdict(Decimal)
    for item in converted:
        by_category[item.category] += item.weighted * (item.rate or 0)
    by_currency: dict[str, list[_ForecastItem]] = defaultdict(list)
    for item in items:
        by_currency[item.currency].append(item)
    return ForecastRow(
        key=key,
        deals=len(items),
        amount_minor=to_minor(sum((item.amount * (item.rate or 0) for item in converted), Decimal(0))),
        weighted_minor=to_minor(sum((item.weighted * (item.rate or 0) for item in converted), Decimal(0))),
        by_category={category: to_minor(value) for category, value in sorted(by_category.items())},
        by_currency={
            currency: CurrencyAmounts(
                amount_minor=to_minor(sum((item.amount for item in group), Decimal(0))),
                weighted_minor=to_minor(sum((item.weighted for item in group), Decimal(0))),
            )
            for currency, group in sorted(by_currency.items())
        },
    )


def _grouped(items: Sequence[_ForecastItem], key: Callable[[_ForecastItem], str]) -> list[ForecastRow]:
    groups: dict[str, list[_ForecastItem]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return [_forecast_row(name, groups[name]) for name in sorted(groups)]


def forecast(timelines: Iterable[Timeline], playbook: InsightsPlaybook) -> Forecast:
    """Open deals weighted by their stage's probability, won deals at full value (category closed).

    Grouped by owner, team, close month (the expected close date; the month won for won deals) and
    category, each in the deals' own currencies and converted to the reporting currency. A currency
    without a rate is left out of the converted figures and listed.
    """
    items = [item for timeline in timelines if (item := _forecast_item(timeline, playbook)) is not None]
    return Forecast(
        reporting_currency=playbook.reporting_currency,
        total=_forecast_row("total", items),
        by_category=_grouped(items, lambda item: item.category),
        by_owner=_grouped(items, lambda item: item.owner),
        by_team=_grouped(items, lambda item: item.team),
        by_month=_grouped(items, lambda item: item.month),
        unconverted_currencies=sorted({item.currency for item in items if item.rate is None}),
    )


# --- bottlenecks -----------------------------------------------------------------------------------


class Conversion(BaseModel):
    from_stage: str
    to_stage: str
    entered: int
    converted: int
    rate: float | None


class TimeInStage(BaseModel):
    stage: str
    stays: int
    median_days: float | None
    p90_days: float | None


class Velocity(BaseModel):
    """(open deals x win rate x average won amount) / average cycle days, in reporting minor units/day.

    No figure (`per_day_minor` None) without a deal won, or when the average cycle is shorter than the
    playbook's `velocity_min_cycle_days`: dividing by a near-zero cycle gives no meaningful speed.
    """

    open_deals: int
    won: int
    lost: int
    win_rate: float | None
    average_won_minor: int | None
    average_cycle_days: float | None
    per_day_minor: int | None


class ReasonCount(BaseModel):
    reason: str
    deals: int


class Bottlenecks(BaseModel):
    period: str
    conversion: list[Conversion]
    time_in_stage: list[TimeInStage]
    velocity: Velocity
    loss_reasons: list[ReasonCount]
    disqualification_reasons: list[ReasonCount]


def p90(values: Sequence[float]) -> float:
    """The nearest-rank 90th percentile: the smallest value with at least 90% of the values at or below."""
    ordered = sorted(values)
    return ordered[ceil(0.9 * len(ordered)) - 1]


def _in_period(moment: datetime | None, period: str) -> bool:
    return moment is not None and (period == ALL_TIME or month_of(moment) == period)


def _period_end(period: str, now: datetime) -> datetime:
    if period == ALL_TIME:
        return now
    year, month = (int(part) for part in period.split("-"))
    start_of_next = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return min(start_of_next, now)


def reached_at(timeline: Timeline, stage: str, playbook: InsightsPlaybook) -> datetime | None:
    """When the deal first reached `stage` or a stage beyond it."""
    rank_of = funnel_rank(playbook)
    times = [
        visit.entered_at
        for visit in [*timeline.folded.first_entered, *timeline.visits]
        if visit.stage in rank_of and rank_of[visit.stage] >= rank_of[stage]
    ]
    return min(times) if times else None


def stage_just_before(timeline: Timeline, end: datetime) -> str | None:
    """The deal's stage just before `end` (now, or the start of the month after a period's month)."""
    moment = end - timedelta(microseconds=1)
    folded = timeline.folded
    if folded.until is not None and moment < folded.until:
        return folded.stage_at_month_end.get(month_of(moment))  # among folded stays: known at month ends
    earlier = [stay for stay in stays(timeline) if stay.entered_at <= moment]
    return earlier[-1].stage if earlier else None


def converted_minor(timeline: Timeline, playbook: InsightsPlaybook) -> Decimal | None:
    if timeline.amount is None:
        return None
    rate = minor_unit_rate(timeline.amount.currency, playbook)
    return None if rate is None else Decimal(timeline.amount.amount_minor) * rate


def _top(reasons: Iterable[str | None], limit: int) -> list[ReasonCount]:
    counts = Counter(reason for reason in reasons if reason is not None)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [ReasonCount(reason=reason, deals=deals) for reason, deals in ordered[:limit]]


def _velocity(
    timelines: Sequence[Timeline], period: str, now: datetime, playbook: InsightsPlaybook
) -> Velocity:
    end = _period_end(period, now)
    open_deals = sum(
        1 for timeline in timelines if stage_just_before(timeline, end) in playbook.stage_probability
    )
    won = [timeline for timeline in timelines if _in_period(timeline.won_at, period)]
    lost = [loss for timeline in timelines for loss in losses(timeline) if _in_period(loss.at, period)]
    win_rate = _ratio(len(won), len(won) + len(lost))
    amounts = [amount for timeline in won if (amount := converted_minor(timeline, playbook)) is not None]
    average_won = sum(amounts, Decimal(0)) / len(amounts) if amounts else None
    cycles = [
        (timeline.won_at - start).total_seconds() / SECONDS_PER_DAY
        for timeline in won
        if timeline.won_at is not None
        and (start := reached_at(timeline, playbook.qualification_stage, playbook)) is not None
    ]
    average_cycle = statistics.fmean(cycles) if cycles else None
    per_day = None
    long_enough = average_cycle is not None and average_cycle >= playbook.velocity_min_cycle_days
    if win_rate is not None and average_won is not None and average_cycle is not None and long_enough:
        per_day = to_minor(
            open_deals
            * Decimal(len(won))
            / Decimal(len(won) + len(lost))
            * average_won
            / Decimal(average_cycle)
        )
    return Velocity(
        open_deals=open_deals,
        won=len(won),
        lost=len(lost),
        win_rate=win_rate,
        average_won_minor=None if average_won is None else to_minor(average_won),
        average_cycle_days=None if average_cycle is None else round(average_cycle, 2),
        per_day_minor=per_day,
    )


def bottlenecks_for(
    timelines: Sequence[Timeline], period: str, now: datetime, playbook: InsightsPlaybook
) -> Bottlenecks:
    """One period's figures: a month (YYYY-MM) or `all`.

    Conversion: of the deals that reached a stage in the period, how many went further (by now). Time in
    stage: the stays that ended in the period. Win rate and cycle: the deals won or lost in the period;
    open deals: those open at the period's end.
    """
    conversion = []
    for stage, next_stage in pairwise(funnel_stages(playbook)):
        entered = [t for t in timelines if _in_period(reached_at(t, stage, playbook), period)]
        converted = sum(1 for t in entered if reached_at(t, next_stage, playbook) is not None)
        conversion.append(
            Conversion(
                from_stage=stage,
                to_stage=next_stage,
                entered=len(entered),
                converted=converted,
                rate=_ratio(converted, len(entered)),
            )
        )
    durations: dict[str, list[float]] = defaultdict(list)
    for timeline in timelines:
        for stay in stays(timeline):
            if stay.left_at is not None and _in_period(stay.left_at, period):
                durations[stay.stage].append(
                    (stay.left_at - stay.entered_at).total_seconds() / SECONDS_PER_DAY
                )
        for folded in timeline.folded.stays:
            if period in (ALL_TIME, folded.month):
                mean_days = folded.seconds / folded.stays / SECONDS_PER_DAY
                durations[folded.stage].extend([mean_days] * folded.stays)
    time_in_stage = [
        TimeInStage(
            stage=stage,
            stays=len(durations[stage]),
            median_days=round(statistics.median(durations[stage]), 2) if durations[stage] else None,
            p90_days=round(p90(durations[stage]), 2) if durations[stage] else None,
        )
        for stage in (playbook.open_stages[0], NURTURE, *playbook.open_stages[1:], ONBOARDING)
    ]
    return Bottlenecks(
        period=period,
        conversion=conversion,
        time_in_stage=time_in_stage,
        velocity=_velocity(timelines, period, now, playbook),
        loss_reasons=_top(
            (loss.reason for t in timelines for loss in losses(t) if _in_period(loss.at, period)),
            playbook.top_reasons,
        ),
        disqualification_reasons=_top(
            (t.disqualification_reason for t in timelines if _in_period(t.disqualified_at, period)),
            playbook.top_reasons,
        ),
    )


def periods(timelines: Iterable[Timeline]) -> list[str]:
    """Every month in which a deal entered a stage, newest first."""
    months = {month for t in timelines for month in t.folded.months}
    months |= {month_of(visit.entered_at) for t in timelines for visit in t.visits}
    return sorted(months, reverse=True)


def bottlenecks(
    timelines: Sequence[Timeline], now: datetime, playbook: InsightsPlaybook
) -> list[Bottlenecks]:
    return [bottlenecks_for(timelines, period, now, playbook) for period in [ALL_TIME, *periods(timelines)]]


class Report(BaseModel):
    generated_at: datetime
    reporting_currency: str
    deals: int
    board: dict[str, list[Card]]
    stage_labels: dict[str, str] = {}  # the playbook's label of each stage, for the board's column titles
    funnel: list[FunnelStep]
    forecast: Forecast
    periods: list[str]
    bottlenecks: list[Bottlenecks]
    stalled: list[Card]


def report(
    timelines: Sequence[Timeline], now: datetime, playbook: InsightsPlaybook, period: str | None = None
) -> Report:
    """Everything the reports show. `periods` lists `all` and every month there are figures for;
    `bottlenecks` has each of them, or with `period` only that one (none if it is not among them)."""
    columns = board(timelines, now, playbook)
    known = [ALL_TIME, *periods(timelines)]
    return Report(
        generated_at=now,
        reporting_currency=playbook.reporting_currency,
        deals=len(timelines),
        board=columns,
        stage_labels=playbook.stage_label,
        funnel=funnel(timelines, playbook),
        forecast=forecast(timelines, playbook),
        periods=known,
        bottlenecks=[
            bottlenecks_for(timelines, chosen, now, playbook)
            for chosen in known
            if period is None or chosen == period
        ],
        # The board has every deal's card already: the stalled list is those of them.
        stalled=_longest_stalled_first(c for column in columns.values() for c in column if c.stalled),
    )
