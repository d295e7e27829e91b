"""Synthetic deals with known outcomes, for fault tests, load tests and benchmarks.

Each scripted deal is a lead plus the activities that drive it to one outcome; `expected` says which
stage events the pipeline must emit for it, and how many, so a run can be checked deal by deal.

Its times are business times in the past: the lead is captured five days before the deal's story ends,
a little before now, and each step follows days apart (`STEPS`), so the time in each stage is what those
dates say. Nothing the story leaves pending falls due within days of it, so no deadline adds an event:
the first touch comes an hour after the capture (within tier A's SLA), and the deal is won a day or so
before its first onboarding task is due.
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
    TouchLogged,
)

OUTCOMES = ("won", "lost", "disqualified", "invalid", "not_a_fit")
WEIGHTS = (5, 2, 1, 1, 1)
BANT_MET = {"budget": True, "authority": True, "need": True, "timeline": True}
LINE = QuoteLineRequest(product="dealflow-seat", quantity=3)  # 3 x 1,000.00 EUR in the price list
# A deal's story ends this long before now, the deals of one workload this far apart before that.
STORY_ENDS_BEFORE_NOW = timedelta(hours=1)
BETWEEN_DEALS = timedelta(milliseconds=100)
# When each step happens, after the lead was captured.
STEPS = {
    "first_touch": timedelta(hours=1),
    "discovery_call": timedelta(days=2),
    "demo_held": timedelta(days=3),
    "proposal_sent": timedelta(days=4),
    "proposal_accepted": timedelta(days=4, hours=12),
    "contract_signed": timedelta(days=4, hours=18),
    "closed": timedelta(days=5),  # payment received (won) or loss reported
}
EXPECTED: dict[str, Counter[str]] = {
    "won": Counter(
        {
            "prospect.identified.v1": 1,
            "qualification.next_step_scheduled.v1": 2,
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
            "qualification.next_step_scheduled.v1": 2,
            "lead.qualified.v1": 1,
            "quote.issued.v1": 1,
            "deal.stage_changed.v1": 4,
            "deal.lost.v1": 1,
        }
    ),
    "disqualified": Counter(
        {"prospect.identified.v1": 1, "qualification.next_step_scheduled.v1": 2, "lead.disqualified.v1": 1}
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


def scripted_deals(
    count: int, *, prefix: str = "deal", seed: int = 7, now: datetime | None = None
) -> list[ScriptedDeal]:
    """`count` deals with outcomes drawn by `seed`, each story ending a little before `now` (default:
    the wall clock), the last deal's last."""
    rng = random.Random(seed)
    end = (now or datetime.now(UTC)) - STORY_ENDS_BEFORE_NOW
    return [
        _script(
            f"{prefix}-{number:06d}",
            rng.choices(OUTCOMES, WEIGHTS)[0],
            end - BETWEEN_DEALS * (count - 1 - number) - STEPS["closed"],
        )
        for number in range(count)
    ]


def scripted_lead(
    deal_id: str, outcome: str, source: str, captured_at: datetime | None = None
) -> LeadCaptured:
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
        captured_at=captured_at,
    )


def _script(deal_id: str, outcome: str, captured_at: datetime) -> ScriptedDeal:
    at = {step: captured_at + offset for step, offset in STEPS.items()}
    lead = scripted_lead(deal_id, outcome, source="load_test", captured_at=captured_at)
    events: list[Event] = [lead]
    if outcome in ("won", "lost", "disqualified"):
        events.append(
            TouchLogged(deal_id=deal_id, occurred_at=at["first_touch"], channel="call", outcome="replied")
        )
    if outcome == "disqualified":
        events.append(
            DiscoveryCallLogged(
                deal_id=deal_id,
                occurred_at=at["discovery_call"],
                answers=BANT_MET | {"budget": False},
                actor_role="rep",
            )
        )
    if outcome in ("won", "lost"):
        amount = Money(amount_minor=300_000, currency="EUR")
        events += [
            DiscoveryCallLogged(
                deal_id=deal_id,
                occurred_at=at["discovery_call"],
                answers=BANT_MET,
                estimated_amount=amount,
                actor_role="rep",
            ),
            DemoHeld(deal_id=deal_id, occurred_at=at["demo_held"]),
            ProposalSent(deal_id=deal_id, occurred_at=at["proposal_sent"], currency="EUR", lines=[LINE]),
        ]
    if outcome == "won":
        events += [
            ProposalAccepted(deal_id=deal_id, occurred_at=at["proposal_accepted"]),
            ContractSigned(deal_id=deal_id, occurred_at=at["contract_signed"]),
            PaymentReceived(
                deal_id=deal_id,
                occurred_at=at["closed"],
                amount=Money(amount_minor=300_000, currency="EUR"),
            ),
        ]
    if outcome == "lost":
        events.append(
            DealLostReported(
                deal_id=deal_id, occurred_at=at["closed"], reason_code="competitor", competitor="X"
            )
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
