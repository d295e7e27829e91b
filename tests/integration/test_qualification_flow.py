"""Qualification on the real broker and database: every path, and deadlines under a controllable clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from cli.kafka_io import SeenEvent
from contracts.events import (
    ActivityLogged,
    Company,
    Contact,
    DiscoveryCallLogged,
    NextStep,
    NurtureRequested,
    OwnerChangeRequested,
    ProspectIdentified,
    TouchLogged,
)
from services.qualification.service import definition as qualification
from shared.mongo import make_client, service_database
from shared.runtime import StageService
from shared.settings import Settings
from tests.integration.helpers import Clock, events_when, send

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BANT_MET = {"budget": True, "authority": True, "need": True, "timeline": True}


def prospect(deal_id: str, tier: str = "A", owner: str = "anna.schmidt") -> ProspectIdentified:
    return ProspectIdentified(
        deal_id=deal_id,
        lead_id=deal_id,
        contact=Contact(email=f"{deal_id}@acme.example"),
        company=Company(name="Acme"),
        source="test",
        marketing_consent=False,
        fit_score=90,
        tier=tier,
        owner=owner,
        next_step=NextStep(action="first_touch", due_at=T0 + timedelta(hours=4)),
    )


def emitted(events: list[SeenEvent]) -> Counter[tuple[str, str]]:
    return Counter(
        (event.key, event.type)
        for event in events
        if event.headers.get("ce_source") == "/dealflow/qualification"
    )


async def stored_status(settings: Settings) -> dict[str, str]:
    client = make_client(settings, app_name="test")
    try:
        collection = service_database(client, settings, "qualification")["aggregates"]
        return {doc["_id"]: doc["state"]["status"] async for doc in collection.find({})}
    finally:
        await client.close()


def tuned(settings: Settings) -> Settings:
    return settings.model_copy(update={"timer_tick_seconds": 0.2})


async def test_every_path_qualified_disqualified_nurture_and_no_response(settings: Settings) -> None:
    settings, clock = tuned(settings), Clock(T0)
    service = StageService(qualification(), settings, clock=clock)
    async with service.build_app():
        await send(settings, *(prospect(deal) for deal in ("q", "d", "n", "silent", "acc")), at=T0)
        await send(
            settings,
            TouchLogged(deal_id="q", occurred_at=T0, channel="email", outcome="replied"),
            DiscoveryCallLogged(
                deal_id="q",
                occurred_at=T0,
                answers=BANT_MET,
                estimated_amount={"amount_minor": 90000, "currency": "EUR"},
                actor_role="rep",
            ),
            DiscoveryCallLogged(
                deal_id="d", occurred_at=T0, answers=BANT_MET | {"authority": False}, actor_role="rep"
            ),
            # Two calls with partial answers: the first decides nothing, the second completes them.
            DiscoveryCallLogged(deal_id="acc", occurred_at=T0, answers={"need": True, "authority": False}),
            DiscoveryCallLogged(
                deal_id="acc",
                occurred_at=T0,
                answers={"budget": True, "authority": True, "timeline": True},
                estimated_amount={"amount_minor": 50000, "currency": "EUR"},
                actor_role="manager",
            ),
            NurtureRequested(
                deal_id="n",
                occurred_at=T0,
                reopen_on=(T0 + timedelta(days=60)).date(),
                reason="budget freeze",
            ),
            TouchLogged(deal_id="silent", occurred_at=T0, channel="call", outcome="no_answer"),
        )
        await events_when(settings, lambda seen: emitted(seen)[("n", "lead.nurtured.v1")] == 1)
        clock.now = T0 + timedelta(days=15)  # past tier A's 14-day cadence
        events = await events_when(
            settings, lambda seen: emitted(seen)[("silent", "lead.disqualified.v1")] == 1
        )

    counts = emitted(events)
    assert counts[("q", "lead.qualified.v1")] == 1
    assert counts[("acc", "lead.qualified.v1")] == 1
    assert counts[("acc", "lead.disqualified.v1")] == 0
    assert counts[("d", "lead.disqualified.v1")] == 1
    assert counts[("n", "lead.nurtured.v1")] == 1
    reasons = {e.key: e.data["reason_code"] for e in events if e.type == "lead.disqualified.v1" and e.data}
    assert reasons == {"d": "bant_authority_not_met", "silent": "no_response"}
    assert await stored_status(settings) == {
        "q": "qualified",
        "d": "disqualified",
        "n": "nurture",
        "silent": "disqualified",
        "acc": "qualified",
    }


async def test_each_deadline_fires_once_across_a_restart(settings: Settings) -> None:
    settings, clock = tuned(settings), Clock(T0)
    async with StageService(qualification(), settings, clock=clock).build_app():
        await send(settings, prospect("quiet"), prospect("talks"), at=T0)
        await send(settings, TouchLogged(deal_id="talks", occurred_at=T0, channel="call", outcome="replied"))
        await events_when(
            settings, lambda seen: emitted(seen)[("talks", "qualification.next_step_scheduled.v1")] == 2
        )
        clock.now = T0 + timedelta(hours=5)  # first touch was due at T0 + 4 h
        await events_when(
            settings, lambda seen: emitted(seen)[("quiet", "qualification.sla_breached.v1")] == 1
        )

    async with StageService(qualification(), settings, clock=clock).build_app():
        await asyncio.sleep(2)  # a restarted service scans again: nothing may fire twice
        clock.now = T0 + timedelta(days=31)  # past the cadence (14 days) and the 30-day SLA
        await events_when(
            settings,
            lambda seen: (
                emitted(seen)[("quiet", "lead.disqualified.v1")] == 1
                and emitted(seen)[("talks", "qualification.sla_breached.v1")] == 1
            ),
        )

    async with StageService(qualification(), settings, clock=clock).build_app():
        await asyncio.sleep(2)
        events = await events_when(settings, lambda seen: True)

    counts = emitted(events)
    breaches = sorted(
        (e.key, e.data["sla"]) for e in events if e.type == "qualification.sla_breached.v1" and e.data
    )
    assert breaches == [("quiet", "first_touch_overdue"), ("talks", "qualification_overdue")]
    assert counts[("quiet", "lead.disqualified.v1")] == 1
    # The qualification SLA decides on what was gathered (playbook decision.at_sla: decide): nothing was.
    reasons = [
        e.data["reason_code"]
        for e in events
        if e.type == "lead.disqualified.v1" and e.key == "talks" and e.data
    ]
    assert reasons == ["qualification_overdue"]


async def test_the_unassigned_queue_claims_rep_activities_and_overdue_next_steps(settings: Settings) -> None:
    settings, clock = tuned(settings), Clock(T0)
    queued = "unassigned:emea"
    async with StageService(qualification(), settings, clock=clock).build_app():
        await send(settings, prospect("waits", owner=queued), prospect("claimed", owner=queued), at=T0)
        await send(
            settings,
            OwnerChangeRequested(deal_id="claimed", occurred_at=T0, new_owner="mallory", actor="mallory"),
            OwnerChangeRequested(
                deal_id="claimed", occurred_at=T0, new_owner="luc.martin", actor="luc.martin"
            ),
            ActivityLogged(
                deal_id="claimed",
                activity_id="a-1",
                occurred_at=T0,
                kind="call",
                outcome="no_answer",
                actor="luc.martin",
                next_step=NextStep(action="call_back", due_at=T0 + timedelta(hours=2)),
            ),
        )
        await events_when(
            settings, lambda seen: emitted(seen)[("claimed", "qualification.next_step_scheduled.v1")] == 2
        )
        clock.now = T0 + timedelta(hours=25)  # past the claim SLA (24 h) and both next steps
        await events_when(
            settings,
            lambda seen: (
                emitted(seen)[("waits", "qualification.sla_breached.v1")] == 2
                and emitted(seen)[("claimed", "deal.next_step_overdue.v1")] == 1
            ),
        )
    async with StageService(qualification(), settings, clock=clock).build_app():
        await asyncio.sleep(2)  # a restarted service scans again: nothing may fire twice
        events = await events_when(settings, lambda seen: True)

    counts = emitted(events)
    breaches = sorted(
        (e.key, e.data["sla"], e.data["owner"])
        for e in events
        if e.type == "qualification.sla_breached.v1" and e.data
    )
    # The claimed lead was touched in time; the one nobody claimed breaches both SLAs, each once.
    assert breaches == [("waits", "first_touch_overdue", queued), ("waits", "unassigned_unclaimed", queued)]
    [changed] = [e.data for e in events if e.type == "deal.owner_changed.v1" and e.data]
    assert (changed["deal_id"], changed["previous_owner"], changed["owner"]) == (
        "claimed",
        queued,
        "luc.martin",
    )
    [refused] = [e.data for e in events if e.type == "activity.rejected.v1" and e.key == "claimed" and e.data]
    assert refused["reason"]["code"] == "unknown_owner"
    overdue = sorted(
        (e.key, e.data["next_step"]["action"])
        for e in events
        if e.type == "deal.next_step_overdue.v1" and e.data
    )
    assert overdue == [("claimed", "call_back"), ("waits", "touch_1")]
    assert counts[("claimed", "deal.next_step_overdue.v1")] == 1
