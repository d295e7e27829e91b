"""Onboarding on the real broker and database: on time, at risk, and the loop back into qualification."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from contracts.events import (
    Company,
    Contact,
    DealWon,
    Money,
    OnboardingTaskCompleted,
    QuoteLine,
    UsageReported,
)
from services.onboarding.service import definition as onboarding
from services.qualification.service import definition as qualification
from shared.runtime import StageService
from shared.settings import Settings
from tests.integration.helpers import Clock, by, events_when, send

pytestmark = pytest.mark.integration
WON_AT = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
# The late plan is won when the on-time one goes live, twelve days on. The services' clock starts then:
# every activity the test sends lies in its past, as the services require (a later one is refused).
LATE_WON_AT = WON_AT + timedelta(days=12)


def won(deal_id: str, *products: str, at: datetime = WON_AT) -> DealWon:
    return DealWon(
        deal_id=deal_id,
        customer=Company(name=f"Customer {deal_id}"),
        contact=Contact(email=f"cto@{deal_id}.example"),
        owner="anna.schmidt",
        lines=[QuoteLine(product=product, quantity=1, unit_price_minor=1000) for product in products],
        amount=Money(amount_minor=1000 * len(products), currency="EUR"),
        won_at=at,
        stage_history=[],
    )


def done(deal_id: str, task: str, day: int) -> OnboardingTaskCompleted:
    return OnboardingTaskCompleted(deal_id=deal_id, task=task, occurred_at=WON_AT + timedelta(days=day))


async def test_on_time_at_risk_duplicates_and_an_expansion_deal_opened_in_qualification(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"timer_tick_seconds": 0.2})
    clock = Clock(LATE_WON_AT + timedelta(minutes=1))
    async with (
        StageService(onboarding(), settings, clock=clock).build_app(),
        StageService(qualification(), settings, clock=clock).build_app(),
    ):
        # The on-time plan's tasks, logged after the fact, go first: they wait for its deal and are
        # applied as it opens, so none of its due dates (past, by the clock) is ever found pending.
        await send(
            settings,
            *(
                done("on-time", task, day)
                for task, day in [("kickoff", 1), ("technical_setup", 5), ("training", 9)]
            ),
            done("on-time", "go_live", 12),
        )
        await send(settings, won("on-time", "dealflow-platform"), event_id="won-1")
        await send(settings, won("on-time", "dealflow-platform"), event_id="won-1")  # the same event again
        await send(settings, won("on-time", "dealflow-platform"))  # the same deal, won twice
        await send(settings, won("late", "dealflow-seat", at=LATE_WON_AT))
        await send(
            settings,
            UsageReported(deal_id="late", occurred_at=LATE_WON_AT, seats_used=10, seats_purchased=10),
        )
        await events_when(settings, lambda seen: len(by(seen, "on-time", "onboarding.completed.v1")) == 1)
        clock.now = LATE_WON_AT + timedelta(days=4)  # the late plan's kickoff was due on its day 3
        events = await events_when(
            settings,
            lambda seen: (
                len(by(seen, "late", "onboarding.at_risk.v1")) == 1
                and len(by(seen, "on-time-x1", "deal.expansion_opened.v1")) == 1
                and len(by(seen, "late-x1", "deal.expansion_opened.v1")) == 1
            ),
        )
        await asyncio.sleep(1.5)
        events = await events_when(settings, lambda seen: True)

    assert len(by(events, "on-time", "onboarding.started.v1")) == 1
    [completed] = by(events, "on-time", "onboarding.completed.v1")
    assert completed.data is not None
    assert (completed.data["time_to_value_seconds"], completed.data["on_time_ratio"]) == (12 * 86400, 1.0)
    assert by(events, "on-time", "onboarding.at_risk.v1") == []
    [at_risk] = by(events, "late", "onboarding.at_risk.v1")
    assert at_risk.data is not None
    assert at_risk.data["task"] == "kickoff"
    [expansion] = by(events, "on-time-x1", "deal.expansion_opened.v1")
    assert expansion.data is not None
    assert (expansion.data["original_deal_id"], expansion.data["product"]) == ("on-time", "analytics-addon")
    assert len(by(events, "on-time-x1", "qualification.next_step_scheduled.v1")) == 1
    [seats] = by(events, "late-x1", "deal.expansion_opened.v1")
    assert seats.data is not None
    assert seats.data["product"] == "dealflow-seat"
