"""Synthetic deals with known outcomes, for fault tests, load tests and benchmarks.

Each scripted deal is a lead plus the activities that drive it to one outcome; `expected` says which
stage events the pipeline must emit for it, and how many, so a run can be checked deal by deal.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cli.kafka_io import SeenEvent
from contracts import Event
from contracts.events import (
    ContractSigned,
    DealLostReported,
    DemoHeld,
    DiscoveryCallLogged,
    LeadCaptured,
    Money,
    PaymentReceived,
    ProposalAccepted,
    ProposalSent,
    QuoteLineRequest,
)

OUTCOMES = ("won", "lost", "disqualified", "invalid", "not_a_fit")
WEIGHTS = (5, 2, 1, 1, 1)
BANT_MET = {"budget": True, "authority": True, "need": True, "timeline": True}
LINE = QuoteLineRequest(product="dealflow-seat", quantity=3)  # 3 x 1,000.00 EUR in the price list
EXPECTED: dict[str, Counter[str]] = {
    "won": Counter(
        {
            "prospect.identified.v1": 1,
            "qualification.next_step_scheduled.v1": 1,
            "lead.qualified.v1": 1,
            "quote.issued.v1": 1,
            "deal.stage_changed.v1": 5,
            "deal.won.v1": 1,
            "onboarding.started.v1": 1,
        }
    ),
    "lost": Counter(
        {
            "prospect.identified.v1": 1,
            "qualification.next_step_scheduled.v1": 1,
            "lead.qualified.v1": 1,
            "quote.issued.v1": 1,
            "deal.stage_changed.v1": 4,
            "deal.lost.v1": 1,
        }
    ),
    "disqualified": Counter(
        {"prospect.identified.v1": 1, "qualification.next_step_scheduled.v1": 1, "lead.disqualified.v1": 1}
    ),
    "invalid": Counter({"lead.rejected.v1": 1}),
    "not_a_fit": Counter({"lead.rejected.v1": 1}),
}


@dataclass(frozen=True)
class ScriptedDeal:
    deal_id: str
    outcome: str
    events: list[Event] = field(repr=False)

    @property
    def expected(self) -> Counter[str]:
        return EXPECTED[self.outcome]


def scripted_deals(count: int, *, prefix: str = "deal", seed: int = 7) -> list[ScriptedDeal]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    return [
        _script(
            f"{prefix}-{number:06d}", rng.choices(OUTCOMES, WEIGHTS)[0], start + timedelta(minutes=number)
        )
        for number in range(count)
    ]


def scripted_lead(deal_id: str, outcome: str, source: str) -> LeadCaptured:
    """The lead of a scripted deal: invalid, not a fit, or a fit whose activities decide the rest."""
    return LeadCaptured(
        lead_id=deal_id,
        email="not-an-email" if outcome == "invalid" else f"buyer@{deal_id}.example",
        title="CTO",
        company_name=f"Company {deal_id}",
        country="DE",
        employees=300,
        industry="gambling" if outcome == "not_a_fit" else "software",
        source=source,
    )


def _script(deal_id: str, outcome: str, at: datetime) -> ScriptedDeal:
    lead = scripted_lead(deal_id, outcome, source="load_test")
    events: list[Event] = [lead]
    if outcome == "disqualified":
        events.append(
            DiscoveryCallLogged(deal_id=deal_id, occurred_at=at, answers=BANT_MET | {"budget": False})
        )
    if outcome in ("won", "lost"):
        amount = Money(amount_minor=300_000, currency="EUR")
        events += [
            DiscoveryCallLogged(deal_id=deal_id, occurred_at=at, answers=BANT_MET, estimated_amount=amount),
            DemoHeld(deal_id=deal_id, occurred_at=at),
            ProposalSent(deal_id=deal_id, occurred_at=at, currency="EUR", lines=[LINE]),
        ]
    if outcome == "won":
        events += [
            ProposalAccepted(deal_id=deal_id, occurred_at=at),
            ContractSigned(deal_id=deal_id, occurred_at=at),
            PaymentReceived(
                deal_id=deal_id, occurred_at=at, amount=Money(amount_minor=300_000, currency="EUR")
            ),
        ]
    if outcome == "lost":
        events.append(
            DealLostReported(deal_id=deal_id, occurred_at=at, reason_code="competitor", competitor="X")
        )
    return ScriptedDeal(deal_id=deal_id, outcome=outcome, events=events)


@dataclass(frozen=True)
class Verification:
    deals: int
    verified: int
    wrong: dict[str, str]  # deal id -> what differs
    redelivered_copies: int  # records whose ce_id was already seen: re-publications, absorbed downstream

    @property
    def ok(self) -> bool:
        return not self.wrong


def verify(deals: list[ScriptedDeal], events: list[SeenEvent]) -> Verification:
    """Compare the distinct stage events per deal (by ce_id) with what each deal's script expects."""
    wanted = {deal.deal_id: deal for deal in deals}
    distinct: dict[str, SeenEvent] = {}
    copies = 0
    for event in events:
        if event.key not in wanted or not event.headers.get("ce_source", "").startswith("/dealflow/"):
            continue
        if event.headers["ce_source"] == "/dealflow/cli":
            continue
        if event.id in distinct:
            copies += 1
        distinct[event.id] = event
    counts: dict[str, Counter[str]] = {deal_id: Counter() for deal_id in wanted}
    for event in distinct.values():
        counts[event.key][event.type] += 1
    wrong = {
        deal_id: f"expected {dict(deal.expected)}, got {dict(counts[deal_id])}"
        for deal_id, deal in wanted.items()
        if counts[deal_id] != deal.expected
    }
    return Verification(
        deals=len(deals), verified=len(deals) - len(wrong), wrong=wrong, redelivered_copies=copies
    )
