"""Hostile records, class by class, drawn with Hypothesis; and the good journeys they are mixed with.

Every hostile class is a Hypothesis strategy of *builders*: a builder turns a run context (the time, the
ids the pipeline gave the phase-0 deals) into one or more `Probe`s, each a raw Kafka record (key, value,
headers, partition) plus what the record may legitimately end as. The corpus is drawn once per run,
derandomized (no example database), so CI sees the same records every time; only timestamps follow the
clock.

Outcomes, per consuming service: `applied`, `rejected` (an activity.rejected.v1 naming the record's
ce_id), `dead_lettered` (optionally `dead_lettered:<code>`), `ignored` (another stage's event; or a
deadline that changes nothing).
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import HealthCheck, Phase, given
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cli.workload import scripted_lead
from contracts import Event, Topic
from contracts.events import (
    Company,
    Contact,
    ContractSigned,
    DeadlineReached,
    DealLostReported,
    DealStageChanged,
    DealWon,
    DemoHeld,
    DemoScheduled,
    DiscoveryCallLogged,
    ErasureRequested,
    ImportedStage,
    LeadCaptured,
    LeadQualified,
    Money,
    Needs,
    NextStep,
    ObjectionRaised,
    ObjectionResolved,
    OnboardingStarted,
    OnboardingTaskCompleted,
    OnboardingTaskSkipped,
    OpportunityImported,
    PaymentReceived,
    ProposalAccepted,
    ProposalSent,
    ProspectIdentified,
    QuoteLine,
    QuoteLineRequest,
    TouchLogged,
    UpsellIdentified,
    UsageReported,
)

SETTLED = frozenset({"applied", "rejected", "dead_lettered"})
DEAD = frozenset({"dead_lettered"})
NO_EFFECT = frozenset({"ignored", "dead_lettered"})
HOSTILE_SOURCE = "/hostile"
GOOD_SOURCE = "/dealflow/cli"  # what `dealflow publish` uses: upstream input, not a service's output
BASE_TIME = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # when the activities say they happened
FUTURE = datetime(2030, 1, 1, tzinfo=UTC)  # for times that schedule deadlines: none falls due in a run

# --- deals the run opens first (phase 0), so hostile activities meet deals in known states -------------

HX_QUAL = [f"hx-qual-{i}" for i in range(4)]  # open in qualification: hostile activities land here
HX_PROP = [f"hx-prop-{i}" for i in range(4)]  # in presentation at proposal
HX_ONB = [f"hx-onb-{i}" for i in range(4)]  # won, onboarding started
V_QUAL = [f"v-qual-{i}" for i in range(3)]  # victims: must end exactly as their journey says
V_PROP = [f"v-prop-{i}" for i in range(3)]  # (negotiation, quote 1 sent and pending expiry)
V_ONB = [f"v-onb-{i}" for i in range(3)]  # (won, onboarding tasks pending)
W_DEALS = ["w-parked-0", "w-parked-1"]  # activities parked (phase 0) until their lead (phase 2)
Z_QUAL = ["z-qual-0", "z-qual-1"]  # a forged deadline waits (phase 1) for the deal to open (phase 2)
Z_ONB = ["z-onb-0"]
VICTIMS = [*V_QUAL, *V_PROP, *V_ONB]
PENDING_DEADLINES = {
    "qualification": ["1:first_touch_overdue", "1:cadence_end", "1:qualification_overdue"],
    "proposal": ["quote-1:expires"],
    "onboarding": ["task:kickoff", "task:technical_setup", "task:training", "task:go_live"],
}
VICTIM_STAGE = {
    **dict.fromkeys(V_QUAL, "qualification"),
    **dict.fromkeys(V_PROP, "proposal"),
    **dict.fromkeys(V_ONB, "onboarding"),
}


# --- good journeys ---------------------------------------------------------------------------------

BANT_MET = {"budget": True, "authority": True, "need": True, "timeline": True}
SEATS = QuoteLineRequest(product="dealflow-seat", quantity=3)  # 3 x 1,000.00 EUR
AMOUNT = Money(amount_minor=300_000, currency="EUR")
OPENED = Counter({"prospect.identified.v1": 1, "qualification.next_step_scheduled.v1": 1})
PRESENTATION = OPENED + Counter({"lead.qualified.v1": 1, "deal.stage_changed.v1": 1})
NEGOTIATION = OPENED + Counter({"lead.qualified.v1": 1, "quote.issued.v1": 1, "deal.stage_changed.v1": 3})
WON = NEGOTIATION + Counter({"deal.stage_changed.v1": 2, "deal.won.v1": 1, "onboarding.started.v1": 1})
LOST = NEGOTIATION + Counter({"deal.stage_changed.v1": 1, "deal.lost.v1": 1})
EXPECTED: dict[str, Counter[str]] = {
    "won": WON,
    "lost": LOST,
    "disqualified": OPENED + Counter({"lead.disqualified.v1": 1}),
    "invalid": Counter({"lead.rejected.v1": 1}),
    "not_a_fit": Counter({"lead.rejected.v1": 1}),
    "open": OPENED,
    "presentation": PRESENTATION,
    "negotiation": NEGOTIATION,
    "expansion": Counter({"deal.expansion_opened.v1": 1, "qualification.next_step_scheduled.v1": 1}),
    "imported": Counter({"deal.imported.v1": 1}),  # an imported win is history: no deal.won, no onboarding
}


@dataclass(frozen=True)
class Journey:
    """A good deal: the events that drive it, and exactly the stage events the pipeline must emit."""

    deal_id: str
    outcome: str
    events: list[Event] = field(repr=False)
    also_silent: tuple[str, ...] = ()  # keys that must see no stage event at all (a victim's upsell)

    @property
    def expected(self) -> Counter[str]:
        return EXPECTED[self.outcome]


def lead(deal_id: str, outcome: str = "won") -> LeadCaptured:
    return scripted_lead(deal_id, outcome, source="hostile_suite")


def journey(deal_id: str, outcome: str) -> Journey:
    """A lead and the activities that take it to `outcome` (as cli.workload scripts them)."""
    at = BASE_TIME
    events: list[Event] = [lead(deal_id, outcome)]
    if outcome == "disqualified":
        answers = BANT_MET | {"budget": False}
        events.append(DiscoveryCallLogged(deal_id=deal_id, occurred_at=at, answers=answers, actor_role="rep"))
    if outcome in ("presentation", "negotiation", "won", "lost"):
        events.append(
            DiscoveryCallLogged(
                deal_id=deal_id, occurred_at=at, answers=BANT_MET, estimated_amount=AMOUNT, actor_role="rep"
            )
        )
    if outcome in ("negotiation", "won", "lost"):
        events += [
            DemoHeld(deal_id=deal_id, occurred_at=at),
            ProposalSent(deal_id=deal_id, occurred_at=at, currency="EUR", lines=[SEATS]),
        ]
    if outcome == "won":
        events += [
            ProposalAccepted(deal_id=deal_id, occurred_at=at),
            ContractSigned(deal_id=deal_id, occurred_at=at),
            PaymentReceived(deal_id=deal_id, occurred_at=at, amount=AMOUNT),
        ]
    if outcome == "lost":
        events.append(
            DealLostReported(deal_id=deal_id, occurred_at=at, reason_code="competitor", competitor="X")
        )
    silent = (f"{deal_id}-x1",) if deal_id in V_ONB else ()
    return Journey(deal_id=deal_id, outcome=outcome, events=events, also_silent=silent)


def expansion(deal_id: str) -> Journey:
    """A good upsell.identified, as onboarding would send it: qualification opens the expansion deal."""
    upsell = UpsellIdentified(
        expansion_deal_id=deal_id,
        original_deal_id=f"{deal_id}-origin",
        customer=_company(deal_id),
        contact=_contact(deal_id),
        owner="anna.schmidt",
        product="analytics-addon",
        reason="bought dealflow-platform without analytics-addon",
    )
    return Journey(deal_id=deal_id, outcome="expansion", events=[upsell])


# The stages an imported row went through to its stage (a closed one's last stage before it closed).
IMPORTED_PATHS = {
    "qualification": ("qualification",),
    "negotiation": ("qualification", "proposal", "negotiation"),
    "won": ("qualification", "presentation", "proposal", "negotiation", "closing"),
    "lost": ("qualification", "proposal"),
}


def opportunity(
    deal_id: str, stage: str, as_of: datetime, moved: timedelta, /, **changes: object
) -> OpportunityImported:
    """A row of a CRM export, as `dealflow import opportunities` publishes it: a deal of new_business in
    `stage` as of `as_of`, its last move (entering that stage, or closing) `moved` before it, the stages
    before ten days apart. `changes` replace fields of the row."""
    path = IMPORTED_PATHS[stage]
    closed = stage in ("won", "lost")
    last_move = as_of - moved
    entered = [
        last_move - timedelta(days=10 * (len(path) - index - (0 if closed else 1)))
        for index in range(len(path))
    ]
    values: dict[str, object] = {
        "deal_id": deal_id,
        "source": "salesforce",
        "source_id": f"006-{deal_id}",
        "owner": "anna.schmidt",
        "team": "emea",
        "company": _company(deal_id),
        "pipeline": "new_business",
        "stage": stage,
        "stage_history": [
            ImportedStage(stage=name, entered_at=at) for name, at in zip(path, entered, strict=True)
        ],
        "created_at": entered[0],
        "closed_at": last_move if closed else None,
        "amount": AMOUNT,
        "loss_reason": "competitor" if stage == "lost" else None,
        "as_of": as_of,
    }
    return OpportunityImported.model_validate(values | changes)


def imported(deal_id: str, stage: str, as_of: datetime) -> Journey:
    """A good row of an export: the stage whose row it is answers deal.imported.v1, and nothing falls due
    during the run (it moved a day before `as_of`, the run's time)."""
    return Journey(deal_id, "imported", [opportunity(deal_id, stage, as_of, timedelta(days=1))])


def good_imports(as_of: datetime) -> list[Journey]:
    """Good imported deals of phase 1: proposal's open and closed, and qualification's."""
    return [imported(f"g-imp-{stage}", stage, as_of) for stage in IMPORTED_PATHS]


def good_deals(count: int) -> list[Journey]:
    """The good stream of phase 1, outcomes in a fixed rotation (won most often, like cli.workload)."""
    rotation = ["won", "lost", "won", "disqualified", "won", "invalid", "won", "not_a_fit", "lost", "won"]
    return [journey(f"g-{number:04d}", rotation[number % len(rotation)]) for number in range(count)]


def phase0_journeys() -> list[Journey]:
    """The deals hostile activities and forged deadlines aim at, opened before anything hostile."""
    return [
        *(journey(deal_id, "open") for deal_id in [*HX_QUAL, *V_QUAL]),
        *(journey(deal_id, "presentation") for deal_id in HX_PROP),
        *(journey(deal_id, "negotiation") for deal_id in V_PROP),
        *(journey(deal_id, "won") for deal_id in [*HX_ONB, *V_ONB]),
    ]


def parked_journeys() -> list[Journey]:
    """Their activities go out in phase 0 (and wait), their leads in phase 2."""
    return [journey(deal_id, "won") for deal_id in W_DEALS]


def late_journeys() -> list[Journey]:
    """Opened in phase 2, after a forged deadline for them was consumed in phase 1."""
    return [*(journey(deal_id, "open") for deal_id in Z_QUAL), *(journey(d, "won") for d in Z_ONB)]


# --- the probe -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One hostile record and what it may end as."""

    cls: str
    variant: str
    topic: Topic
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    allowed: frozenset[str]
    event_type: str | None  # the dealflow type it claims to be, if its ce_type says one clearly
    partition: int  # where it is produced
    ce_id: str | None  # its ce_id, if a readable one
    deadline_for: str | None = None  # for a well-formed deadline: the stage it names
    answered_by: str | None = None  # for an import row one stage refuses: that stage (the other takes it)
    conflict_copy: bool = False  # a second record under an id already used with other content
    phase: int = 1

    @property
    def size(self) -> int:
        return len(self.value or b"") + len(self.key or b"") + sum(len(v or b"") for _, v in self.headers)


@dataclass
class Context:
    """What a builder needs that only the run knows."""

    partitions: int
    now: datetime
    stall_ids: dict[str, list[str]] = field(default_factory=dict)  # insights' pending stall ids, by deal
    numbers: Counter[str] = field(default_factory=Counter)

    def number(self, cls: str) -> int:
        """A number no other probe of the run has, so fresh ids never collide across classes."""
        self.numbers[cls] += 1
        self.numbers[""] += 1
        return self.numbers[""]


Builder = Callable[[Context], list[Probe]]


def murmur2(key: bytes, partitions: int) -> int:
    every = list(range(partitions))
    return int(DefaultPartitioner()(key, every, every))


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's default partitioner (consistent_random: CRC32 of the key)."""
    return zlib.crc32(key) % partitions


class Raw(str):
    """JSON text to splice into a payload verbatim (numbers and nestings json.dumps cannot write)."""


def render(payload: object) -> bytes:
    raws: list[str] = []

    def mark(value: object) -> object:
        if isinstance(value, Raw):
            raws.append(str(value))
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        if isinstance(value, list):
            return [mark(item) for item in value]
        return value

    text = json.dumps(mark(payload), separators=(",", ":"), ensure_ascii=False)
    for index, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00RAW{index}\x00"), raw, 1)
    return text.encode("utf-8", errors="surrogatepass")


def ce_headers(
    event_type: str, ce_id: str, now: datetime, /, **changes: bytes | str | None
) -> tuple[tuple[str, bytes | None], ...]:
    """CloudEvents binary-mode headers; a change of `None` drops the header, bytes are sent as they are.

    Header names with a dash are passed with an underscore (`content_type`).
    """
    headers: dict[str, bytes | str | None] = {
        "ce_specversion": "1.0",
        "ce_id": ce_id,
        "ce_source": HOSTILE_SOURCE,
        "ce_type": f"io.dealflow.{event_type}",
        "ce_time": now.isoformat(),
        "content-type": "application/json",
    }
    for name, value in changes.items():
        headers[name.replace("content_type", "content-type")] = value
    return tuple(
        (name, value if isinstance(value, bytes) else value.encode("utf-8", errors="surrogatepass"))
        for name, value in headers.items()
        if value is not None
    )


# --- templates: one valid record per input topic, aimed at a hostile deal ---------------------------


def _contact(deal_id: str) -> Contact:
    return Contact(
        email=f"person@{deal_id}.example", title="CTO", seniority="c_level", function="engineering"
    )


def _company(deal_id: str) -> Company:
    return Company(name=f"Company {deal_id}", country="DE", employees=300, industry="software")


def _dump(event: Event) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True)
class Template:
    name: str
    topic: Topic
    event_type: str  # without the io.dealflow. prefix
    build: Callable[[int], dict[str, Any]]  # a valid payload, for the n-th use
    key_field: str = "deal_id"
    int_paths: tuple[str, ...] = ()  # integer fields without an upper bound
    text_path: str = ""  # a free-text field
    allowed_valid: frozenset[str] = SETTLED  # outcomes of a record that is still valid after a change

    def payload(self, n: int) -> dict[str, Any]:
        return self.build(n)

    def partition_key(self, payload: dict[str, Any]) -> str:
        return str(payload.get(self.key_field, ""))

    @property
    def ce_type(self) -> str:
        return f"io.dealflow.{self.event_type}"

    @property
    def any_outcome(self) -> frozenset[str]:
        """What a changed record may end as when the change may leave it valid or may make it refused."""
        return SETTLED | self.allowed_valid

    def int_field(self, otherwise: str) -> str:
        return self.int_paths[0] if self.int_paths else otherwise

    def text_field(self, otherwise: str) -> str:
        return self.text_path or otherwise


def _lead_payload(n: int) -> dict[str, Any]:
    return _dump(lead(f"hx-lead-{n}"))


def _prospect_payload(n: int) -> dict[str, Any]:
    deal_id = f"hx-pros-{n}"
    return _dump(
        ProspectIdentified(
            deal_id=deal_id,
            lead_id=deal_id,
            contact=_contact(deal_id),
            company=_company(deal_id),
            source="hostile_suite",
            marketing_consent=False,
            fit_score=90,
            tier="A",
            owner="anna.schmidt",
            next_step=NextStep(action="first_touch", due_at=FUTURE),
        )
    )


def _qualified_payload(n: int) -> dict[str, Any]:
    deal_id = f"hx-qd-{n}"
    return _dump(
        LeadQualified(
            deal_id=deal_id,
            owner="anna.schmidt",
            contact=_contact(deal_id),
            company=_company(deal_id),
            framework="BANT",
            needs=Needs(pains=["manual work"]),
            amount=AMOUNT,
            qualified_at=BASE_TIME,
        )
    )


def _stage_payload(n: int) -> dict[str, Any]:
    return _dump(
        DealStageChanged(deal_id=f"hx-stg-{n}", stage="presentation", probability=0.2, changed_at=BASE_TIME)
    )


def _won_payload(n: int) -> dict[str, Any]:
    deal_id = f"hx-won-{n}"
    line = QuoteLine(product="dealflow-seat", quantity=3, unit_price_minor=100_000, total_minor=300_000)
    return _dump(
        DealWon(
            deal_id=deal_id,
            customer=_company(deal_id),
            contact=_contact(deal_id),
            owner="anna.schmidt",
            quote_version=1,
            lines=[line],
            amount=AMOUNT,
            won_at=FUTURE,
            stage_history=[],
        )
    )


def _upsell_payload(n: int) -> dict[str, Any]:
    deal_id = f"hx-up-{n}"
    return _dump(
        UpsellIdentified(
            expansion_deal_id=deal_id,
            original_deal_id=f"hx-orig-{n}",
            customer=_company(deal_id),
            contact=_contact(deal_id),
            owner="anna.schmidt",
            product="analytics-addon",
            reason="hostile suite",
        )
    )


def _started_payload(n: int) -> dict[str, Any]:
    deal_id = f"hx-os-{n}"
    return _dump(
        OnboardingStarted(
            deal_id=deal_id, customer=_company(deal_id), owner="anna.schmidt", plan=[], started_at=FUTURE
        )
    )


def _touch_payload(n: int) -> dict[str, Any]:
    return _dump(
        TouchLogged(deal_id=HX_QUAL[n % 4], occurred_at=BASE_TIME, channel="call", outcome="no_answer")
    )


def _objection_payload(n: int) -> dict[str, Any]:
    return _dump(
        ObjectionRaised(
            deal_id=HX_PROP[n % 4], occurred_at=BASE_TIME, objection_id=f"obj-{n}", category="price"
        )
    )


def _demo_payload(n: int) -> dict[str, Any]:
    return _dump(DemoScheduled(deal_id=HX_PROP[n % 4], occurred_at=BASE_TIME, scheduled_for=FUTURE))


def _task_payload(n: int) -> dict[str, Any]:
    return _dump(OnboardingTaskCompleted(deal_id=HX_ONB[n % 4], occurred_at=BASE_TIME, task="kickoff"))


def _usage_payload(n: int) -> dict[str, Any]:
    return _dump(
        UsageReported(deal_id=HX_ONB[n % 4], occurred_at=BASE_TIME, seats_used=10, seats_purchased=100)
    )


def _deadline_payload(n: int) -> dict[str, Any]:
    stage = ("qualification", "proposal", "onboarding", "insights")[n % 4]
    deal_id = (HX_QUAL, HX_PROP, HX_ONB, HX_QUAL)[n % 4][n % 4]
    return _dump(
        DeadlineReached(deal_id=deal_id, stage_service=stage, deadline_id=f"hx:unknown-{n}", due_at=FUTURE)
    )


def _erasure_payload(n: int) -> dict[str, Any]:
    return _dump(ErasureRequested(request_id=f"hx-er-{n}", email=f"nobody-{n}@hx-erase.example"))


def _imported_payload(n: int) -> dict[str, Any]:
    """In turn proposal's open and won, qualification's, and proposal's lost; deadlines of it that fell
    due before as_of (its last move a month before) are recorded as history during the run."""
    stage = ("negotiation", "won", "qualification", "lost")[n % 4]
    return _dump(opportunity(f"hx-imp-{n}", stage, BASE_TIME, timedelta(days=30)))


TEMPLATES = [
    Template(
        "lead",
        Topic.LEADS,
        "lead.captured.v1",
        _lead_payload,
        key_field="lead_id",
        int_paths=("employees", "annual_revenue"),
        text_path="company_name",
    ),
    Template("touch", Topic.ACTIVITIES, "activity.touch_logged.v1", _touch_payload, text_path="actor"),
    Template(
        "objection", Topic.ACTIVITIES, "activity.objection_raised.v1", _objection_payload, text_path="notes"
    ),
    Template("demo", Topic.ACTIVITIES, "activity.demo_scheduled.v1", _demo_payload, text_path="actor"),
    Template(
        "task", Topic.ACTIVITIES, "activity.onboarding_task_completed.v1", _task_payload, text_path="actor"
    ),
    Template("usage", Topic.ACTIVITIES, "activity.usage_reported.v1", _usage_payload, text_path="actor"),
    Template(
        "prospect",
        Topic.PROSPECTS,
        "prospect.identified.v1",
        _prospect_payload,
        int_paths=("company.employees", "company.annual_revenue", "fit_explanation_points"),
        text_path="company.name",
    ),
    Template(
        "qualified",
        Topic.QUALIFICATIONS,
        "lead.qualified.v1",
        _qualified_payload,
        int_paths=("company.employees", "company.annual_revenue"),
        text_path="company.name",
    ),
    Template("stage", Topic.DEALS, "deal.stage_changed.v1", _stage_payload, text_path="stage"),
    Template(
        "won",
        Topic.DEALS_WON,
        "deal.won.v1",
        _won_payload,
        int_paths=("customer.employees", "lines.0.quantity", "lines.0.unit_price_minor", "quote_version"),
        text_path="customer.name",
    ),
    Template(
        "upsell",
        Topic.ONBOARDINGS,
        "upsell.identified.v1",
        _upsell_payload,
        key_field="expansion_deal_id",
        int_paths=("customer.employees", "customer.annual_revenue"),
        text_path="customer.name",
    ),
    Template(
        "onboarding_started",
        Topic.ONBOARDINGS,
        "onboarding.started.v1",
        _started_payload,
        int_paths=("customer.employees",),
        text_path="owner",
    ),
    Template(
        "deadline",
        Topic.DEADLINES,
        "deadline.reached.v1",
        _deadline_payload,
        text_path="deadline_id",
        allowed_valid=NO_EFFECT,
    ),
    Template(
        "imported",
        Topic.IMPORTS,
        "opportunity.imported.v1",
        _imported_payload,
        int_paths=("amount.amount_minor", "company.employees", "company.annual_revenue"),
        text_path="owner",
    ),
    Template(
        "erasure",
        Topic.PRIVACY,
        "personal_data.erasure_requested.v1",
        _erasure_payload,
        key_field="request_id",
        text_path="requested_by",
    ),
]
BY_TOPIC: dict[Topic, list[Template]] = {}
for _template in TEMPLATES:
    BY_TOPIC.setdefault(_template.topic, []).append(_template)
BY_NAME = {template.name: template for template in TEMPLATES}
ALL_TOPICS = list(BY_TOPIC)
DEAL_TOPICS = [topic for topic in BY_TOPIC if topic is not Topic.PRIVACY]


def _activity(event_type: str) -> Template:
    """A template for an activity type that has none of its own: a touch's, under that type."""
    return replace(BY_NAME["touch"], event_type=event_type)


def set_path(payload: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A copy of the payload with the dotted path set (list indexes as numbers)."""
    copy = json.loads(json.dumps(payload))
    target: Any = copy
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    last = parts[-1]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return copy


def _deadline_target(payload: dict[str, Any], template: Template) -> str | None:
    if template.event_type == "deadline.reached.v1" and isinstance(payload.get("stage_service"), str):
        return str(payload["stage_service"])
    return None


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _as_utf16(body: bytes) -> bytes:
    return body.decode().encode("utf-16")


# --- the draft: a class's record in the making ------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """A class's n-th use of a template in a run: the valid record a class changes into a hostile one.

    Its number comes from the run's context when the builder runs, so ids are fresh across the whole run.
    """

    ctx: Context
    cls: str
    template: Template
    n: int

    @property
    def payload(self) -> dict[str, Any]:
        return self.template.payload(self.n)

    def payload_with(self, path: str, value: object) -> dict[str, Any]:
        return set_path(self.payload, path, value)

    def renumbered(self) -> Draft:
        return replace(self, n=self.ctx.number(self.cls))

    def probe(
        self,
        variant: str,
        *,
        allowed: frozenset[str],
        template: Template | None = None,
        payload: dict[str, Any] | None = None,
        value: bytes | Callable[[bytes], bytes | None] | object | None = ...,
        headers: Mapping[str, bytes | str | None] | None = None,
        key: bytes | str | None = "",
        partition: int | None = None,
        ce_id: str | None = None,
        event_type: str | bool | None = True,
        phase: int = 1,
        conflict_copy: bool = False,
        answered_by: str | None = None,
    ) -> Probe:
        """The valid record of the template (the draft's, or another); each keyword changes one part of it.

        `value` may be bytes (the whole value), None (a tombstone), or a function of the rendered payload;
        `key` "" means the payload's partition key; `event_type` True means the template's type.
        """
        template = self.template if template is None else template
        payload = template.payload(self.n) if payload is None else payload
        body = render(payload)
        raw_value = value(body) if callable(value) else body if value is ... else value
        assert raw_value is None or isinstance(raw_value, bytes)
        partition_key = template.partition_key(payload)
        raw_key = partition_key.encode() if key == "" else key.encode() if isinstance(key, str) else key
        ce_id = f"hx-{self.cls}-{self.n}" if ce_id is None else ce_id
        headers_out = ce_headers(template.event_type, ce_id, self.ctx.now, **(headers or {}))
        if partition is None:
            partition = murmur2(raw_key if raw_key else partition_key.encode(), self.ctx.partitions)
        claimed = template.ce_type if event_type is True else event_type or None
        readable_id = next(
            (v.decode("utf-8") for k, v in headers_out if k == "ce_id" and v is not None and _utf8(v)), None
        )
        return Probe(
            cls=self.cls,
            variant=variant,
            topic=template.topic,
            key=raw_key,
            value=raw_value,
            headers=headers_out,
            allowed=allowed,
            event_type=str(claimed) if claimed else None,
            partition=partition,
            ce_id=readable_id,
            deadline_for=_deadline_target(payload, template) if raw_value == body else None,
            conflict_copy=conflict_copy,
            phase=phase,
            answered_by=answered_by,
        )


Make = Callable[[Draft], Probe | list[Probe]]  # one record, or several that go out together


def _builder(cls: str, template: Template, make: Make) -> Builder:
    def build(ctx: Context) -> list[Probe]:
        made = make(Draft(ctx, cls, template, ctx.number(cls)))
        return made if isinstance(made, list) else [made]

    return build


def templates_of(topic: Topic) -> st.SearchStrategy[Template]:
    return st.sampled_from(BY_TOPIC[topic])


def hostile_class(
    *, template: str | None = None, among: Sequence[str] = ()
) -> Callable[[Callable[[st.DrawFn], Make]], Callable[[Topic], st.SearchStrategy[Builder]]]:
    """Turns a class, a function that draws what it varies and returns how to make its record from a draft,
    into its factory: topic -> strategy of builders. The class is named after the function.

    The draft's template is drawn first, from the topic's templates or `among` these, unless the class
    always starts from one (`template`): the draws, and so the corpus, depend on that order.
    """

    def decorate(vary: Callable[[st.DrawFn], Make]) -> Callable[[Topic], st.SearchStrategy[Builder]]:
        cls = vary.__name__

        def factory(topic: Topic) -> st.SearchStrategy[Builder]:
            @st.composite
            def build(draw: st.DrawFn) -> Builder:
                if template is not None:
                    chosen = BY_NAME[template]
                elif among:
                    chosen = draw(st.sampled_from([BY_NAME[name] for name in among]))
                else:
                    chosen = draw(templates_of(topic))
                return _builder(cls, chosen, vary(draw))

            return build()

        factory.__name__ = cls
        factory.__doc__ = vary.__doc__
        return factory

    return decorate


# --- the classes -----------------------------------------------------------------------------------
# Each draws what it varies (after its template: see hostile_class) and says how to make its record.


def _nest(depth: int, shape: str) -> str:
    opening, closing = {"array": ("[", "]"), "object": ('{"a":', "}"), "mixed": ('[{"a":', "}]")}[shape]
    count = depth if shape != "mixed" else depth // 2
    return opening * count + "0" + closing * count if shape == "object" else opening * count + closing * count


@hostile_class()
def deep_nesting(draw: st.DrawFn) -> Make:
    depth = draw(st.one_of(st.just(100_000), st.integers(900, 3_000), st.integers(10_000, 150_000)))
    shape = draw(st.sampled_from(["array", "object", "mixed"]))
    where = draw(st.sampled_from(["ignored_field", "whole_value", "valid_field"]))

    def make(draft: Draft) -> Probe:
        template = draft.template
        if where == "whole_value":
            return draft.probe(
                f"{shape} {depth} deep as the value", value=_nest(depth, shape).encode(), allowed=DEAD
            )
        path = "x_nested" if where == "ignored_field" else template.text_field("x_nested")
        allowed = template.allowed_valid | DEAD if where == "ignored_field" else SETTLED
        payload = draft.payload_with(path, Raw(_nest(depth, shape)))
        return draft.probe(f"{shape} {depth} deep in {path}", payload=payload, allowed=allowed)

    return make


@hostile_class()
def huge_integer_digits(draw: st.DrawFn) -> Make:
    numbers: dict[str, Callable[[int], str]] = {
        "integer": lambda digits: "9" * digits,
        "negative": lambda digits: "-" + "1" * digits,
        "exponent": lambda digits: "1e" + "9" * min(digits, 400),
        "fraction": lambda digits: "0." + "3" * digits,
    }
    digits = draw(st.one_of(st.just(5_000), st.integers(4_301, 50_000)))
    form = draw(st.sampled_from(list(numbers)))
    where = draw(st.sampled_from(["ignored_field", "int_field", "nested_ignored"]))

    def make(draft: Draft) -> Probe:
        template = draft.template
        path = {
            "ignored_field": "x_big",
            "int_field": template.int_field("x_big"),
            "nested_ignored": "x_meta.counts.0",
        }[where]
        payload = draft.payload_with(path, Raw(numbers[form](digits)))
        return draft.probe(
            f"{form} of {digits} digits in {path}", payload=payload, allowed=template.any_outcome
        )

    return make


@hostile_class()
def int_beyond_64_bits(draw: st.DrawFn) -> Make:
    spellings: dict[str, Callable[[int], object]] = {
        "int": lambda number: Raw(str(number)),
        "float_literal": lambda number: Raw(f"{float(number):e}"),
        "string": str,
    }
    number = draw(
        st.one_of(
            st.sampled_from([10**30, 2**63, 2**64, -(2**63) - 1, 2**64 - 1]),
            st.integers(2**63, 10**60),
        )
    )
    form = draw(st.sampled_from(list(spellings)))
    pick = draw(st.integers(0, 5))

    def make(draft: Draft) -> Probe:
        paths = draft.template.int_paths or ("x_count",)
        path = paths[pick % len(paths)]
        if path == "fit_explanation_points":
            path = "fit_score"
        return draft.probe(
            f"{form} {str(number)[:12]}... ({len(str(number))} digits) in {path}",
            payload=draft.payload_with(path, spellings[form](number)),
            allowed=draft.template.any_outcome,
        )

    return make


# variant -> the body it sends for the JSON text (the text field, where there is one, has an "ü")
ENCODINGS: dict[str, Callable[[str], bytes]] = {
    **{
        codec: partial(str.encode, encoding=codec)
        for codec in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")
    },
    "latin-1": lambda text: text.encode("latin-1", errors="replace"),
    "cesu-8 surrogate": lambda text: text.replace("ü", "\udca0").encode("utf-8", errors="surrogatepass"),
    "overlong": lambda text: text.encode().replace(b"/", b"\xc0\xaf").replace(b"\xc3\xbc", b"\xc1\xbc"),
    "truncated": lambda text: text.encode().replace("ü".encode(), b"\xc3"),
    "utf-8 bom": lambda text: b"\xef\xbb\xbf" + text.encode(),
}


@hostile_class()
def non_utf8_body(draw: st.DrawFn) -> Make:
    encoding = draw(st.sampled_from(list(ENCODINGS)))

    def make(draft: Draft) -> Probe:
        template = draft.template
        payload = draft.payload
        if template.text_path:
            payload = set_path(payload, template.text_path, "Müller & Søn ünïcødé")
        return draft.probe(
            encoding,
            payload=payload,
            value=lambda body: ENCODINGS[encoding](body.decode()),
            allowed=template.any_outcome if encoding == "utf-8 bom" else DEAD,
        )

    return make


@hostile_class()
def document_keys(draw: st.DrawFn) -> Make:
    """Ids and names with dots or a dollar where a document database would make them keys."""
    name = draw(
        st.sampled_from(["a.b", "obj.1", "x..y", "$where", "$", "a$b", "1.0", "k.$gt", ".", "$set.x"])
    )
    where = draw(st.sampled_from(["id", "ignored_object_keys", "header_name", "objection_id", "answers"]))

    def make(draft: Draft) -> Probe:
        template, n = draft.template, draft.n
        on_activities = template.topic is Topic.ACTIVITIES
        if where == "objection_id" and on_activities:
            objection = _dump(
                ObjectionRaised(
                    deal_id=HX_PROP[n % 4],
                    occurred_at=BASE_TIME,
                    objection_id="placeholder",
                    category="other",
                )
            )
            objection["objection_id"] = f"{name.strip('.$') or 'o'}.{n}" if "$" not in name else name
            return draft.probe(
                f"objection_id {objection['objection_id']!r}",
                template=BY_NAME["objection"],
                payload=objection,
                allowed=SETTLED,
            )
        if where == "answers" and on_activities:
            call = _dump(DiscoveryCallLogged(deal_id=HX_QUAL[n % 4], occurred_at=BASE_TIME))
            call["answers"] = {name: True, "budget": True}
            return draft.probe(
                f"answers key {name!r}",
                template=_activity("activity.discovery_call_logged.v1"),
                payload=call,
                allowed=SETTLED,
            )
        if where == "id":
            fresh = f"hx{name}{n}" if not name.startswith(".") else f"hx{n}{name}"
            return draft.probe(
                f"{template.key_field} {fresh!r}",
                payload=draft.payload_with(template.key_field, fresh),
                allowed=template.any_outcome,
            )
        if where == "header_name":
            return draft.probe(
                f"header named {name!r}", headers={name: "x", f"{name}.2": "y"}, allowed=template.any_outcome
            )
        return draft.probe(
            f"ignored object with key {name!r}",
            payload=draft.payload_with("x_meta", {name: 1, f"{name}.b": {"$ne": None}, "": 2}),
            allowed=template.any_outcome,
        )

    return make


REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type")
BAD_BYTES = st.one_of(
    st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"ok\xfe\xfe", b"\x80abc"]),
    st.binary(min_size=1, max_size=40).filter(lambda raw: not _utf8(raw)),
)


@hostile_class()
def non_utf8_header(draw: st.DrawFn) -> Make:
    name = draw(
        st.sampled_from(
            [*REQUIRED_HEADERS, "ce_time", "ce_subject", "content-type", "traceparent", "x-origin"]
        )
    )
    bad = draw(BAD_BYTES)
    changed = name.replace("-", "_") if name == "content-type" else name  # how ce_headers spells it

    return lambda draft: draft.probe(
        f"{name}={bad[:8]!r}",
        headers={changed: bad},
        event_type=None if name == "ce_type" else True,
        allowed=DEAD if name in REQUIRED_HEADERS else draft.template.any_outcome,
    )


def _null_header(draft: Draft, name: str, variant: str) -> Probe:
    """The draft's record with header `name` present but without a value (added where it is absent)."""
    record = draft.probe(variant, allowed=DEAD if name in REQUIRED_HEADERS else draft.template.any_outcome)
    headers = tuple((k, None if k == name else v) for k, v in record.headers)
    if name not in {k for k, _ in record.headers}:
        headers = (*headers, (name, None))
    return replace(
        record,
        headers=headers,
        event_type=None if name == "ce_type" else record.event_type,
        ce_id=None if name == "ce_id" else record.ce_id,
    )


@hostile_class()
def null_header(draw: st.DrawFn) -> Make:
    """Kafka allows a header without a value (null); aiokafka hands it over as None."""
    name = draw(st.sampled_from([*REQUIRED_HEADERS, "ce_time", "content-type", "traceparent", "x-empty"]))
    return lambda draft: _null_header(draft, name, f"{name} without a value")


@hostile_class()
def header_confusion(draw: st.DrawFn) -> Make:
    """Headers twice with different values, odd case, padding, empty values, enormous values."""
    variant = draw(
        st.sampled_from(
            [
                "ce_type twice",
                "ce_id twice",
                "upper-case names",
                "padded values",
                "empty ce_source",
                "200 KB ce_source",
                "10,000 headers",
                "empty header name",
            ]
        )
    )

    def make(draft: Draft) -> Probe:
        allowed = draft.template.any_outcome
        base = draft.probe(variant, allowed=allowed)
        headers, event_type, ce_id = list(base.headers), base.event_type, base.ce_id
        if variant == "ce_type twice":
            # Decoders keep the last of a repeated header: the record is, to them, the second type.
            other = "io.dealflow.activity.deal_lost_reported.v1"
            headers.append(("ce_type", other.encode()))
            event_type = other
        elif variant == "ce_id twice":
            headers.append(("ce_id", f"{base.ce_id}-second".encode()))
            ce_id = f"{base.ce_id}-second"
        elif variant == "upper-case names":
            headers = [(name.upper(), value) for name, value in headers]
            allowed, event_type = DEAD, None
        elif variant == "padded values":
            headers = [(name, b" " + (value or b"") + b" ") for name, value in headers]
            allowed, event_type = DEAD | SETTLED, None
        elif variant == "empty ce_source":
            headers = [(name, b"" if name == "ce_source" else value) for name, value in headers]
            allowed = DEAD
        elif variant == "200 KB ce_source":
            headers = [(name, b"s" * 200_000 if name == "ce_source" else value) for name, value in headers]
        elif variant == "10,000 headers":
            headers += [(f"x-{i}", b"v") for i in range(10_000)]
        else:
            headers.append(("", b"nameless"))
        return replace(base, headers=tuple(headers), allowed=allowed, event_type=event_type, ce_id=ce_id)

    return make


def _effectful_on_victim(n: int) -> tuple[Template, dict[str, Any]]:
    """An activity that would change a victim deal visibly, if it were applied."""
    kind = n % 3
    if kind == 0:
        touch = TouchLogged(deal_id=V_QUAL[n % 3], occurred_at=BASE_TIME, channel="email", outcome="replied")
        return BY_NAME["touch"], _dump(touch)
    if kind == 1:
        lost = DealLostReported(deal_id=V_PROP[n % 3], occurred_at=BASE_TIME, reason_code="price")
        return _activity("activity.deal_lost_reported.v1"), _dump(lost)
    usage = UsageReported(deal_id=V_ONB[n % 3], occurred_at=BASE_TIME, seats_used=99, seats_purchased=100)
    return BY_NAME["usage"], _dump(usage)


def _aimed(draft: Draft, on_victim: bool) -> tuple[Template, dict[str, Any]]:
    """The draft's template and payload; or, asked for and on the activities topic, one at a victim deal."""
    if on_victim and draft.template.topic is Topic.ACTIVITIES:
        return _effectful_on_victim(draft.n)
    return draft.template, draft.payload


@hostile_class()
def key_mismatch(draw: st.DrawFn) -> Make:
    """The record key is not the event's partition key (or there is none): refused as key_mismatch."""
    record_keys: dict[str, Callable[[str], bytes | None]] = {
        "another deal's key": lambda key: f"{key}-other".encode(),
        "no key": lambda key: None,
        "empty key": lambda key: b"",
        "upper-case key": lambda key: key.upper().encode(),
        "key + space": lambda key: f"{key} ".encode(),
        "key + NUL": lambda key: f"{key}\x00".encode(),
        "non-UTF-8 key": lambda key: key.encode() + b"\xff",
    }
    variant = draw(st.sampled_from(list(record_keys)))
    placed = draw(st.sampled_from(["by the event's key", "by the record key"]))
    on_victim = draw(st.booleans())

    def make(draft: Draft) -> Probe:
        chosen, payload = _aimed(draft, on_victim)
        partition_key = chosen.partition_key(payload)
        record_key = record_keys[variant](partition_key)
        if record_key == partition_key.encode():  # upper-case of an upper-case key
            record_key = partition_key.encode() + b"-x"
        placed_by = record_key if record_key and placed == "by the record key" else partition_key.encode()
        return draft.probe(
            f"{variant}, placed {placed}" + (" (victim)" if chosen is not draft.template else ""),
            template=chosen,
            payload=payload,
            key=record_key,
            partition=murmur2(placed_by, draft.ctx.partitions),
            allowed=frozenset({"dead_lettered:key_mismatch"}),
        )

    return make


@hostile_class()
def wrong_partition(draw: st.DrawFn) -> Make:
    """Key and event agree, but the record is not where Kafka's default partitioner (murmur2) puts it."""
    how = draw(st.sampled_from(["librdkafka crc32", "next partition", "partition 0 for all"]))
    on_victim = draw(st.booleans())

    def make(draft: Draft) -> Probe:
        partitions = draft.ctx.partitions
        for attempt in range(50):  # a case whose wrong partition really differs
            if attempt:
                draft = draft.renumbered()
            chosen, payload = _aimed(draft, on_victim)
            key = chosen.partition_key(payload).encode()
            right = murmur2(key, partitions)
            wrong = {
                "librdkafka crc32": crc32_partition(key, partitions),
                "next partition": (right + 1) % partitions,
                "partition 0 for all": 0,
            }[how]
            if wrong != right:
                break
        else:
            wrong = (right + 1) % partitions
        return draft.probe(
            f"{how}: partition {wrong}, murmur2 says {right}"
            + (" (victim)" if chosen is not draft.template else ""),
            template=chosen,
            payload=payload,
            partition=wrong,
            allowed=DEAD,
        )

    return make


@hostile_class()
def huge_string(draw: st.DrawFn) -> Make:
    where = draw(
        st.sampled_from(
            [
                "ignored field",
                "text field over its limit",
                "whole record over the limit",
                "escaped",
                "long id",
            ]
        )
    )
    drawn_size = draw(st.integers(100_000, 900_000))

    def make(draft: Draft) -> Probe:
        template, size = draft.template, drawn_size
        if where == "ignored field":
            payload = draft.payload_with("x_text", "x" * size)
        elif where == "text field over its limit":
            payload = draft.payload_with(template.text_field("x_text"), "y" * (size // 100))
        elif where == "whole record over the limit":
            size += 1_100_000
            payload = draft.payload_with("x_text", "z" * size)
        elif where == "escaped":
            payload = draft.payload_with("x_text", Raw('"' + "\\u0041" * (size // 6) + '"'))
        else:
            payload = draft.payload_with(template.key_field, "i" * (size // 1000))
        allowed = DEAD if where == "whole record over the limit" else template.any_outcome
        return draft.probe(f"{where} ({size:,} chars)", payload=payload, allowed=allowed)

    return make


@hostile_class()
def unicode_edges(draw: st.DrawFn) -> Make:
    """Lone surrogates (as JSON escapes), NUL, non-characters, bidi overrides, in a valid text field."""
    text = draw(
        st.one_of(
            st.sampled_from(
                [
                    "\\ud800",
                    "\\udfff x",
                    "a\\u0000b",
                    "\\uffff\\ufffe",
                    "\\u202eevil",
                    "\\ud83d\\ude00",
                    "\\u0000",
                    "\\ud800\\ud800",
                ]
            ),
            st.text(st.characters(codec="utf-8"), min_size=1, max_size=30).map(
                lambda text: json.dumps(text)[1:-1]
            ),
        )
    )
    where = draw(st.sampled_from(["text field", "ignored field", "id field"]))

    def make(draft: Draft) -> Probe:
        template = draft.template
        path = {
            "text field": template.text_field("x_text"),
            "ignored field": "x_text",
            "id field": template.key_field,
        }[where]
        return draft.probe(
            f"{text[:20]!r} in {path}",
            payload=draft.payload_with(path, Raw(f'"{text}"')),
            allowed=template.any_outcome,
        )

    return make


@hostile_class()
def huge_list(draw: st.DrawFn) -> Make:
    where = draw(
        st.sampled_from(["ignored field", "list field over its limit", "value is a list", "many keys"])
    )
    size = draw(st.integers(10_000, 150_000))

    def make(draft: Draft) -> Probe:
        template = draft.template
        if where == "ignored field":
            return draft.probe(
                f"{size:,} items in an ignored field",
                payload=draft.payload_with("x_list", Raw("[" + ",".join(["0"] * size) + "]")),
                allowed=template.any_outcome,
            )
        if where == "list field over its limit":
            listed = {"lead": "technologies", "demo": "attendees", "qualified": "needs.pains"}.get(
                template.name, "x_list"
            )
            items = [f"item-{i}" for i in range(min(size, 5_000))]
            return draft.probe(
                f"{len(items):,} items in {listed}",
                payload=draft.payload_with(listed, items),
                allowed=DEAD if listed != "x_list" else template.any_outcome,
            )
        if where == "value is a list":
            return draft.probe(
                f"the value is a list of {size // 10:,} events",
                value=lambda body: b"[" + b",".join([body] * (size // 10 // 20 + 1)) + b"]",
                allowed=DEAD,
            )
        many = {f"k{i}": i for i in range(size // 5)}
        return draft.probe(
            f"{len(many):,} keys in an ignored object",
            payload=draft.payload_with("x_object", many),
            allowed=template.any_outcome,
        )

    return make


def _sibling(template: Template) -> Template:
    """Another template of the same topic, ideally handled by the same service."""
    siblings = {
        "touch": "touch",
        "objection": "demo",
        "demo": "objection",
        "task": "usage",
        "usage": "task",
        "upsell": "upsell",
        "onboarding_started": "onboarding_started",
    }
    return BY_NAME.get(siblings.get(template.name, template.name), template)


@hostile_class()
def id_conflict(draw: st.DrawFn) -> Make:
    """A second record under a ce_id already used for the same aggregate, with other content."""
    drawn_change = draw(st.sampled_from(["a field changed", "another event type", "one byte more"]))

    def make(draft: Draft) -> list[Probe]:
        template, n = draft.template, draft.n
        change = drawn_change
        original = draft.probe(f"original ({change})", allowed=template.any_outcome)
        payload = draft.payload
        copy_template = _sibling(template) if change == "another event type" else template
        if copy_template is template and change == "another event type":
            change = "a field changed"
        if change == "a field changed":
            payload = set_path(payload, template.text_field("x_changed"), f"changed-{n}")
        elif change == "another event type":
            payload = {**copy_template.payload(n), template.key_field: template.partition_key(payload)}
            if copy_template.key_field != template.key_field:
                payload[copy_template.key_field] = template.partition_key(template.payload(n))
        copy = draft.probe(
            f"copy ({change})",
            template=copy_template,
            payload=payload,
            ce_id=original.ce_id,
            allowed=frozenset({"dead_lettered:id_conflict"}),
            conflict_copy=True,
            value=(lambda body: body + b" ") if change == "one byte more" else ...,
        )
        return [original, copy]

    return make


DUE_ATS = {
    "far future": "9999-12-31T23:59:59.999999+00:00",
    "in a century": "2126-01-01T00:00:00+00:00",
    "long past": "2001-01-01T00:00:00+00:00",
    "now": None,  # filled with the run's time
}


def _forged(
    deal_id: str, stage: str, deadline_id: str, due_at: str | None = DUE_ATS["far future"]
) -> dict[str, Any]:
    """A deadline.reached.v1 payload with due_at exactly as written (the model would re-render it)."""
    return {"deal_id": deal_id, "stage_service": stage, "deadline_id": deadline_id, "due_at": due_at}


@hostile_class(template="deadline")
def deadline_forgery(draw: st.DrawFn) -> Make:
    """deadline.reached.v1 from a sender: a pending deadline not yet due, unknown ids, unknown deals."""
    target = draw(
        st.sampled_from(
            [
                "victim, pending id",
                "victim, unknown id",
                "victim, parked expiry",
                "victim, insights stall",
                "unknown deal",
                "unknown deal, parked expiry",
            ]
        )
    )
    due = draw(st.sampled_from(list(DUE_ATS)))
    stage_choice = draw(st.sampled_from(["its stage", "another stage", "nobody"]))
    pick = draw(st.integers(0, 50))
    odd_id = draw(
        st.sampled_from(
            [
                "2:cadence_end",
                "task:nope",
                "quote-99:expires",
                "quote-x:expires",
                "",
                "task:kick.off",
                "$where",
                "1:cadence_end\x00",
                "check_in:day_30",
            ]
        )
    )

    def make(draft: Draft) -> Probe:
        ctx, n = draft.ctx, draft.n
        victim = VICTIMS[pick % len(VICTIMS)]
        stage = VICTIM_STAGE[victim]
        if target == "victim, pending id":
            deal_id, deadline_id = victim, PENDING_DEADLINES[stage][pick % len(PENDING_DEADLINES[stage])]
        elif target == "victim, unknown id":
            deal_id, deadline_id = victim, odd_id
        elif target == "victim, parked expiry":
            deal_id, deadline_id = victim, f"parked-events-expire/forged-{n}"
        elif target == "victim, insights stall":
            stalls = ctx.stall_ids.get(victim) or [f"stalled:qualification:{ctx.now:%Y%m%dT%H%M%S.%fZ}"]
            deal_id, deadline_id, stage = victim, stalls[pick % len(stalls)], "insights"
        elif target == "unknown deal":
            deal_id, deadline_id = f"ghost-{n}", odd_id or "1:cadence_end"
            stage = ("qualification", "proposal", "onboarding", "insights")[pick % 4]
        else:
            deal_id, deadline_id = f"ghost-{n}", f"parked-events-expire/forged-{n}"
            stage = ("qualification", "proposal", "onboarding")[pick % 3]
        named = {
            "its stage": stage,
            "another stage": "prospecting" if stage != "prospecting" else "proposal",
            "nobody": "nobody",
        }[stage_choice]
        return draft.probe(
            f"{target}: {deadline_id[:40]!r} due {due}, for {stage_choice}",
            payload=_forged(deal_id, named, deadline_id, DUE_ATS[due] or ctx.now.isoformat()),
            allowed=NO_EFFECT,
            phase=0 if target.startswith("unknown deal") else 1,
        )

    return make


def _fixed_forgeries() -> list[Builder]:
    """The known holes, always in the corpus: a deadline forged before its deal opens; a parked expiry."""

    def forged(deal_id: str, stage: str, deadline_id: str, variant: str) -> Builder:
        payload = _forged(deal_id, stage, deadline_id)
        return _builder(
            "deadline_forgery",
            BY_NAME["deadline"],
            lambda draft: draft.probe(variant, payload=payload, allowed=NO_EFFECT),
        )

    def stalls(ctx: Context) -> list[Probe]:
        """insights' pending stall of a victim, forged: one record per id it may have."""
        victim = V_QUAL[1]
        return [
            record
            for deadline_id in ctx.stall_ids.get(victim, [])
            for record in forged(victim, "insights", deadline_id, f"victim, insights stall: {deadline_id}")(
                ctx
            )
        ]

    return [
        stalls,
        forged(Z_QUAL[0], "qualification", "1:cadence_end", "before the deal opens: 1:cadence_end"),
        forged(Z_QUAL[1], "qualification", "1:first_touch_overdue", "before the deal opens: first touch"),
        forged(Z_ONB[0], "onboarding", "task:kickoff", "before the deal opens: task:kickoff"),
        forged(W_DEALS[0], "qualification", "parked-events-expire/forged", "parked expiry, parked events"),
        forged(W_DEALS[1], "proposal", "parked-events-expire/forged", "parked expiry, parked events"),
        forged(V_QUAL[0], "qualification", "1:cadence_end", "victim, pending id: 1:cadence_end"),
        forged(V_PROP[0], "proposal", "quote-1:expires", "victim, pending id: quote-1:expires"),
        forged(V_ONB[0], "onboarding", "task:kickoff", "victim, pending id: task:kickoff"),
    ]


CE_TIMES = [
    "",
    "not a time",
    "2026-13-45T99:99:99Z",
    "9999-12-31T23:59:59+00:00",
    "0001-01-01T00:00:00+00:00",
    "2026-11-02T09:00:00",
    "2026-11-02",
    "1e10",
    "\uff12\uff10\uff12\uff16-11-02T09:00:00Z",  # full-width digits
    "2026-11-02T09:00:00+23:59",
    "2026-11-02 09:00:00+00:00",
    "2026-11-02T09:00:00.123456789Z",
    "T" * 10_000,
]


@hostile_class()
def ce_time(draw: st.DrawFn) -> Make:
    text = draw(st.one_of(st.sampled_from(CE_TIMES), st.text(max_size=40)))
    return lambda draft: draft.probe(
        f"ce_time {text[:30]!r}", headers={"ce_time": text}, allowed=draft.template.any_outcome
    )


@hostile_class()
def ce_type(draw: st.DrawFn) -> Make:
    headers: dict[str, Callable[[Template], str | None]] = {
        "missing": lambda template: None,
        "empty": lambda template: "",
        "unknown": lambda template: "io.dealflow.lead.teleported.v1",
        "v2 of a known type": lambda template: template.ce_type.replace(".v1", ".v2"),
        "upper case": lambda template: template.ce_type.upper(),
        "padded": lambda template: f" {template.ce_type} ",
        "without the prefix": lambda template: template.event_type,
        "another topic's type": lambda template: (
            "io.dealflow.lead.captured.v1"
            if template.topic is not Topic.LEADS
            else "io.dealflow.activity.demo_held.v1"
        ),
    }
    variant = draw(st.sampled_from(list(headers)))

    def make(draft: Draft) -> Probe:
        header = headers[variant](draft.template)
        if variant == "another topic's type":  # a well-formed type: a service it is not for ignores it
            return draft.probe(
                variant, headers={"ce_type": header}, event_type=header, allowed=SETTLED | NO_EFFECT
            )
        return draft.probe(variant, headers={"ce_type": header}, event_type=None, allowed=DEAD)

    return make


# What each variant changes in the CloudEvents headers (None drops one).
ENVELOPE_CHANGES: dict[str, dict[str, str | None]] = {
    "specversion 0.3": {"ce_specversion": "0.3"},
    "specversion 2.0": {"ce_specversion": "2.0"},
    "no specversion": {"ce_specversion": None},
    "specversion '1.0 '": {"ce_specversion": "1.0 "},
    "content-type xml": {"content_type": "application/xml"},
    "content-type text/plain": {"content_type": "text/plain"},
    "structured mode": {"content_type": "application/cloudevents+json"},
    "charset=utf-16 with a UTF-16 body": {"content_type": "application/json; charset=utf-16"},
    "charset=utf-16 with a UTF-8 body": {"content_type": "application/json; charset=utf-16"},
    "upper-case content-type": {"content_type": "APPLICATION/JSON"},
    "no content-type": {"content_type": None},
    "no ce_id": {"ce_id": None},
    "empty ce_id": {"ce_id": ""},
    "no ce_source": {"ce_source": None},
    "ce_id of 10,000 characters": {"ce_id": "i" * 10_000},
}
# A service may read these as the valid record they otherwise are; the rest it must dead-letter.
ENVELOPE_READABLE = {
    "charset=utf-16 with a UTF-8 body",
    "upper-case content-type",
    "no content-type",
    "ce_id of 10,000 characters",
}


@hostile_class()
def envelope_attributes(draw: st.DrawFn) -> Make:
    """Wrong or missing specversion, content-type, id and source."""
    variant = draw(st.sampled_from(list(ENVELOPE_CHANGES)))
    return lambda draft: draft.probe(
        variant,
        headers=ENVELOPE_CHANGES[variant],
        value=_as_utf16 if variant == "charset=utf-16 with a UTF-16 body" else ...,
        allowed=draft.template.any_outcome if variant in ENVELOPE_READABLE else DEAD,
    )


def _under_headers(record: Probe, headers: Iterable[tuple[str, bytes | None]], variant: str) -> Probe:
    """The record under other headers than its CloudEvents ones: it claims no type and no id."""
    return replace(record, variant=variant, headers=tuple(headers), event_type=None, ce_id=None)


@hostile_class()
def empty_and_tombstone(draw: st.DrawFn) -> Make:
    value = draw(st.sampled_from([b"", None, b" ", b"\n", b"null", b"{}"]))
    with_headers = draw(st.booleans())
    label = {None: "tombstone (null value)", b"": "empty value"}.get(value, f"value {value!r}")

    def make(draft: Draft) -> Probe:
        record = draft.probe(f"{label}, CloudEvents headers", value=value, allowed=DEAD)
        return record if with_headers else _under_headers(record, (), f"{label}, no headers")

    return make


@hostile_class()
def garbage_bytes(draw: st.DrawFn) -> Make:
    raw = draw(st.binary(min_size=1, max_size=3_000))
    headers = draw(
        st.one_of(
            st.just(None), st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=30)), max_size=6)
        )
    )

    def make(draft: Draft) -> Probe:
        record = draft.probe(f"{len(raw)} random bytes", value=raw, allowed=DEAD)
        if headers is None:
            return record
        return _under_headers(record, headers, f"{len(raw)} random bytes, random headers")

    return make


@hostile_class()
def json_shapes(draw: st.DrawFn) -> Make:
    """Valid JSON of the wrong shape, JSON's odd corners, Python's JSON extensions."""

    def float_field(template: Template) -> str:  # a stage change's one float is its probability
        return {"stage": "probability"}.get(template.name, template.int_field("x_float"))

    # variant -> the record's value, made from the draft's valid payload
    values: dict[str, Callable[[Draft], bytes]] = {
        "array": lambda draft: b"[" + render(draft.payload) + b"]",
        "number": lambda draft: b"42",
        "string": lambda draft: b'"event"',
        "null": lambda draft: b"null",
        "true": lambda draft: b"true",
        "NaN": lambda draft: b"NaN",
        "Infinity in a field": lambda draft: render(draft.payload_with("x_float", Raw("Infinity"))),
        "NaN in a float field": lambda draft: render(
            draft.payload_with(float_field(draft.template), Raw("NaN"))
        ),
        "duplicate key": lambda draft: (
            render(draft.payload)[:-1]
            + f',"{draft.template.key_field}":"{draft.template.partition_key(draft.payload)}-dup"}}'.encode()
        ),
        "wrong types": lambda draft: render({name: [item] for name, item in draft.payload.items()}),
        "1e400 in a field": lambda draft: render(
            draft.payload_with(draft.template.int_field("x_float"), Raw("1e400"))
        ),
        "trailing garbage": lambda draft: render(draft.payload) + b"}{",
        "comments": lambda draft: b"/* hi */" + render(draft.payload),
        "single quotes": lambda draft: render(draft.payload).replace(b'"', b"'"),
        "ids as numbers": lambda draft: render(draft.payload_with(draft.template.key_field, Raw("12345"))),
    }
    # Parsers may take these for the valid record (or a valid one); the rest is not a record at all.
    readable = {
        "Infinity in a field",
        "NaN in a float field",
        "duplicate key",
        "1e400 in a field",
        "ids as numbers",
    }
    variant = draw(st.sampled_from(list(values)))

    def make(draft: Draft) -> Probe:
        allowed = draft.template.any_outcome if variant in readable else DEAD
        return draft.probe(variant, value=values[variant](draft), allowed=allowed)

    return make


@hostile_class(among=("touch", "objection", "demo", "task", "usage"))
def orphan_activity(draw: st.DrawFn) -> Make:
    """A valid activity for a deal that never opens: it waits, then is dead-lettered (deal_never_opened)."""
    return lambda draft: draft.probe(
        f"{draft.template.event_type} for a deal never opened",
        payload=draft.payload_with("deal_id", f"orphan-{draft.template.name}-{draft.n}"),
        allowed=DEAD,
        phase=0,
    )


@hostile_class(template="touch")
def rule_breaks(draw: st.DrawFn) -> Make:
    """Valid activities a stage's rules refuse: each is answered by activity.rejected.v1, and only that."""
    at = BASE_TIME
    refused: dict[str, Callable[[int], Event]] = {
        "unknown quote version": lambda n: ProposalAccepted(
            deal_id=HX_PROP[n % 4], occurred_at=at, quote_version=99
        ),
        "unknown loss reason": lambda n: DealLostReported(
            deal_id=HX_PROP[n % 4], occurred_at=at, reason_code="aliens"
        ),
        "unknown objection": lambda n: ObjectionResolved(
            deal_id=HX_PROP[n % 4], occurred_at=at, objection_id="never"
        ),
        "unknown task": lambda n: OnboardingTaskCompleted(
            deal_id=HX_ONB[n % 4], occurred_at=at, task="no_such_task"
        ),
        "required task skipped": lambda n: OnboardingTaskSkipped(
            deal_id=HX_ONB[n % 4], occurred_at=at, task="go_live", reason="hostile"
        ),
        "unknown framework": lambda n: DiscoveryCallLogged(
            deal_id=HX_QUAL[n % 4], occurred_at=at, framework="NOPE"
        ),
    }
    kind = draw(st.sampled_from(list(refused)))
    actor = draw(st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=20))

    def make(draft: Draft) -> Probe:
        event = refused[kind](draft.n)
        return draft.probe(
            kind,
            template=_activity(event.TYPE.removeprefix("io.dealflow.")),
            payload=_dump(event) | {"actor": actor},
            allowed=frozenset({"rejected"}),
        )

    return make


@hostile_class(template="imported")
def refused_imports(draw: st.DrawFn) -> Make:
    """Valid rows whose history a stage refuses: the stage whose row it is answers activity.rejected.v1,
    the other takes it as nothing; a time no stage may take is refused by both."""
    at, month = BASE_TIME, timedelta(days=30)

    def row(like: str, **changes: object) -> Callable[[int], OpportunityImported]:
        """A row of a deal in stage `like` (its history), with these fields changed."""
        return lambda n: opportunity(f"hx-imp-{n}", like, at, month, **changes)

    out_of_order = [
        ImportedStage(stage="proposal", entered_at=at - month),
        ImportedStage(stage="negotiation", entered_at=at - 2 * month),
    ]
    # kind -> (the row, the stage that answers it; None: both)
    refused: dict[str, tuple[Callable[[int], OpportunityImported], str | None]] = {
        "unknown pipeline": (row("negotiation", pipeline="partners"), "proposal"),
        "unknown stage": (row("negotiation", stage="haggling"), "proposal"),
        "won without closed_at": (row("won", closed_at=None), "proposal"),
        "history out of order": (row("negotiation", stage_history=out_of_order), "proposal"),
        "history ends in another stage": (row("negotiation", stage="closing"), "proposal"),
        "created after as_of": (row("won", created_at=at + timedelta(hours=1)), "proposal"),
        "a stage not of its pipeline": (row("negotiation", pipeline="renewal"), "proposal"),
        "qualification's, history ends in another stage": (
            row("negotiation", stage="qualification"),
            "qualification",
        ),
        "a live deal's id, in negotiation": (
            lambda n: opportunity(HX_PROP[n % 4], "negotiation", at, month),
            "proposal",
        ),
        "a live lead's id, in qualification": (
            lambda n: opportunity(HX_QUAL[n % 4], "qualification", at, month),
            "qualification",
        ),
        "as_of in the future": (lambda n: opportunity(f"hx-imp-{n}", "won", FUTURE, month), None),
        "as_of eleven years ago": (
            lambda n: opportunity(f"hx-imp-{n}", "won", at - timedelta(days=4_000), month),
            None,
        ),
    }
    kind = draw(st.sampled_from(list(refused)))

    def make(draft: Draft) -> Probe:
        build, answered_by = refused[kind]
        return draft.probe(
            kind, payload=_dump(build(draft.n)), allowed=frozenset({"rejected"}), answered_by=answered_by
        )

    return make


# class name -> (strategy factory, topics it is tried on, examples per topic)
CLASSES: dict[str, tuple[Callable[[Topic], st.SearchStrategy[Builder]], Sequence[Topic], int]] = {
    "deep_nesting": (deep_nesting, ALL_TOPICS, 2),
    "huge_integer_digits": (huge_integer_digits, ALL_TOPICS, 3),
    "int_beyond_64_bits": (int_beyond_64_bits, ALL_TOPICS, 3),
    "non_utf8_body": (non_utf8_body, ALL_TOPICS, 3),
    "document_keys": (document_keys, ALL_TOPICS, 3),
    "non_utf8_header": (non_utf8_header, ALL_TOPICS, 3),
    "null_header": (null_header, ALL_TOPICS, 2),
    "header_confusion": (header_confusion, ALL_TOPICS, 3),
    "key_mismatch": (key_mismatch, DEAL_TOPICS, 3),
    "wrong_partition": (wrong_partition, DEAL_TOPICS, 3),
    "huge_string": (huge_string, ALL_TOPICS, 2),
    "unicode_edges": (unicode_edges, ALL_TOPICS, 3),
    "huge_list": (huge_list, ALL_TOPICS, 2),
    # Not on the deadlines topic: a deadline that changes nothing is not recorded, so no id is taken.
    "id_conflict": (id_conflict, [t for t in DEAL_TOPICS if t is not Topic.DEADLINES], 2),
    "deadline_forgery": (deadline_forgery, [Topic.DEADLINES], 18),
    "ce_time": (ce_time, ALL_TOPICS, 3),
    "ce_type": (ce_type, ALL_TOPICS, 3),
    "envelope_attributes": (envelope_attributes, ALL_TOPICS, 3),
    "empty_and_tombstone": (empty_and_tombstone, ALL_TOPICS, 2),
    "garbage_bytes": (garbage_bytes, ALL_TOPICS, 2),
    "json_shapes": (json_shapes, ALL_TOPICS, 3),
    "orphan_activity": (orphan_activity, [Topic.ACTIVITIES], 6),
    "rule_breaks": (rule_breaks, [Topic.ACTIVITIES], 12),
    "refused_imports": (refused_imports, [Topic.IMPORTS], 12),
}


def _known() -> list[Builder]:
    def one_field(
        cls: str, template: str, variant: str, path: str, value: object, allowed: frozenset[str]
    ) -> Builder:
        return _builder(
            cls,
            BY_NAME[template],
            lambda draft: draft.probe(variant, payload=draft.payload_with(path, value), allowed=allowed),
        )

    return [
        one_field(
            "deep_nesting",
            "lead",
            "known: 100,000 deep in an ignored field",
            "x_nested",
            Raw(_nest(100_000, "array")),
            SETTLED | DEAD,
        ),
        one_field(
            "huge_integer_digits",
            "touch",
            "known: 5,000 digits in an ignored field",
            "x_ignored",
            Raw("7" * 5_000),
            SETTLED,
        ),
        one_field(
            "int_beyond_64_bits",
            "lead",
            "known: lead employees 10**30",
            "employees",
            Raw(str(10**30)),
            SETTLED,
        ),
        _builder(
            "non_utf8_body",
            BY_NAME["lead"],
            lambda draft: draft.probe("known: UTF-16 body", value=_as_utf16, allowed=DEAD),
        ),
        one_field(
            "huge_string",
            "demo",
            "known: a 1.5 MB record (over the 1 MiB limit)",
            "x_text",
            "z" * 1_500_000,
            DEAD,
        ),
        _builder(
            "null_header",
            BY_NAME["lead"],
            lambda draft: _null_header(draft, "ce_type", "known: ce_type without a value"),
        ),
        _builder(
            "envelope_attributes",
            BY_NAME["touch"],
            lambda draft: draft.probe(
                "known: charset=utf-16 with a UTF-16 body",
                headers=ENVELOPE_CHANGES["charset=utf-16 with a UTF-16 body"],
                value=_as_utf16,
                allowed=DEAD,
            ),
        ),
        _builder(
            "document_keys",
            BY_NAME["objection"],
            lambda draft: draft.probe(
                "known: objection_id with dots (a key of the deal's objections)",
                payload=draft.payload_with("objection_id", f"obj.{draft.n}.a"),
                allowed=SETTLED,
            ),
        ),
        *_fixed_forgeries(),
    ]


def draw(strategy: st.SearchStrategy[Builder], count: int, *, name: str) -> list[Builder]:
    """`count` builders from the strategy, the same ones every run: a seed of their own (from `name`), no
    example database. Hypothesis tries the simplest example first (each class's first variants are the
    canonical cases), then random ones."""
    drawn: list[Builder] = []

    @hypothesis_seed(zlib.crc32(name.encode()))
    @hypothesis_settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(strategy)
    def collect(builder: Builder) -> None:
        drawn.append(builder)

    collect()
    return drawn[:count]


def corpus(only: Iterable[str] | None = None) -> list[tuple[str, Builder]]:
    """Every class's builders: the cases known to break the runtime of the day first (always there,
    whatever Hypothesis draws), then Hypothesis's draws, per class and topic."""
    wanted = set(CLASSES) if only is None else set(only)
    unknown = wanted - set(CLASSES)
    if unknown:
        raise ValueError(f"no hostile class {sorted(unknown)}; the classes are {sorted(CLASSES)}")
    builders: list[tuple[str, Builder]] = []
    for builder in _known():
        builders.append(("known", builder))
    for name, (factory, topics, per_topic) in CLASSES.items():
        if name in wanted:
            for topic in topics:
                drawn = draw(factory(topic), per_topic, name=f"{name}/{topic.value}")
                builders += [(name, builder) for builder in drawn]
    return builders


def materialize(
    builders: Iterable[tuple[str, Builder]], ctx: Context, only: Iterable[str] | None
) -> list[Probe]:
    wanted = None if only is None else set(only)
    probes = [probe for _, builder in builders for probe in builder(ctx)]
    return [p for p in probes if wanted is None or p.cls in wanted]
