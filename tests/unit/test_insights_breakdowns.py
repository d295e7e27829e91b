"""Breakdowns on hand-made timelines, figures worked out by hand; and what insights learns from an import.

The deals (2026, every event at 09:00, EUR unless said; USD converts at 0.92):

A anna.schmidt (emea): created 1 Jan, engaged 5 Jan; qualification 1 Jan, presentation 10 Jan, proposal
  20 Jan, negotiation 1 Feb, closing 10 Feb, won 20 Feb for 10,000.00 EUR. Cycle 50 days (46 engaged).
B anna.schmidt: created 1 Jan, engaged 3 Jan; qualification 1 Jan, presentation 11 Jan, lost 31 Jan.
C jordan.lee (americas): created 1 Feb, never engaged on record; qualification 1 Feb, proposal 11 Feb,
  won 3 Mar for 5,000.00 USD (4,600.00 EUR). Cycle 30 days.
D jordan.lee: open, negotiation since 1 Mar, 2,000.00 EUR.
E anna.schmidt: open, proposal since 5 Mar, no amount.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from contracts.events import (
    Company,
    DeadlineReached,
    DealImported,
    DealStalled,
    ImportedStage,
    Money,
    NextStep,
    NextStepOverdue,
    SlaBreached,
)
from services.insights import breakdowns, domain
from services.insights.breakdowns import UnknownDimension, breakdown
from services.insights.config import Limits, load_playbook

PLAYBOOK = load_playbook()


def at(month: int, day_of_month: int) -> datetime:
    return datetime(2026, month, day_of_month, 9, tzinfo=UTC)


def deal(deal_id: str, owner: str, visits: list[tuple[str, datetime]], **facts: Any) -> domain.Timeline:
    return domain.Timeline(
        deal_id=deal_id,
        owner=owner,
        visits=[domain.Visit(stage=stage, entered_at=entered) for stage, entered in visits],
        created_at=visits[0][1],
        **facts,
    )


def eur(minor: int) -> Money:
    return Money(amount_minor=minor, currency="EUR")


DEAL_A = deal(
    "a",
    "anna.schmidt",
    [
        ("qualification", at(1, 1)),
        ("presentation", at(1, 10)),
        ("proposal", at(1, 20)),
        ("negotiation", at(2, 1)),
        ("closing", at(2, 10)),
        ("won", at(2, 20)),
    ],
    engaged_at=at(1, 5),
    won_at=at(2, 20),
    amount=eur(1_000_000),
    product="platform",
)
DEAL_B = deal(
    "b",
    "anna.schmidt",
    [("qualification", at(1, 1)), ("presentation", at(1, 11)), ("lost", at(1, 31))],
    engaged_at=at(1, 3),
    lost_at=at(1, 31),
    amount=eur(300_000),
)
DEAL_C = deal(
    "c",
    "jordan.lee",
    [("qualification", at(2, 1)), ("proposal", at(2, 11)), ("won", at(3, 3))],
    won_at=at(3, 3),
    amount=Money(amount_minor=500_000, currency="USD"),
    product="analytics",
    pipeline="expansion",
)
DEAL_D = deal("d", "jordan.lee", [("negotiation", at(3, 1))], amount=eur(200_000))
DEAL_E = deal("e", "anna.schmidt", [("proposal", at(3, 5))])
DEALS = [DEAL_A, DEAL_B, DEAL_C, DEAL_D, DEAL_E]


def rows(by: str | None, period: str | None = None) -> dict[tuple[str, str], breakdowns.BreakdownRow]:
    return {(row.group, row.period): row for row in breakdown(DEALS, PLAYBOOK, by, period).closed}


def test_win_rate_won_amount_and_cycles_by_owner_are_the_hand_worked_figures() -> None:
    by_owner = rows("owner")
    assert sorted(by_owner) == [("anna.schmidt", "all"), ("jordan.lee", "all")]
    anna, jordan = by_owner[("anna.schmidt", "all")], by_owner[("jordan.lee", "all")]
    assert (anna.won, anna.lost, anna.win_rate, anna.won_amount_minor) == (1, 1, 0.5, 1_000_000)
    assert (jordan.won, jordan.lost, jordan.win_rate, jordan.won_amount_minor) == (1, 0, 1.0, 460_000)
    assert anna.cycle_from_creation.model_dump() == {"deals": 1, "median_days": 50.0, "p90_days": 50.0}
    assert anna.cycle_from_engagement.model_dump() == {"deals": 1, "median_days": 46.0, "p90_days": 46.0}
    assert jordan.cycle_from_creation.median_days == 30.0
    assert jordan.cycle_from_engagement.model_dump() == {"deals": 0, "median_days": None, "p90_days": None}


def test_without_a_dimension_every_deal_is_one_group_and_the_cycle_spreads_over_both_wins() -> None:
    [everything] = rows(None).values()
    assert (everything.group, everything.period) == ("all", "all")
    assert (everything.won, everything.lost, everything.win_rate) == (2, 1, 0.6667)
    assert everything.won_amount_minor == 1_460_000
    # durations 30 and 50: the median is their mean, the nearest-rank p90 the larger
    assert (everything.cycle_from_creation.median_days, everything.cycle_from_creation.p90_days) == (
        40.0,
        50.0,
    )


def test_closed_figures_fall_in_the_month_or_quarter_of_the_close() -> None:
    monthly = rows("owner", "month")
    assert sorted(monthly) == [
        ("anna.schmidt", "2026-01"),
        ("anna.schmidt", "2026-02"),
        ("jordan.lee", "2026-03"),
    ]
    january = monthly[("anna.schmidt", "2026-01")]
    assert (january.won, january.lost, january.win_rate, january.won_amount_minor) == (0, 1, 0.0, 0)
    assert monthly[("anna.schmidt", "2026-02")].win_rate == 1.0
    quarterly = rows("team", "quarter")
    assert sorted(quarterly) == [("americas", "2026-Q1"), ("emea", "2026-Q1")]
    assert quarterly[("emea", "2026-Q1")].win_rate == 0.5


def test_stage_conversion_and_time_are_those_of_the_groups_closed_deals() -> None:
    anna = rows("owner")[("anna.schmidt", "all")]
    stages = {figures.stage: figures for figures in anna.stages}
    qualification, presentation, proposal = (stages[s] for s in ("qualification", "presentation", "proposal"))
    assert (qualification.reached, qualification.went_further, qualification.conversion) == (2, 2, 1.0)
    assert (qualification.stays, qualification.median_days, qualification.p90_days) == (2, 9.5, 10.0)
    assert (presentation.reached, presentation.went_further, presentation.conversion) == (2, 1, 0.5)
    assert (presentation.median_days, presentation.p90_days) == (15.0, 20.0)  # A 10 days, B 20 until lost
    assert (proposal.reached, proposal.went_further, proposal.stays, proposal.median_days) == (1, 1, 1, 12.0)
    assert stages["closing"].model_dump() == {
        "stage": "closing",
        "reached": 1,
        "went_further": 1,
        "conversion": 1.0,
        "stays": 1,
        "median_days": 10.0,
        "p90_days": 10.0,
    }


def test_the_open_pipeline_counts_the_open_deals_by_stage_in_the_reporting_currency() -> None:
    pipeline = {row.group: row for row in breakdown(DEALS, PLAYBOOK, "owner").open_pipeline}
    assert pipeline["anna.schmidt"].model_dump() == {
        "group": "anna.schmidt",
        "deals": 1,
        "amount_minor": 0,  # E has no amount yet
        "stages": [{"stage": "proposal", "deals": 1, "amount_minor": 0}],
    }
    assert pipeline["jordan.lee"].stages[0].model_dump() == {
        "stage": "negotiation",
        "deals": 1,
        "amount_minor": 200_000,
    }


def test_dimensions_come_from_the_deal_else_from_the_playbook_teams() -> None:
    playbook = PLAYBOOK.model_copy(
        update={"team_manager": {"emea": "eva.meyer"}, "team_region": {"emea": "EU"}}
    )
    by_manager = {row.group for row in breakdown(DEALS, playbook, "manager").closed}
    assert by_manager == {"eva.meyer", "unknown"}  # americas names no manager
    assert {row.group for row in breakdown(DEALS, playbook, "region").closed} == {"EU", "unknown"}
    assert {row.group for row in breakdown(DEALS, PLAYBOOK, "product").closed} == {
        "platform",
        "analytics",
        "unknown",
    }
    # a deal not qualified yet is in the default pipeline; C was placed in expansion
    assert {row.group for row in breakdown(DEALS, PLAYBOOK, "pipeline").closed} == {
        "new_business",
        "expansion",
    }
    assert {row.group for row in breakdown(DEALS, PLAYBOOK, "origin").closed} == {"live"}


def test_a_loss_of_an_earlier_cycle_still_counts_in_its_period() -> None:
    reopened_and_won = DEAL_A.model_copy(
        update={"deal_id": "a2", "earlier_losses": [domain.Loss(at=at(1, 15), reason="timing")]}
    )
    monthly = {row.period: row for row in breakdown([reopened_and_won], PLAYBOOK, None, "month").closed}
    assert (monthly["2026-01"].won, monthly["2026-01"].lost) == (0, 1)
    assert (monthly["2026-02"].won, monthly["2026-02"].lost) == (1, 0)


@pytest.mark.parametrize(("by", "period"), [("colour", None), (None, "week")])
def test_an_unknown_dimension_or_period_is_refused_naming_the_known_ones(
    by: str | None, period: str | None
) -> None:
    with pytest.raises(UnknownDimension, match="use one of"):
        breakdown(DEALS, PLAYBOOK, by, period)


# --- what insights learns from deal.imported.v1 -------------------------------------------------------

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def imported(**changes: Any) -> DealImported:
    fields: dict[str, Any] = {
        "deal_id": "imp-salesforce-006A",
        "source": "salesforce",
        "source_id": "006A",
        "owner": "luc.martin",
        "team": "emea",
        "manager": "eva.meyer",
        "region": "EU",
        "company": Company(name="Globex", country="FR", industry="logistics"),
        "product": "platform",
        "lead_source": "trade_show",
        "pipeline": "new_business",
        "stage": "won",
        "stage_history": [
            ImportedStage(stage="qualification", entered_at=at(1, 2)),
            ImportedStage(stage="proposal", entered_at=at(1, 22)),
            ImportedStage(stage="closing", entered_at=at(2, 11)),
        ],
        "created_at": at(1, 2),
        "engaged_at": at(1, 12),
        "closed_at": at(3, 3),
        "amount": eur(800_000),
        "as_of": AS_OF,
        "stage_service": "proposal",
    }
    return DealImported(**(fields | changes))


def apply_import(event: DealImported, timeline: domain.Timeline | None = None) -> domain.Timeline:
    return domain.on_deal_imported(timeline, event, event.as_of, PLAYBOOK).state


def test_an_imported_win_is_placed_in_business_time_with_every_dimension() -> None:
    timeline = apply_import(imported())
    assert [(stay.stage, stay.entered_at) for stay in domain.stays(timeline)] == [
        ("qualification", at(1, 2)),
        ("proposal", at(1, 22)),
        ("closing", at(2, 11)),
        ("won", at(3, 3)),
    ]
    assert (timeline.won_at, timeline.created_at, timeline.engaged_at) == (at(3, 3), at(1, 2), at(1, 12))
    assert (timeline.imported_from, timeline.imported_as_of) == ("salesforce", AS_OF)
    [row] = breakdown([timeline], PLAYBOOK, "manager", "month").closed
    assert (row.group, row.period, row.won_amount_minor) == ("eva.meyer", "2026-03", 800_000)
    assert row.cycle_from_creation.median_days == 60.0  # 2 Jan to 3 Mar
    assert row.cycle_from_engagement.median_days == 50.0
    for dimension, value in (
        ("region", "EU"),
        ("source", "trade_show"),
        ("country", "FR"),
        ("origin", "salesforce"),
    ):
        assert breakdowns.dimension_of(timeline, dimension, PLAYBOOK) == value


def test_the_same_import_applied_twice_changes_no_figure() -> None:
    once = apply_import(imported())
    twice = apply_import(imported(), once)
    assert domain.stays(twice) == domain.stays(once)
    assert (
        breakdown([twice], PLAYBOOK, "owner").model_dump()
        == breakdown([once], PLAYBOOK, "owner").model_dump()
    )


def test_an_imported_open_deal_keeps_its_stage_amount_and_next_step() -> None:
    step = NextStep(action="agree_terms", due_at=datetime(2026, 6, 10, tzinfo=UTC))
    timeline = apply_import(
        imported(
            stage="negotiation",
            closed_at=None,
            stage_history=[ImportedStage(stage="negotiation", entered_at=at(5, 2))],
            next_step=step,
            expected_close_date=date(2026, 7, 1),
        )
    )
    assert domain.current_stage(timeline) == "negotiation"
    assert domain.current_next_step(timeline) == step
    assert (timeline.won_at, timeline.lost_at, timeline.expected_close_date) == (None, None, date(2026, 7, 1))
    [row] = breakdown([timeline], PLAYBOOK, "team").open_pipeline
    assert (row.group, row.deals, row.amount_minor) == ("emea", 1, 800_000)


def test_an_imported_loss_counts_in_the_win_rate_with_its_reason() -> None:
    timeline = apply_import(imported(stage="lost", loss_reason="price"))
    assert (timeline.lost_at, timeline.loss_reason) == (at(3, 3), "price")
    [row] = breakdown([timeline], PLAYBOOK).closed
    assert (row.won, row.lost, row.win_rate) == (0, 1, 0.0)


def test_a_deadline_that_fell_due_before_the_import_is_history_not_an_alert() -> None:
    open_deal = apply_import(
        imported(
            stage="negotiation",
            closed_at=None,
            stage_history=[ImportedStage(stage="negotiation", entered_at=at(5, 2))],
        )
    )
    step = NextStep(action="agree_terms", due_at=at(5, 16))
    late = NextStepOverdue(
        deal_id=open_deal.deal_id,
        owner="luc.martin",
        stage="negotiation",
        next_step=step,
        due_at=step.due_at,
        from_history=True,
    )
    recorded = domain.on_next_step_overdue(open_deal, late, step.due_at, PLAYBOOK).state
    assert recorded.overdue_step is None  # the board's alert is for live deadlines only
    assert recorded.late_in_history == 1
    assert any("history" in entry.detail for entry in recorded.entries)
    breach = SlaBreached(
        deal_id=open_deal.deal_id,
        owner="luc.martin",
        sla="qualification_overdue",
        due_at=at(1, 9),
        from_history=True,
    )
    assert domain.on_sla_breached(recorded, breach, at(1, 9), PLAYBOOK).state.late_in_history == 2
    live = late.model_copy(update={"from_history": False})
    assert domain.on_next_step_overdue(open_deal, live, step.due_at, PLAYBOOK).state.overdue_step == step


def test_a_live_deal_gets_its_creation_engagement_and_dimensions_from_its_own_events() -> None:
    from tests.insights_events import known_events
    from tests.unit.test_insights import timelines_from

    deals = {timeline.deal_id: timeline for timeline in timelines_from(known_events())}
    deal_b = deals["deal-b"]  # see tests/insights_events.py
    assert deal_b.created_at == datetime(2026, 10, 2, 9, tzinfo=UTC)  # prospect.identified
    assert deal_b.engaged_at == datetime(2026, 10, 4, 9, tzinfo=UTC)  # lead.qualified
    assert deal_b.pipeline == "new_business"
    assert breakdowns.dimension_of(deal_b, "team", PLAYBOOK) == "americas"
    assert breakdowns.dimension_of(deal_b, "origin", PLAYBOOK) == "live"


# --- the query of /api/report ----------------------------------------------------------------------


def test_the_report_query_tells_a_breakdown_period_from_a_bottleneck_month() -> None:
    from services.insights.api import BadQuery, ReportQuery, report_query

    assert report_query({"by": "owner", "period": "month"}) == ReportQuery(None, "owner", "month")
    assert report_query({"period": "2026-10"}) == ReportQuery("2026-10", None, None)  # as before breakdowns
    assert report_query({"period": "quarter", "bottlenecks": "all"}) == ReportQuery("all", None, "quarter")
    for params, error in (
        ({"by": "colour"}, "bad_dimension"),
        ({"period": "fortnight"}, "bad_period"),
        ({"period": "2026-10", "bottlenecks": "all"}, "bad_period"),
        ({"bottlenecks": "month"}, "bad_period"),
    ):
        with pytest.raises(BadQuery) as refused:
            report_query(params)
        assert refused.value.error == error


def test_a_long_imported_history_is_folded_within_the_limits_and_still_counted() -> None:
    playbook = PLAYBOOK.model_copy(update={"limits": Limits(stage_visits=10)})
    back_and_forth = [
        ImportedStage(
            stage="proposal" if index % 2 else "negotiation", entered_at=at(1, 2) + timedelta(days=index)
        )
        for index in range(30)
    ]
    event = imported(stage_history=back_and_forth, created_at=at(1, 2), closed_at=at(3, 3))
    timeline = domain.on_deal_imported(None, event, event.as_of, playbook).state
    assert len(timeline.visits) <= 10
    assert timeline.folded.visits + len(timeline.visits) == 31  # 30 stages and the win
    [row] = breakdown([timeline], playbook).closed
    assert (row.won, row.cycle_from_creation.median_days) == (1, 60.0)
    negotiation = next(stage for stage in row.stages if stage.stage == "negotiation")
    assert negotiation.stays == 15  # every stay of one day, folded or not
    assert negotiation.median_days == 1.0


def test_an_imported_deal_stalls_from_its_last_move_in_the_other_crm_as_history() -> None:
    entered = AS_OF - timedelta(days=20)
    open_deal = apply_import(
        imported(
            stage="negotiation",
            closed_at=None,
            stage_history=[ImportedStage(stage="negotiation", entered_at=entered)],
        )
    )
    assert open_deal.last_progress_at == entered
    [stall] = domain.deadlines(open_deal, PLAYBOOK)
    assert stall.due_at == entered + timedelta(days=PLAYBOOK.stall_days["negotiation"])
    assert stall.due_at < AS_OF
    assert domain.is_stalled(open_deal, AS_OF, PLAYBOOK)
    reached = DeadlineReached(
        deal_id=open_deal.deal_id, stage_service="insights", deadline_id=stall.id, due_at=stall.due_at
    )
    [stalled] = domain.on_deadline(open_deal, reached, stall.due_at, PLAYBOOK).events
    assert isinstance(stalled, DealStalled)
    assert (stalled.from_history, stalled.stalled_since) == (True, entered)
