"""Imported opportunities on the real broker and database: qualification and proposal take the rows of
their stages, refuse what they cannot use, fire deadlines that fell due before the import as history,
change nothing for a record published again, and win an imported deal on live activities."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli.kafka_io import publish, records_for
from contracts import Event
from contracts.events import ContractSigned, OpportunityImported, PaymentReceived, ProposalAccepted
from services.proposal.service import definition as proposal
from services.qualification.service import definition as qualification
from shared.runtime import StageService
from shared.settings import Settings
from tests.integration.helpers import Clock, by, events_when

pytestmark = pytest.mark.integration
AS_OF = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
NOW = AS_OF + timedelta(days=2)
AMOUNT = {"amount_minor": 5_000_000, "currency": "EUR"}


def opportunity(deal_id: str, **fields: Any) -> OpportunityImported:
    values: dict[str, Any] = {
        "deal_id": deal_id,
        "source": "salesforce",
        "source_id": deal_id.removeprefix("sf-"),
        "owner": "anna.schmidt",
        "company": {"name": f"Customer {deal_id}", "country": "DE"},
        "pipeline": "new_business",
        "stage": "negotiation",
        "stage_history": [
            {"stage": "qualification", "entered_at": "2026-05-04T09:00:00Z"},
            {"stage": "proposal", "entered_at": "2026-07-01T09:00:00Z"},
            # negotiation's next step (agree_terms, 14 days) fell due on 2026-10-16, before as_of
            {"stage": "negotiation", "entered_at": "2026-10-02T09:00:00Z"},
        ],
        "created_at": "2026-05-04T09:00:00Z",
        "amount": AMOUNT,
        "as_of": AS_OF.isoformat(),
    }
    return OpportunityImported.model_validate(values | fields)


def activity(model: type[Event], deal_id: str, **fields: Any) -> Event:
    occurred_at = AS_OF + timedelta(days=1)
    return model.model_validate({"deal_id": deal_id, "occurred_at": occurred_at.isoformat()} | fields)


async def send_with_ids(settings: Settings, *events: tuple[Event, str]) -> None:
    await publish(settings, records_for(settings, [(event, event_id) for event, event_id in events]))


async def test_imported_rows_are_taken_refused_replayed_and_won_live(settings: Settings) -> None:
    settings, clock = settings.model_copy(update={"timer_tick_seconds": 0.2}), Clock(NOW)
    open_deal = opportunity("sf-open")
    in_qualification = opportunity(
        "sf-qualifying",
        stage="qualification",
        # in qualification since 45 days before as_of: its 30-day SLA fell due in the past
        stage_history=[{"stage": "qualification", "entered_at": (AS_OF - timedelta(days=45)).isoformat()}],
        created_at=(AS_OF - timedelta(days=45)).isoformat(),
    )
    won = opportunity("sf-won", stage="won", closed_at="2026-10-20T15:00:00Z")
    unknown_pipeline = opportunity("sf-partner", pipeline="partners")
    async with AsyncExitStack() as services:
        for definition in (qualification(), proposal()):
            await services.enter_async_context(StageService(definition, settings, clock=clock).build_app())
        await send_with_ids(
            settings,
            (open_deal, "import-sf-open"),
            (in_qualification, "import-sf-qualifying"),
            (won, "import-sf-won"),
            (unknown_pipeline, "import-sf-partner"),
        )
        first = await events_when(
            settings,
            lambda events: (
                all(by(events, deal, "deal.imported.v1") for deal in ("sf-open", "sf-qualifying", "sf-won"))
                and bool(by(events, "sf-partner", "activity.rejected.v1"))
                and bool(by(events, "sf-open", "deal.next_step_overdue.v1"))
                and bool(by(events, "sf-qualifying", "qualification.sla_breached.v1"))
            ),
        )
        # The same record again, then live activities that win it, then a newer export of it: refused,
        # and, on the same partition as the copy, the proof that the copy was consumed.
        await send_with_ids(settings, (open_deal, "import-sf-open"))
        await send_with_ids(
            settings,
            (activity(ProposalAccepted, "sf-open"), "live-accepted"),
            (activity(ContractSigned, "sf-open", signed_by="CFO"), "live-signed"),
            (activity(PaymentReceived, "sf-open", amount=AMOUNT), "live-paid"),
        )
        await events_when(settings, lambda events: bool(by(events, "sf-open", "deal.won.v1")))
        newer = opportunity("sf-open", as_of=(AS_OF + timedelta(days=1, hours=12)).isoformat())
        await send_with_ids(settings, (newer, "import-sf-open-newer"))
        events = await events_when(
            settings, lambda events: len(by(events, "sf-open", "activity.rejected.v1")) == 1
        )

    [taken] = by(first, "sf-open", "deal.imported.v1")
    assert taken.data is not None
    assert (taken.data["stage_service"], taken.data["next_step"]["action"]) == ("proposal", "agree_terms")
    assert taken.headers["ce_time"].startswith("2026-11-01T00:00:00")  # business time: the import's as_of
    [qualifying] = by(first, "sf-qualifying", "deal.imported.v1")
    assert qualifying.data is not None
    assert (qualifying.data["stage_service"], qualifying.data["next_step"]["action"]) == (
        "qualification",
        "discovery_call",
    )
    [imported_win] = by(first, "sf-won", "deal.imported.v1")
    assert imported_win.data is not None
    assert imported_win.data["stage"] == "won"
    [refused] = by(first, "sf-partner", "activity.rejected.v1")
    assert refused.data is not None
    assert (
        refused.data["stage_service"],
        refused.data["reason"]["code"],
        refused.data["reason"]["field"],
    ) == (
        "proposal",
        "unknown_pipeline",
        "pipeline",
    )
    [overdue] = by(first, "sf-open", "deal.next_step_overdue.v1")
    assert overdue.data is not None
    assert (overdue.data["from_history"], overdue.data["due_at"]) == (True, "2026-10-16T09:00:00Z")
    breaches = by(first, "sf-qualifying", "qualification.sla_breached.v1")
    assert [(e.data["sla"], e.data["from_history"]) for e in breaches if e.data] == [
        ("qualification_overdue", True)
    ]
    assert by(events, "sf-qualifying", "lead.disqualified.v1") == [], "an SLA of the past decides nothing"

    # The copy and the refused newer export made nothing more; the imported win billed nothing.
    assert len(by(events, "sf-open", "deal.imported.v1")) == 1
    [late] = by(events, "sf-open", "activity.rejected.v1")
    assert late.data is not None
    assert late.data["reason"]["code"] == "deal_active"
    [live_win] = by(events, "sf-open", "deal.won.v1")
    assert live_win.data is not None
    assert (live_win.data["amount"], live_win.data["won_at"]) == (AMOUNT, "2026-11-02T00:00:00Z")
    assert by(events, "sf-won", "deal.won.v1") == []
    assert [
        e for e in events if e.key in ("sf-won", "sf-qualifying") and e.type == "deal.stage_changed.v1"
    ] == []
