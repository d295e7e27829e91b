"""Proposal on the real broker and database, and the deal-won contract as an integrator reads it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from aiokafka import AIOKafkaConsumer
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event

from contracts import Event, Topic
from contracts.events import (
    ActivityLogged,
    Company,
    Contact,
    ContractSigned,
    DealCorrectionReported,
    DealLostReported,
    DealReopenRequested,
    DiscountApproved,
    LeadQualified,
    Money,
    Needs,
    ObjectionRaised,
    ObjectionResolved,
    OwnerChangeRequested,
    PaymentReceived,
    ProposalAccepted,
    ProposalSent,
    QuotePrepared,
)
from services.proposal.service import definition as proposal
from shared.kafka import client_options, running
from shared.runtime import StageService
from shared.settings import Settings
from tests.integration.helpers import Clock, by, events_when, of_type, send

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LINES = [{"product": "dealflow-platform", "quantity": 10}, {"product": "onboarding-package", "quantity": 1}]


def qualified(deal_id: str) -> LeadQualified:
    return LeadQualified(
        deal_id=deal_id,
        owner="anna.schmidt",
        contact=Contact(email=f"cfo@{deal_id}.example"),
        company=Company(name=f"Customer {deal_id}", country="DE"),
        framework="BANT",
        needs=Needs(pains=["manual reporting"]),
        amount=Money(amount_minor=1_000_000, currency="EUR"),
        qualified_at=T0,
    )


def act(model: type, deal_id: str, **fields: object) -> Event:
    return model.model_validate({"deal_id": deal_id, "occurred_at": T0.isoformat()} | fields)  # type: ignore[no-any-return]


async def test_won_lost_expired_and_blocked_deals(settings: Settings) -> None:
    settings, clock = settings.model_copy(update={"timer_tick_seconds": 0.2}), Clock(T0)
    async with StageService(proposal(), settings, clock=clock).build_app():
        await send(settings, *(qualified(deal) for deal in ("approved", "lost", "expiring", "objecting")))
        await send(
            settings,
            # a discount above the threshold, revised, approved, sent, accepted, signed, paid
            act(QuotePrepared, "approved", currency="EUR", lines=LINES, discount_percent=20),
            act(QuotePrepared, "approved", currency="EUR", lines=LINES, discount_percent=25),
            act(ProposalSent, "approved", quote_version=2),  # refused: not approved yet
            act(DiscountApproved, "approved", quote_version=2, approver="vp.sales"),
            act(ProposalSent, "approved", quote_version=2),
            act(ProposalAccepted, "approved"),
            act(ContractSigned, "approved", signed_by="CFO"),
            act(PaymentReceived, "approved", amount={"amount_minor": 1_275_000, "currency": "EUR"}),
            # lost to a competitor
            act(ProposalSent, "lost", currency="EUR", lines=LINES[:1]),
            act(DealLostReported, "lost", reason_code="competitor", competitor="PipeRocket"),
            act(ProposalAccepted, "lost"),  # refused: the deal is lost
            # a quote nobody answers
            act(ProposalSent, "expiring", currency="EUR", lines=LINES[:1]),
            # an objection holds the closing until it is resolved
            act(ProposalSent, "objecting", currency="EUR", lines=LINES[:1]),
            act(ObjectionRaised, "objecting", objection_id="o-1", category="price"),
            act(ProposalAccepted, "objecting"),
            act(ContractSigned, "objecting"),
            act(PaymentReceived, "objecting", amount={"amount_minor": 1_200_000, "currency": "EUR"}),
        )
        seen = await events_when(
            settings,
            lambda events: (
                len(by(events, "approved", "deal.won.v1")) == 1
                and len(by(events, "lost", "activity.rejected.v1")) == 1
                and len(by(events, "objecting", "deal.stage_changed.v1")) == 3
            ),
        )
        assert by(seen, "objecting", "deal.won.v1") == [], "an open objection must block closing"
        await send(settings, act(ObjectionResolved, "objecting", objection_id="o-1"))
        clock.now = T0 + timedelta(days=31)
        events = await events_when(
            settings,
            lambda events: (
                len(by(events, "objecting", "deal.won.v1")) == 1
                and len(by(events, "expiring", "quote.expired.v1")) == 1
            ),
        )
        await asyncio.sleep(1)
        events = await events_when(settings, lambda events: True)

    [won] = by(events, "approved", "deal.won.v1")
    assert won.data is not None
    assert (won.data["quote_version"], won.data["amount"]) == (
        2,
        {"amount_minor": 1_275_000, "currency": "EUR"},
    )
    statuses = [e.data["status"] for e in by(events, "approved", "quote.issued.v1") if e.data]
    assert statuses == ["needs_approval", "needs_approval", "approved", "sent"]
    [refused] = by(events, "approved", "activity.rejected.v1")
    assert refused.data is not None
    assert refused.data["reason"]["code"] == "quote_not_approved"
    [lost] = by(events, "lost", "deal.lost.v1")
    assert lost.data is not None
    assert (lost.data["reason_code"], lost.data["competitor"]) == ("competitor", "PipeRocket")
    assert len(by(events, "expiring", "quote.expired.v1")) == 1
    assert by(events, "expiring", "deal.won.v1") == []


async def test_integrators_read_deal_won_with_a_generic_cloudevents_parser(settings: Settings) -> None:
    async with StageService(proposal(), settings).build_app():
        await send(
            settings,
            qualified("integrated"),
            act(ProposalSent, "integrated", currency="EUR", lines=LINES),
            act(ProposalAccepted, "integrated"),
            act(ContractSigned, "integrated"),
            act(PaymentReceived, "integrated", amount={"amount_minor": 1_700_000, "currency": "EUR"}),
        )
        await events_when(settings, lambda events: len(of_type(events, "deal.won.v1")) == 1)

    consumer = AIOKafkaConsumer(
        settings.topic(Topic.DEALS_WON),
        **client_options(settings),
        auto_offset_reset="earliest",
        group_id=None,
    )
    async with running(consumer):
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    event = from_binary_event(KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value))
    schema = json.loads((REPO / "contracts" / "schemas" / "deal.won.v1.json").read_text())

    attributes = event.get_attributes()
    assert (attributes["type"], attributes["source"], attributes["specversion"]) == (
        "io.dealflow.deal.won.v1",
        "/dealflow/proposal",
        "1.0",
    )
    assert attributes["subject"] == "integrated" == record.key.decode()
    jsonschema.validate(event.get_data(), schema, cls=jsonschema.Draft202012Validator)
    assert event.get_data()["amount"] == {"amount_minor": 1_700_000, "currency": "EUR"}

    example = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            str(REPO / "contracts" / "examples" / "deal_won_consumer.py"),
            "--bootstrap",
            settings.kafka_bootstrap_servers,
            "--topic",
            settings.topic(Topic.DEALS_WON),
            "--group",
            f"{settings.namespace}.billing",
            "--limit",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "won integrated: Customer integrated pays 17000.00 EUR" in example.stdout


async def test_rep_actions_next_step_owner_correction_reopening_and_an_overdue_next_step(
    settings: Settings,
) -> None:
    settings, clock = settings.model_copy(update={"timer_tick_seconds": 0.2}), Clock(T0)
    step = {"action": "send_case_study", "due_at": (T0 + timedelta(days=1)).isoformat()}
    async with StageService(proposal(), settings, clock=clock).build_app():
        await send(settings, qualified("acting"), qualified("reopening"))
        # Opened first: a logged activity or an owner change for a deal proposal does not hold yet is
        # qualification's, so one that overtook its lead.qualified would be nobody's (README, Rep actions).
        await events_when(
            settings,
            lambda events: all(by(events, deal, "deal.stage_changed.v1") for deal in ("acting", "reopening")),
        )
        await send(
            settings,
            act(
                ActivityLogged,
                "acting",
                kind="call",
                outcome="interested",
                actor="anna.schmidt",
                next_step=step,
            ),
            act(OwnerChangeRequested, "acting", new_owner="jordan.lee", actor="manager", reason="territory"),
            act(DealCorrectionReported, "acting", expected_close_date="2027-01-31", actor="jordan.lee"),
            act(DealLostReported, "reopening", reason_code="timing"),
            act(DealReopenRequested, "reopening", to_stage="nowhere", actor="anna.schmidt"),  # refused
            act(DealReopenRequested, "reopening", to_stage="proposal", actor="anna.schmidt"),
            # a lead proposal does not hold yet is qualification's: neither parked nor refused here
            act(ActivityLogged, "still-qualifying", kind="email", outcome="sent"),
        )
        await events_when(
            settings,
            lambda events: (
                len(by(events, "acting", "deal.corrected.v1")) == 1
                and len(by(events, "reopening", "deal.reopened.v1")) == 1
            ),
        )
        clock.now = T0 + timedelta(days=2)
        events = await events_when(
            settings, lambda events: len(by(events, "acting", "deal.next_step_overdue.v1")) == 1
        )
        await asyncio.sleep(1)
        events = await events_when(settings, lambda events: True)

    [set_step] = by(events, "acting", "deal.next_step_set.v1")
    assert set_step.data is not None
    assert (set_step.data["next_step"]["action"], set_step.data["source"]) == (
        "send_case_study",
        "activity.logged",
    )
    [changed] = by(events, "acting", "deal.owner_changed.v1")
    assert changed.data is not None
    assert (changed.data["previous_owner"], changed.data["owner"]) == ("anna.schmidt", "jordan.lee")
    [corrected] = by(events, "acting", "deal.corrected.v1")
    assert corrected.data is not None
    assert (corrected.data.get("previous_expected_close_date"), corrected.data["expected_close_date"]) == (
        None,
        "2027-01-31",
    )
    [overdue] = by(events, "acting", "deal.next_step_overdue.v1")
    assert overdue.data is not None
    assert (overdue.data["owner"], overdue.data["next_step"]["action"]) == ("jordan.lee", "send_case_study")
    [refused] = by(events, "reopening", "activity.rejected.v1")
    assert refused.data is not None
    assert refused.data["reason"]["code"] == "unknown_stage"
    [reopened] = by(events, "reopening", "deal.reopened.v1")
    assert reopened.data is not None
    assert (reopened.data["stage"], reopened.data["cycle"]) == ("proposal", 2)
    moves = [
        (e.data.get("previous_stage"), e.data["stage"])
        for e in by(events, "reopening", "deal.stage_changed.v1")
        if e.data
    ]
    assert moves == [(None, "presentation"), ("presentation", "lost"), ("lost", "proposal")]
    assert [e for e in events if e.key == "still-qualifying" and e.type != "activity.logged.v1"] == []
