"""A known set of stage events for eight deals, and the report figures they must give, worked out by hand.

Every event happens at 09:00 on the day given, so every stay lasts whole days. `NOW` is 10 November 2026.
Amounts are in minor units; the playbook converts USD at 0.92 and GBP at 1.17 to EUR.

deal a (anna.schmidt): prospect 1 Oct, presentation 5 Oct, proposal 9 Oct, a 120000 EUR quote sent and
  negotiation 15 Oct; expected to close in November.
deal b (jordan.lee): prospect 2 Oct, presentation 4, proposal 6, negotiation 16, closing 20, won 22 Oct
  for 250000 USD, onboarding an hour later.
deal c (anna.schmidt): prospect 3 Oct, qualified for 50000 GBP and presentation 13 Oct, lost 23 Oct (price).
deal d (ole.berg): prospect 6 Oct, disqualified 12 Oct (bant_budget_not_met).
deal e (unassigned:americas): prospect 20 Oct, next step scheduled 21 Oct; no amount yet.
deal f (jordan.lee): prospect 25 Oct, presentation 2 Nov (80000 EUR, no close date), proposal 5 Nov.
deal g (anna.schmidt): prospect 1 Nov, presentation 3 Nov (40000 USD), lost 6 Nov (competitor).
deal h (anna.schmidt): prospect 8 Oct, presentation 10 Oct (30000 GBP, closing in November), proposal 12,
  negotiation 14, closing 24 Oct.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from contracts import Event
from contracts.events import (
    Company,
    Contact,
    CriterionResult,
    DealLost,
    DealStageChanged,
    DealWon,
    FitTier,
    LeadDisqualified,
    LeadQualified,
    Money,
    Needs,
    NextStep,
    NextStepScheduled,
    OnboardingStarted,
    OnboardingTask,
    ProspectIdentified,
    Quote,
    QuoteIssued,
    QuoteLine,
)

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def day(month: int, day_of_month: int, hour: int = 9) -> datetime:
    return datetime(2026, month, day_of_month, hour, 0, tzinfo=UTC)


PROBABILITY = {
    "presentation": 0.2,
    "proposal": 0.4,
    "negotiation": 0.6,
    "closing": 0.8,
    "won": 1.0,
    "lost": 0.0,
}


def prospect(deal_id: str, owner: str) -> ProspectIdentified:
    return ProspectIdentified(
        deal_id=deal_id,
        lead_id=deal_id,
        contact=Contact(email=f"buyer@{deal_id}.example"),
        company=Company(name=f"Company {deal_id}"),
        source="web",
        marketing_consent=False,
        fit_score=80,
        tier=FitTier.A,
        fit_explanation=[CriterionResult(criterion="industry", matched=True, points=35, detail="saas")],
        owner=owner,
        next_step=NextStep(action="first_touch", due_at=NOW),
    )


def qualified(
    deal_id: str, owner: str, at: datetime, amount: int, currency: str, close: date | None
) -> LeadQualified:
    return LeadQualified(
        deal_id=deal_id,
        owner=owner,
        contact=Contact(email=f"buyer@{deal_id}.example"),
        company=Company(name=f"Company {deal_id}"),
        framework="BANT",
        needs=Needs(),
        amount=Money(amount_minor=amount, currency=currency),
        expected_close_date=close,
        qualified_at=at,
    )


def moved(deal_id: str, previous: str | None, stage: str, at: datetime) -> DealStageChanged:
    return DealStageChanged(
        deal_id=deal_id, previous_stage=previous, stage=stage, probability=PROBABILITY[stage], changed_at=at
    )


def path(deal_id: str, *stages: tuple[str, datetime]) -> list[tuple[Event, datetime]]:
    """deal.stage_changed events along the stages, each published when it happened."""
    previous: list[str | None] = [None, *(stage for stage, _ in stages)]
    return [(moved(deal_id, previous[index], stage, at), at) for index, (stage, at) in enumerate(stages)]


def sent_quote(deal_id: str, total: int, currency: str) -> QuoteIssued:
    money = Money(amount_minor=total, currency=currency)
    return QuoteIssued(
        deal_id=deal_id,
        quote=Quote(
            version=1,
            lines=[
                QuoteLine(product="dealflow-platform", quantity=1, unit_price_minor=total, total_minor=total)
            ],
            discount_percent=0,
            subtotal=money,
            total=money,
            list_total=money,
        ),
        status="sent",
    )


def known_events() -> list[tuple[Event, datetime]]:
    """Each event with the time it was published (its CloudEvents `time`)."""
    events: list[tuple[Event, datetime]] = []
    # a: in negotiation since 15 Oct, after a 120000 EUR quote was sent
    events += [(prospect("deal-a", "anna.schmidt"), day(10, 1))]
    events += [
        (qualified("deal-a", "anna.schmidt", day(10, 5), 100_000, "EUR", date(2026, 11, 30)), day(10, 5))
    ]
    events += path("deal-a", ("presentation", day(10, 5)), ("proposal", day(10, 9)))
    events += [(sent_quote("deal-a", 120_000, "EUR"), day(10, 15))]
    events += [(moved("deal-a", "proposal", "negotiation", day(10, 15)), day(10, 15))]
    # b: won on 22 Oct for 250000 USD, onboarding since an hour later
    events += [(prospect("deal-b", "jordan.lee"), day(10, 2))]
    events += [
        (qualified("deal-b", "jordan.lee", day(10, 4), 200_000, "USD", date(2026, 12, 15)), day(10, 4))
    ]
    events += path(
        "deal-b",
        ("presentation", day(10, 4)),
        ("proposal", day(10, 6)),
        ("negotiation", day(10, 16)),
        ("closing", day(10, 20)),
        ("won", day(10, 22)),
    )
    events += [
        (
            DealWon(
                deal_id="deal-b",
                customer=Company(name="Company deal-b"),
                contact=Contact(email="buyer@deal-b.example"),
                owner="jordan.lee",
                lines=[],
                amount=Money(amount_minor=250_000, currency="USD"),
                won_at=day(10, 22),
                stage_history=[],
            ),
            day(10, 22),
        ),
        (
            OnboardingStarted(
                deal_id="deal-b",
                customer=Company(name="Company deal-b"),
                owner="jordan.lee",
                plan=[OnboardingTask(task="go_live", owner_role="csm", due_at=day(11, 22))],
                started_at=day(10, 22, hour=10),
            ),
            day(10, 22, hour=10),
        ),
    ]
    # c: lost on price in the presentation
    events += [(prospect("deal-c", "anna.schmidt"), day(10, 3))]
    events += [(qualified("deal-c", "anna.schmidt", day(10, 13), 50_000, "GBP", None), day(10, 13))]
    events += path("deal-c", ("presentation", day(10, 13)), ("lost", day(10, 23)))
    events += [
        (
            DealLost(deal_id="deal-c", stage="presentation", reason_code="price", lost_at=day(10, 23)),
            day(10, 23),
        )
    ]
    # d: disqualified
    events += [(prospect("deal-d", "ole.berg"), day(10, 6))]
    events += [
        (
            LeadDisqualified(
                deal_id="deal-d", reason_code="bant_budget_not_met", disqualified_at=day(10, 12)
            ),
            day(10, 12),
        )
    ]
    # e: still in qualification; its last progress is the next step of 21 Oct
    events += [(prospect("deal-e", "unassigned:americas"), day(10, 20))]
    events += [
        (
            NextStepScheduled(
                deal_id="deal-e",
                owner="unassigned:americas",
                next_step=NextStep(action="touch_2", due_at=day(10, 23)),
                touches_done=1,
                touches_planned=6,
            ),
            day(10, 21),
        )
    ]
    # f: in proposal since 5 Nov, no close date
    events += [(prospect("deal-f", "jordan.lee"), day(10, 25))]
    events += [(qualified("deal-f", "jordan.lee", day(11, 2), 80_000, "EUR", None), day(11, 2))]
    events += path("deal-f", ("presentation", day(11, 2)), ("proposal", day(11, 5)))
    # g: lost to a competitor
    events += [(prospect("deal-g", "anna.schmidt"), day(11, 1))]
    events += [
        (qualified("deal-g", "anna.schmidt", day(11, 3), 40_000, "USD", date(2026, 11, 20)), day(11, 3))
    ]
    events += path("deal-g", ("presentation", day(11, 3)), ("lost", day(11, 6)))
    events += [
        (
            DealLost(
                deal_id="deal-g",
                stage="presentation",
                reason_code="competitor",
                competitor="rivalcorp",
                lost_at=day(11, 6),
            ),
            day(11, 6),
        )
    ]
    # h: in closing since 24 Oct
    events += [(prospect("deal-h", "anna.schmidt"), day(10, 8))]
    events += [
        (qualified("deal-h", "anna.schmidt", day(10, 10), 30_000, "GBP", date(2026, 11, 30)), day(10, 10))
    ]
    events += path(
        "deal-h",
        ("presentation", day(10, 10)),
        ("proposal", day(10, 12)),
        ("negotiation", day(10, 14)),
        ("closing", day(10, 24)),
    )
    return events


# --- the figures, by hand ----------------------------------------------------------------------------

# Forecast: a (negotiation, best case) 120000 EUR x 0.6 = 72000; b (won, closed) 250000 USD = 230000 EUR;
# f (proposal, pipeline) 80000 EUR x 0.4 = 32000; h (closing, commit) 30000 GBP x 0.8 = 24000 GBP
# = 28080 EUR (35100 EUR unweighted). c and g are lost, d disqualified, e has no amount yet.
EXPECTED_FORECAST_TOTAL = {"deals": 4, "amount_minor": 465_100, "weighted_minor": 362_080}
EXPECTED_BY_CATEGORY = {"best_case": 72_000, "closed": 230_000, "commit": 28_080, "pipeline": 32_000}
EXPECTED_BY_CURRENCY = {
    "EUR": {"amount_minor": 200_000, "weighted_minor": 104_000},
    "GBP": {"amount_minor": 30_000, "weighted_minor": 24_000},
    "USD": {"amount_minor": 250_000, "weighted_minor": 250_000},
}
EXPECTED_BY_OWNER = {"anna.schmidt": (2, 155_100, 100_080), "jordan.lee": (2, 310_000, 262_000)}
EXPECTED_BY_TEAM = {"emea": (2, 155_100, 100_080), "americas": (2, 310_000, 262_000)}
EXPECTED_BY_MONTH = {
    "2026-10": (1, 230_000, 230_000),
    "2026-11": (2, 155_100, 100_080),
    "unscheduled": (1, 80_000, 32_000),
}

# Funnel: reached qualification 8, presentation 6 (a b c f g h), proposal 4 (a b f h), negotiation 3
# (a b h), closing 2 (b h), won 1 (b).
EXPECTED_FUNNEL = {
    "qualification": (8, 1, 0.75),
    "presentation": (6, 0, 0.6667),
    "proposal": (4, 1, 0.75),
    "negotiation": (3, 1, 0.6667),
    "closing": (2, 1, 0.5),
    "won": (1, 1, None),
}

# Time in stage, all periods, days of the stays that ended: qualification a4 b2 c10 d6 f8 g2 h2
# (median 4, p90 10); presentation a4 b2 c10 f3 g3 h2 (median 3, p90 10); proposal a6 b10 h2 (6, 10);
# negotiation b4 h10 (7, 10); closing b2.
EXPECTED_TIME_IN_STAGE = {
    "qualification": (7, 4.0, 10.0),
    "presentation": (6, 3.0, 10.0),
    "proposal": (3, 6.0, 10.0),
    "negotiation": (2, 7.0, 10.0),
    "closing": (1, 2.0, 2.0),
    "onboarding": (0, None, None),
}
# October only: the qualification stays that ended in October are a4 b2 c10 d6 h2.
EXPECTED_OCTOBER_QUALIFICATION = (5, 4.0, 10.0)
# November only: f8 g2.
EXPECTED_NOVEMBER_QUALIFICATION = (2, 5.0, 8.0)

# Conversion in October (reached the stage in October, went further by now).
EXPECTED_OCTOBER_CONVERSION = {
    "qualification": (7, 5, 0.7143),
    "presentation": (4, 3, 0.75),
    "proposal": (3, 3, 1.0),
    "negotiation": (3, 2, 0.6667),
    "closing": (2, 1, 0.5),
}
EXPECTED_NOVEMBER_CONVERSION = {
    "qualification": (1, 1, 1.0),
    "presentation": (2, 1, 0.5),
    "proposal": (1, 0, 0.0),
    "negotiation": (0, 0, None),
    "closing": (0, 0, None),
}

# Velocity over all time: 4 open deals (a e f h) x win rate 1/3 (b won; c, g lost) x 230000 average won
# / 20 days' cycle (b: 2 to 22 October) = 15333 EUR minor units a day. October: open at its end a e f h,
# win rate 1/2 (b won, c lost): 4 x 0.5 x 230000 / 20 = 23000.
EXPECTED_VELOCITY_ALL = {
    "open_deals": 4,
    "won": 1,
    "lost": 2,
    "win_rate": 0.3333,
    "average_won_minor": 230_000,
    "average_cycle_days": 20.0,
    "per_day_minor": 15_333,
}
EXPECTED_VELOCITY_OCTOBER = {
    "open_deals": 4,
    "won": 1,
    "lost": 1,
    "win_rate": 0.5,
    "average_won_minor": 230_000,
    "average_cycle_days": 20.0,
    "per_day_minor": 23_000,
}

EXPECTED_BOARD = {
    "qualification": ["deal-e"],
    "nurture": [],
    "presentation": [],
    "proposal": ["deal-f"],
    "negotiation": ["deal-a"],
    "closing": ["deal-h"],
    "won": [],
    "onboarding": ["deal-b"],
    "live": [],
    "lost": ["deal-c", "deal-g"],
    "disqualified": ["deal-d"],
}

# Stalled at NOW: a (negotiation, 14 days, since 15 Oct), e (qualification, 7 days, since 21 Oct), h
# (closing, 7 days, since 24 Oct); f's proposal stall is due on 19 November.
EXPECTED_STALLED = ["deal-a", "deal-e", "deal-h"]


def assert_report_figures(report: dict[str, object]) -> None:
    """Compare a report (as the JSON API returns it) with the figures above."""
    forecast = report["forecast"]
    assert isinstance(forecast, dict)
    total = forecast["total"]
    assert {key: total[key] for key in EXPECTED_FORECAST_TOTAL} == EXPECTED_FORECAST_TOTAL
    assert total["by_category"] == EXPECTED_BY_CATEGORY
    assert total["by_currency"] == EXPECTED_BY_CURRENCY
    for group, expected in (
        ("by_owner", EXPECTED_BY_OWNER),
        ("by_team", EXPECTED_BY_TEAM),
        ("by_month", EXPECTED_BY_MONTH),
    ):
        rows = {
            row["key"]: (row["deals"], row["amount_minor"], row["weighted_minor"]) for row in forecast[group]
        }
        assert rows == expected, group
    categories = {row["key"]: row["weighted_minor"] for row in forecast["by_category"]}
    assert categories == EXPECTED_BY_CATEGORY

    funnel = report["funnel"]
    assert isinstance(funnel, list)
    assert {
        s["stage"]: (s["reached"], s["now_in_stage"], s["conversion_to_next"]) for s in funnel
    } == EXPECTED_FUNNEL

    by_period = {entry["period"]: entry for entry in report["bottlenecks"]}  # type: ignore[attr-defined]
    assert list(by_period) == ["all", "2026-11", "2026-10"]
    times = {
        t["stage"]: (t["stays"], t["median_days"], t["p90_days"]) for t in by_period["all"]["time_in_stage"]
    }
    assert {stage: times[stage] for stage in EXPECTED_TIME_IN_STAGE} == EXPECTED_TIME_IN_STAGE
    october = {
        t["stage"]: (t["stays"], t["median_days"], t["p90_days"])
        for t in by_period["2026-10"]["time_in_stage"]
    }
    november = {
        t["stage"]: (t["stays"], t["median_days"], t["p90_days"])
        for t in by_period["2026-11"]["time_in_stage"]
    }
    assert october["qualification"] == EXPECTED_OCTOBER_QUALIFICATION
    assert november["qualification"] == EXPECTED_NOVEMBER_QUALIFICATION
    for period, expected in (
        ("2026-10", EXPECTED_OCTOBER_CONVERSION),
        ("2026-11", EXPECTED_NOVEMBER_CONVERSION),
    ):
        conversion = {
            c["from_stage"]: (c["entered"], c["converted"], c["rate"])
            for c in by_period[period]["conversion"]
        }
        assert conversion == expected, period
    assert by_period["all"]["velocity"] == EXPECTED_VELOCITY_ALL
    assert by_period["2026-10"]["velocity"] == EXPECTED_VELOCITY_OCTOBER
    assert by_period["all"]["loss_reasons"] == [
        {"reason": "competitor", "deals": 1},
        {"reason": "price", "deals": 1},
    ]
    assert by_period["2026-10"]["loss_reasons"] == [{"reason": "price", "deals": 1}]
    assert by_period["all"]["disqualification_reasons"] == [{"reason": "bant_budget_not_met", "deals": 1}]

    board = report["board"]
    assert isinstance(board, dict)
    assert {stage: [c["deal_id"] for c in cards] for stage, cards in board.items()} == EXPECTED_BOARD
    stalled = report["stalled"]
    assert isinstance(stalled, list)
    assert [c["deal_id"] for c in stalled] == EXPECTED_STALLED
