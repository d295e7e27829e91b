"""Insights rules: the timeline, the reports over a known event set, and stalls raised once per stall."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from contracts import Event
from contracts.events import (
    Company,
    Contact,
    DeadlineReached,
    DealCorrected,
    DealLost,
    DealNextStepSet,
    DealOwnerChanged,
    DealReopened,
    DealStalled,
    DealWon,
    LeadNurtured,
    Money,
    NextStep,
    NextStepMissing,
    NextStepOverdue,
    NextStepScheduled,
    QualificationReopened,
)
from services.insights import domain
from services.insights.config import InsightsPlaybook, Limits, load_playbook
from services.insights.service import definition
from shared.domain import Deadline
from shared.envelope import decode, encode
from shared.playbook import DEFAULT_DOCUMENT
from tests.insights_events import (
    NOW,
    assert_report_figures,
    day,
    known_events,
    moved,
    prospect,
    qualified,
    sent_quote,
)

PLAYBOOK = load_playbook()


def timelines_from(
    events: Iterable[tuple[Event, datetime]], playbook: InsightsPlaybook = PLAYBOOK
) -> list[domain.Timeline]:
    """Apply events as the service does: each to its deal's timeline, `now` being when it was published."""
    handlers = {
        event_type: partial(handler.func, playbook=playbook)  # type: ignore[attr-defined]
        for event_type, handler in definition().handlers.items()
    }
    timelines: dict[str, domain.Timeline] = {}
    for event, published_at in events:
        decision = handlers[type(event)](timelines.get(event.partition_key), event, published_at)
        timelines[event.partition_key] = decision.state
    return list(timelines.values())


def report_of(timelines: list[domain.Timeline], now: datetime = NOW) -> dict[str, Any]:
    return domain.report(timelines, now, PLAYBOOK).model_dump(mode="json")


def test_the_report_of_a_known_event_set_has_the_figures_worked_out_by_hand() -> None:
    assert_report_figures(report_of(timelines_from(known_events())))


def test_the_same_events_in_another_order_give_the_same_report() -> None:
    # Kafka keeps order within a topic only: a deal's events on different topics may come in any order.
    in_order = report_of(timelines_from(known_events()))
    reversed_order = report_of(timelines_from(reversed(known_events())))

    assert reversed_order == in_order


def test_a_timeline_lists_every_event_of_the_deal_in_time_order() -> None:
    (timeline,) = timelines_from(event for event in known_events() if event[0].partition_key == "deal-c")

    assert [entry.event for entry in timeline.entries] == [
        "prospect.identified",
        "lead.qualified",
        "deal.stage_changed",
        "deal.stage_changed",
        "deal.lost",
    ]
    assert [(stay.stage, stay.entered_at, stay.left_at) for stay in domain.stays(timeline)] == [
        ("qualification", day(10, 3), day(10, 13)),
        ("presentation", day(10, 13), day(10, 23)),
        ("lost", day(10, 23), None),
    ]
    assert (timeline.loss_reason, timeline.lost_at) == ("price", day(10, 23))


def test_a_currency_without_a_rate_is_kept_in_its_own_currency_and_named() -> None:
    events = [
        (prospect("deal-chf", "anna.schmidt"), day(10, 1)),
        (qualified("deal-chf", "anna.schmidt", day(10, 2), 10_000, "CHF", None), day(10, 2)),
        (moved("deal-chf", None, "presentation", day(10, 2)), day(10, 2)),
    ]
    forecast = domain.forecast(timelines_from(events), PLAYBOOK)

    assert forecast.unconverted_currencies == ["CHF"]
    assert forecast.total.by_currency["CHF"].weighted_minor == 2_000
    assert (forecast.total.amount_minor, forecast.total.weighted_minor) == (0, 0)


def won_deal(
    deal_id: str, amount: int, currency: str, qualified_at: datetime, won_at: datetime
) -> list[tuple[Event, datetime]]:
    return [
        (prospect(deal_id, "anna.schmidt"), qualified_at),
        (qualified(deal_id, "anna.schmidt", qualified_at, amount, currency, None), qualified_at),
        (moved(deal_id, None, "presentation", qualified_at), qualified_at),
        (moved(deal_id, "presentation", "won", won_at), won_at),
        (
            DealWon(
                deal_id=deal_id,
                customer=Company(name=f"Company {deal_id}"),
                contact=Contact(email=f"buyer@{deal_id}.example"),
                owner="anna.schmidt",
                lines=[],
                amount=Money(amount_minor=amount, currency=currency),
                won_at=won_at,
                stage_history=[],
            ),
            won_at,
        ),
    ]


def test_amounts_are_converted_as_money_whatever_each_currencys_minor_unit(tmp_path: Path) -> None:
    # JPY has no minor unit (1 minor unit is 1 yen), KWD three decimals (1,000 fils a dinar), EUR two.
    playbook = playbook_with(tmp_path, rate_to_reporting={"EUR": 1, "JPY": "0.0062", "KWD": "2.95"})
    events = [
        (prospect("deal-jpy", "anna.schmidt"), day(10, 1)),
        (qualified("deal-jpy", "anna.schmidt", day(10, 2), 1_000_000, "JPY", None), day(10, 2)),
        (moved("deal-jpy", None, "presentation", day(10, 2)), day(10, 2)),
        (moved("deal-jpy", "presentation", "proposal", day(10, 3)), day(10, 3)),
        (prospect("deal-kwd", "anna.schmidt"), day(10, 1)),
        (qualified("deal-kwd", "anna.schmidt", day(10, 2), 10_000, "KWD", None), day(10, 2)),
        (moved("deal-kwd", None, "presentation", day(10, 2)), day(10, 2)),
    ]
    forecast = domain.forecast(timelines_from(events, playbook), playbook)

    # 1,000,000 JPY = 6,200.00 EUR (620,000 cents), in proposal at 0.4; 10.000 KWD = 29.50 EUR at 0.2.
    assert forecast.total.amount_minor == 620_000 + 2_950
    assert forecast.total.weighted_minor == 248_000 + 590
    assert forecast.total.by_currency["JPY"].amount_minor == 1_000_000  # in its own minor units

    won = won_deal("deal-won-jpy", 5_000_000, "JPY", day(10, 1), day(10, 21))
    velocity = domain.bottlenecks_for(timelines_from(won, playbook), "all", NOW, playbook).velocity
    assert velocity.average_won_minor == 3_100_000  # 5,000,000 JPY = 31,000.00 EUR


def test_a_cycle_shorter_than_the_playbooks_minimum_gives_no_velocity_figure() -> None:
    # Won an hour after it was qualified: dividing by 0.04 days would claim a huge velocity.
    events = [
        *won_deal("deal-fast", 100_000, "EUR", day(10, 1), day(10, 1, hour=10)),
        (prospect("deal-open", "anna.schmidt"), day(10, 1)),
    ]
    velocity = domain.bottlenecks_for(timelines_from(events), "all", NOW, PLAYBOOK).velocity

    # (the playbook's velocity_min_cycle_days is 1)
    assert (velocity.won, velocity.open_deals, velocity.average_cycle_days) == (1, 1, 0.04)
    assert velocity.per_day_minor is None

    no_win = domain.bottlenecks_for(timelines_from(events[-1:]), "all", NOW, PLAYBOOK).velocity
    assert (no_win.average_cycle_days, no_win.per_day_minor) == (None, None)

    slower = won_deal("deal-slow", 100_000, "EUR", day(10, 1), day(10, 3))
    ok = domain.bottlenecks_for(timelines_from([*slower, events[-1]]), "all", NOW, PLAYBOOK).velocity
    assert (ok.average_cycle_days, ok.per_day_minor) == (2.0, 50_000)  # 1 open x 1 x 100,000 / 2 days


def test_p90_is_the_nearest_rank() -> None:
    assert domain.p90([5.0]) == 5.0
    assert domain.p90([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]) == 9.0
    assert domain.p90([3.0, 1.0, 2.0]) == 3.0


# --- stalls ----------------------------------------------------------------------------------------


def negotiating(since: datetime) -> domain.Timeline:
    (timeline,) = timelines_from(
        [
            (prospect("deal-s", "anna.schmidt"), since - timedelta(days=3)),
            (qualified("deal-s", "anna.schmidt", since - timedelta(days=2), 10_000, "EUR", None), since),
            (moved("deal-s", "proposal", "negotiation", since), since),
        ]
    )
    return timeline


def reach(timeline: domain.Timeline, stall: Deadline, at: datetime) -> tuple[domain.Timeline, list[Event]]:
    deadline = DeadlineReached(
        deal_id="deal-s", stage_service="insights", deadline_id=stall.id, due_at=stall.due_at
    )
    decision = definition().handlers[DeadlineReached](timeline, deadline, at)
    return decision.state, decision.events


def test_a_deal_without_progress_for_the_stages_days_raises_deal_stalled_once() -> None:
    since = day(10, 1)
    timeline = negotiating(since)
    [stall] = domain.deadlines(timeline, PLAYBOOK)
    due_at = stall.due_at
    assert due_at == since + timedelta(days=14)  # negotiation stalls after 14 days
    assert (stall.kind, stall.key) == ("stalled", "negotiation:20261001T090000.000000Z")

    timeline, events = reach(timeline, stall, due_at + timedelta(hours=1))
    assert events == [
        DealStalled(
            deal_id="deal-s",
            owner="anna.schmidt",
            stage="negotiation",
            stalled_since=since,
            days_without_progress=14,
            next_step=None,  # the prospect's first touch belonged to qualification
            detected_at=due_at + timedelta(hours=1),
        )
    ]
    assert domain.deadlines(timeline, PLAYBOOK) == []  # nothing more pending for this stall

    _, again = reach(timeline, stall, due_at + timedelta(days=1))
    assert again == []


def test_a_stall_is_raised_once_per_progress_point_even_when_the_stall_days_change(tmp_path: Path) -> None:
    since = day(10, 1)
    [stall] = domain.deadlines(negotiating(since), PLAYBOOK)
    raised, _ = reach(negotiating(since), stall, stall.due_at)
    longer = playbook_with(tmp_path, stages={"negotiation": {"stall_days": 20}})

    assert domain.deadlines(raised, longer) == []
    assert [d.due_at for d in domain.deadlines(negotiating(since), longer)] == [since + timedelta(days=20)]


def test_a_stall_raised_before_deadlines_were_typed_is_not_raised_again() -> None:
    since = day(10, 1)
    legacy = negotiating(since).model_copy(
        update={"stall_raised": "stalled:negotiation:20261001T090000.000000Z"}
    )

    assert domain.deadlines(legacy, PLAYBOOK) == []


@pytest.mark.parametrize("deadline_id", ["stalled:negotiation:20261001T090000.000000Z", "stalled/x@y", ""])
def test_an_id_that_is_no_pending_stall_changes_nothing(deadline_id: str) -> None:
    timeline = negotiating(day(10, 1))
    deadline = DeadlineReached(
        deal_id="deal-s", stage_service="insights", deadline_id=deadline_id, due_at=NOW
    )

    decision = definition().handlers[DeadlineReached](timeline, deadline, NOW)

    assert (decision.state, decision.events) == (timeline, [])


def test_progress_ends_a_stall_and_the_next_stall_is_raised_again() -> None:
    since = day(10, 1)
    timeline = negotiating(since)
    [first_stall] = domain.deadlines(timeline, PLAYBOOK)
    due_at = first_stall.due_at
    timeline, _ = reach(timeline, first_stall, due_at)

    later = due_at + timedelta(days=2)
    timeline = domain.on_stage_changed(
        timeline, moved("deal-s", "negotiation", "closing", later), later, PLAYBOOK
    ).state
    [second_stall] = domain.deadlines(timeline, PLAYBOOK)
    assert second_stall.id != first_stall.id
    second_due = second_stall.due_at
    assert second_due == later + timedelta(days=7)  # closing stalls after 7 days

    _, events = reach(timeline, second_stall, second_due)
    assert [(e.stage, e.days_without_progress) for e in events if isinstance(e, DealStalled)] == [
        ("closing", 7)
    ]


def test_a_deadline_the_deal_has_moved_past_changes_nothing() -> None:
    since = day(10, 1)
    timeline = negotiating(since)
    [stale] = domain.deadlines(timeline, PLAYBOOK)
    timeline = domain.on_stage_changed(
        timeline, moved("deal-s", "negotiation", "closing", since), since + timedelta(days=1), PLAYBOOK
    ).state

    unchanged, events = reach(timeline, stale, stale.due_at)
    assert events == []
    assert unchanged == timeline


def test_a_stalled_qualification_names_its_latest_next_step() -> None:
    timelines = {t.deal_id: t for t in timelines_from(known_events())}
    (stalled_e,) = [c for c in domain.stalled(timelines.values(), NOW, PLAYBOOK) if c.deal_id == "deal-e"]

    assert stalled_e.next_step == NextStep(action="touch_2", due_at=day(10, 23))
    assert stalled_e.days_without_progress == 20.12  # since the next step of 21 October, 09:00


def test_closed_deals_never_stall() -> None:
    (won,) = timelines_from(event for event in known_events() if event[0].partition_key == "deal-b")
    (lost,) = timelines_from(event for event in known_events() if event[0].partition_key == "deal-c")

    assert domain.deadlines(won, PLAYBOOK) == []
    assert domain.deadlines(lost, PLAYBOOK) == []


# --- limits: a timeline's document stays bounded, its figures stay right ---------------------------


def limited(**limits: int) -> InsightsPlaybook:
    return PLAYBOOK.model_copy(update={"limits": Limits(**limits)})


def test_the_playbook_limits_entries_and_visits() -> None:
    assert PLAYBOOK.limits == Limits(timeline_entries=200, stage_visits=100)
    assert InsightsPlaybook.model_validate(PLAYBOOK.model_dump(exclude={"limits"})).limits == PLAYBOOK.limits


def next_steps(deal_id: str, count: int) -> list[tuple[Event, datetime]]:
    start = day(10, 1)
    return [
        (
            NextStepScheduled(
                deal_id=deal_id,
                owner="anna.schmidt",
                next_step=NextStep(action=f"touch_{n}", due_at=start + timedelta(days=n + 1)),
                touches_done=n,
                touches_planned=count,
            ),
            start + timedelta(hours=n),
        )
        for n in range(count)
    ]


def test_a_timeline_keeps_its_newest_entries_and_counts_the_others() -> None:
    events = next_steps("deal-n", 12)

    (timeline,) = timelines_from(events, limited(timeline_entries=5))
    (out_of_order,) = timelines_from(reversed(events), limited(timeline_entries=5))

    assert [entry.detail.split()[2] for entry in timeline.entries] == [f"touch_{n}" for n in range(7, 12)]
    assert timeline.entries_folded == 7
    assert (out_of_order.entries, out_of_order.entries_folded) == (timeline.entries, 7)
    assert timeline.next_step == NextStep(action="touch_11", due_at=day(10, 13))


def nurture_cycles(deal_id: str, cycles: int) -> list[tuple[Event, datetime]]:
    """A lead nurtured and reopened week after week, months long: two days open, five in nurture each time."""
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    events: list[tuple[Event, datetime]] = [(prospect(deal_id, "anna.schmidt"), start)]
    for cycle in range(cycles):
        nurtured_at, reopened_at = (
            start + timedelta(days=7 * cycle + 2),
            start + timedelta(days=7 * cycle + 7),
        )
        events += [
            (LeadNurtured(deal_id=deal_id, reason="not yet", reopen_on=reopened_at.date()), nurtured_at),
            (
                QualificationReopened(deal_id=deal_id, owner="anna.schmidt", reopened_at=reopened_at),
                reopened_at,
            ),
        ]
    presentation_at = start + timedelta(days=7 * cycles + 2)
    return [*events, (moved(deal_id, None, "presentation", presentation_at), presentation_at)]


def stage_seconds(timeline: domain.Timeline) -> dict[str, float]:
    """The time the deal spent in each stage it has left, itemised stays and folded ones together."""
    seconds: dict[str, float] = {}
    for stay in domain.stays(timeline):
        if stay.left_at is not None:
            seconds[stay.stage] = (
                seconds.get(stay.stage, 0) + (stay.left_at - stay.entered_at).total_seconds()
            )
    for folded in timeline.folded.stays:
        seconds[folded.stage] = seconds.get(folded.stage, 0) + folded.seconds
    return seconds


def test_folded_stage_visits_keep_the_time_in_stage_and_every_report_figure() -> None:
    events = [*known_events(), *nurture_cycles("deal-x", 30)]
    playbook = limited(stage_visits=4)

    everything = {t.deal_id: t for t in timelines_from(events)}
    bounded = {t.deal_id: t for t in timelines_from(events, playbook)}
    bounded_reversed = {t.deal_id: t for t in timelines_from(reversed(events), playbook)}

    assert len(everything["deal-x"].visits) == 62
    assert all(len(t.visits) <= 4 for t in [*bounded.values(), *bounded_reversed.values()])
    assert (bounded["deal-x"].folded.visits, bounded["deal-b"].folded.visits) == (58, 3)
    for deal_id, timeline in everything.items():
        assert stage_seconds(bounded[deal_id]) == stage_seconds(timeline), deal_id
        assert stage_seconds(bounded_reversed[deal_id]) == stage_seconds(timeline), deal_id
    assert report_of(list(bounded.values())) == report_of(list(everything.values()))
    assert report_of(list(bounded_reversed.values())) == report_of(list(everything.values()))


def test_a_first_visit_that_comes_last_still_opens_the_first_stay() -> None:
    # A rebuild may read the prospects topic after the qualifications topic: the first visit comes last.
    events = nurture_cycles("deal-x", 6)
    late_first = [*events[1:], events[0]]

    (bounded,) = timelines_from(late_first, limited(stage_visits=3))
    (everything,) = timelines_from(events)

    assert stage_seconds(bounded) == stage_seconds(everything)
    assert domain.reached_at(bounded, "qualification", PLAYBOOK) == datetime(2026, 1, 5, 9, tzinfo=UTC)
    assert report_of([bounded]) == report_of([everything])


# --- playbook --------------------------------------------------------------------------------------


def playbook_with(
    tmp_path: Path, stages: dict[str, dict[str, Any]] | None = None, teams: Any = None, **changes: Any
) -> InsightsPlaybook:
    """The default playbook document with changes to its stages, its teams and the insights section."""
    content = yaml.safe_load(DEFAULT_DOCUMENT.read_text())
    content["insights"] |= changes
    for stage, fields in (stages or {}).items():
        content["stages"][stage] = content["stages"].get(stage, {}) | fields
    if teams is not None:
        content["teams"] = teams
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml.safe_dump(content))
    return load_playbook(path)


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"stages": {"proposal": {"probability": 1.5}}}, "less than or equal to 1"),
        ({"rate_to_reporting": {"EUR": 0.9}}, "reporting currency's own rate must be 1"),
        ({"stages": {"closing": {"stall_days": 0}}}, "greater than or equal to 1"),
        (
            {"teams": [{"name": t, "countries": [], "reps": [{"name": "x"}]} for t in ("a", "b")]},
            "one team only",
        ),
    ],
)
def test_a_playbook_that_does_not_add_up_is_refused(
    tmp_path: Path, changes: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        playbook_with(tmp_path, **changes)


def test_owners_map_to_their_team_and_unassigned_leads_to_the_named_team() -> None:
    assert PLAYBOOK.team_of("anna.schmidt") == "emea"
    assert PLAYBOOK.team_of("unassigned:americas") == "americas"
    assert PLAYBOOK.team_of("someone.new") == "no_team"


def test_a_deals_first_stage_change_survives_the_wire() -> None:
    # Events are sent without their null fields, so a field that may be null must not be required.
    first = moved("deal-a", None, "presentation", day(10, 5))
    record = encode(first, topic="t", source="/test")

    assert decode(record.headers, record.value, max_bytes=1_000_000).data == first


# --- rep actions (issue 16) ------------------------------------------------------------------------


def open_deal(deal_id: str, owner: str = "anna.schmidt") -> list[tuple[Event, datetime]]:
    at = day(11, 2)
    return [
        (prospect(deal_id, owner), at),
        (qualified(deal_id, owner, at, 100_000, "EUR", date(2026, 12, 15)), at),
        (moved(deal_id, None, "proposal", at), at),
    ]


def by_key(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {row["key"]: row["amount_minor"] for row in rows}


def test_an_owner_change_moves_the_deal_in_the_forecast_by_owner_and_team() -> None:
    change = DealOwnerChanged(
        deal_id="r-1", previous_owner="anna.schmidt", owner="jordan.lee", changed_at=day(11, 3), actor="boss"
    )
    events = [*open_deal("r-1"), (change, day(11, 3))]
    for ordered in (events, list(reversed(events))):  # an older event naming the old owner comes last
        [timeline] = timelines_from(ordered)
        assert timeline.owner == "jordan.lee"
        forecast = report_of([timeline])["forecast"]
        assert by_key(forecast["by_owner"]) == {"jordan.lee": 100_000}
        assert set(by_key(forecast["by_team"])) == {PLAYBOOK.team_of("jordan.lee")}
        assert any(entry.event == "deal.owner_changed" for entry in timeline.entries)


def test_a_correction_moves_amount_and_close_month_and_keeps_the_previous_values() -> None:
    correction = DealCorrected(
        deal_id="r-2",
        previous_amount=Money(amount_minor=100_000, currency="EUR"),
        amount=Money(amount_minor=250_000, currency="EUR"),
        previous_expected_close_date=date(2026, 12, 15),
        expected_close_date=date(2027, 1, 31),
        actor="anna.schmidt",
        reason="scope",
        corrected_at=day(11, 4),
    )
    events = [*open_deal("r-2"), (correction, day(11, 4))]
    for ordered in (events, list(reversed(events))):
        [timeline] = timelines_from(ordered)
        assert (timeline.amount, timeline.expected_close_date) == (correction.amount, date(2027, 1, 31))
        forecast = report_of([timeline])["forecast"]
        assert [row["key"] for row in forecast["by_month"]] == ["2027-01"]
        assert forecast["total"]["amount_minor"] == 250_000
        [entry] = [entry for entry in timeline.entries if entry.event == "deal.corrected"]
        assert "100000 EUR -> 250000 EUR" in entry.detail
        assert "2026-12-15 -> 2027-01-31" in entry.detail


def test_a_quote_sent_before_a_correction_does_not_undo_it() -> None:
    correction = DealCorrected(
        deal_id="r-3",
        previous_amount=Money(amount_minor=100_000, currency="EUR"),
        amount=Money(amount_minor=90_000, currency="EUR"),
        corrected_at=day(11, 5),
    )
    quote = sent_quote("r-3", 150_000, "EUR")
    [timeline] = timelines_from([*open_deal("r-3"), (correction, day(11, 5)), (quote, day(11, 4))])
    assert timeline.amount == correction.amount


def test_a_reopened_deal_is_open_again_and_its_loss_still_counts_in_its_cycle() -> None:
    lost = DealLost(deal_id="r-4", stage="proposal", reason_code="timing", lost_at=day(11, 3))
    reopened = DealReopened(deal_id="r-4", stage="proposal", cycle=2, reopened_at=day(11, 6), reason="back")
    events = [
        *open_deal("r-4"),
        (moved("r-4", "proposal", "lost", day(11, 3)), day(11, 3)),
        (lost, day(11, 3)),
        (reopened, day(11, 6)),
        (moved("r-4", "lost", "proposal", day(11, 6)), day(11, 6)),
    ]
    [timeline] = timelines_from(events)
    assert (domain.current_stage(timeline), timeline.cycle, timeline.lost_at) == ("proposal", 2, None)
    assert [loss.reason for loss in domain.losses(timeline)] == ["timing"]
    report = report_of([timeline])
    assert [card["deal_id"] for card in report["board"]["proposal"]] == ["r-4"]
    assert report["board"]["proposal"][0]["cycle"] == 2
    assert report["forecast"]["total"]["deals"] == 1
    [all_time] = [b for b in report["bottlenecks"] if b["period"] == "all"]
    assert (all_time["velocity"]["open_deals"], all_time["velocity"]["lost"]) == (1, 1)
    assert all_time["loss_reasons"] == [{"reason": "timing", "deals": 1}]


def test_the_card_shows_a_next_step_overdue_or_missing() -> None:
    step = NextStep(action="send_case_study", due_at=day(11, 5))
    set_step = DealNextStepSet(
        deal_id="r-5", stage="proposal", next_step=step, source="activity.logged", set_at=day(11, 3)
    )
    overdue = NextStepOverdue(
        deal_id="r-5", owner="anna.schmidt", stage="proposal", next_step=step, due_at=day(11, 5)
    )
    [timeline] = timelines_from([*open_deal("r-5"), (set_step, day(11, 3))])
    card = domain.card(timeline, day(11, 4), PLAYBOOK)
    assert card is not None
    assert (card.next_step, card.next_step_overdue, card.next_step_missing) == (step, False, False)
    [timeline] = timelines_from([*open_deal("r-5"), (set_step, day(11, 3)), (overdue, day(11, 5))])
    card = domain.card(timeline, day(11, 4), PLAYBOOK)  # raised, whatever the clock says
    assert card is not None
    assert card.next_step_overdue

    missing = NextStepMissing(deal_id="r-6", owner="anna.schmidt", stage="proposal", detected_at=day(11, 2))
    [timeline] = timelines_from([*open_deal("r-6"), (missing, day(11, 2))])
    card = domain.card(timeline, day(11, 4), PLAYBOOK)
    assert card is not None
    assert (card.next_step, card.next_step_missing) == (None, True)
    [timeline] = timelines_from(
        [
            *open_deal("r-6"),
            (missing, day(11, 2)),
            (set_step.model_copy(update={"deal_id": "r-6"}), day(11, 3)),
        ]
    )
    card = domain.card(timeline, day(11, 4), PLAYBOOK)
    assert card is not None
    assert (card.next_step, card.next_step_missing) == (step, False)
