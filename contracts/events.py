"""Pydantic models of every event in a deal's lifecycle.

Each event is a CloudEvents 1.0 `data` payload; its `ce_type` is `io.dealflow.<name>.v<major>`. Consumers
ignore fields they do not know, so adding an optional field is a compatible change; anything else is a
new major version with a new type (and, for a topic-wide break, a new topic).

Time. Every event has a business time: when what it records happened. An upstream event states it (an
activity's `occurred_at`, a lead's `captured_at`, else the lead's CloudEvents `time`); an event a stage
derives takes the business time of the event that caused it (a discovery call's `occurred_at` becomes the
`qualified_at` of the deal it opens, a payment's the deal's `won_at`, a deadline's `due_at` what it
causes). Each event class names the field that holds it (`BUSINESS_TIME`); the services also put it in the
CloudEvents `time` of every event they emit, and the moment they processed it in `recordedtime` (the
CloudEvents recorded-time extension, header `ce_recordedtime`). The processing clock decides only that a
deadline is due, and whether an upstream time is plausible: one more than the stage playbook's
`business_time.clock_skew_seconds` after it is refused as `occurred_in_future`, one more than
`business_time.max_age_days` before it as `occurred_too_long_ago` (with activity.rejected, or lead.rejected
for a lead). A stage never moves a deal back in time: a decision caused by an activity dated before the
deal entered its current stage is dated when it entered it.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.topics import Topic

EVENT_TYPE_PREFIX = "io.dealflow."
EVENT_TYPES: dict[str, type[Event]] = {}
# Reason codes of an upstream event whose own time is implausible by the processing clock (see above).
OCCURRED_IN_FUTURE = "occurred_in_future"
OCCURRED_TOO_LONG_AGO = "occurred_too_long_ago"

# Size limits. A record is already capped as a whole (DEALFLOW_MAX_EVENT_BYTES); these keep each field sane
# too, so no single value can bloat a document, a log line or a downstream system. Upstream input gets
# the tighter text limit, so any message that quotes an input value still fits the general one.
MAX_TEXT_LENGTH = 4000
MAX_INPUT_TEXT_LENGTH = 1000
MAX_INPUT_ITEMS = 100
MAX_MINOR_UNITS = 10**15

NonEmptyStr = Annotated[str, Field(min_length=1, max_length=500)]
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
# Document databases refuse keys with dots or a leading dollar, so free-form keys are plain identifiers.
FieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 alphabetic code")]


class Model(BaseModel):
    # Unknown fields are ignored so producers can add optional fields without breaking consumers.
    # A validation error names the field and the rule, never the value, which may be personal data.
    model_config = ConfigDict(
        frozen=True, extra="ignore", str_max_length=MAX_TEXT_LENGTH, hide_input_in_errors=True
    )


class Inbound(Model):
    """A model of what upstream systems send: every text within the input limit."""

    model_config = ConfigDict(str_max_length=MAX_INPUT_TEXT_LENGTH)


class Event(Model):
    """Base of every event. Subclasses name their CloudEvents type, topic and partition key field."""

    TYPE: ClassVar[str]
    TOPIC: ClassVar[Topic]
    KEY_FIELD: ClassVar[str] = "deal_id"
    BUSINESS_TIME: ClassVar[str | None] = None
    """The field that holds when what the event records happened; None: its CloudEvents `time` does."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "TYPE" in cls.__dict__:
            cls.TYPE = EVENT_TYPE_PREFIX + cls.TYPE
            if cls.TYPE in EVENT_TYPES:
                raise TypeError(f"event type {cls.TYPE} is declared twice")
            EVENT_TYPES[cls.TYPE] = cls

    @property
    def partition_key(self) -> str:
        return str(getattr(self, self.KEY_FIELD))

    @property
    def own_time(self) -> datetime | None:
        """Its business time, when the event carries it in a field (`BUSINESS_TIME`)."""
        value = getattr(self, self.BUSINESS_TIME, None) if self.BUSINESS_TIME else None
        return value if isinstance(value, datetime) else None


def event_model(event_type: str) -> type[Event] | None:
    return EVENT_TYPES.get(event_type)


# --- value objects -------------------------------------------------------------------------------


class Money(Model):
    """An amount in the currency's minor unit, never a float: its ISO 4217 exponent says how many minor
    units make one unit (100 cents for EUR or USD, 1 for JPY, 1000 fils for KWD; see
    `contracts.currencies`)."""

    amount_minor: int = Field(ge=0, le=MAX_MINOR_UNITS)
    currency: CurrencyCode


class Contact(Model):
    email: str
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    phone: str | None = None
    seniority: str | None = Field(default=None, description="c_level, vp, director, manager or individual")
    function: str | None = Field(default=None, description="sales, marketing, engineering, it, finance, ...")


class Company(Model):
    name: str | None = None
    domain: str | None = None
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2")
    employees: int | None = Field(default=None, ge=0)
    industry: str | None = None
    annual_revenue: int | None = Field(default=None, ge=0, description="in whole currency units")
    technologies: list[str] = []


class CriterionResult(Model):
    """How one ICP criterion scored, so reps and ops can see why a lead is (not) a fit."""

    criterion: str
    matched: bool
    points: int = Field(ge=0)
    detail: str


class NextStep(Model):
    action: str
    due_at: AwareDatetime


class Reason(Model):
    code: str = Field(
        description="machine-readable reason code, e.g. invalid_email, or occurred_in_future and "
        "occurred_too_long_ago for an event whose own time the processing clock finds implausible"
    )
    field: str | None = Field(default=None, description="dotted path of the field at fault")
    message: str


class QuoteLineRequest(Inbound):
    """A line as a rep asks for it; the service prices it from its price list."""

    product: NonEmptyStr
    quantity: int = Field(gt=0, le=1_000_000)
    discount_percent: int = Field(default=0, ge=0, le=100)


class QuoteLine(Model):
    """A priced quote line: list price from the price list, the line's discount, its net total."""

    product: NonEmptyStr
    quantity: int = Field(gt=0)
    unit_price_minor: int = Field(ge=0)
    discount_percent: int = Field(default=0, ge=0, le=100)
    total_minor: int = Field(default=0, ge=0, description="quantity x unit price less the line discount")


class Quote(Model):
    version: int = Field(ge=1)
    lines: list[QuoteLine]
    discount_percent: int = Field(ge=0, le=100, description="on the whole quote, after line discounts")
    subtotal: Money = Field(description="sum of the lines' totals")
    total: Money = Field(description="what the customer pays")
    list_total: Money = Field(description="the same lines at list price")


class StageVisit(Model):
    """A stay in one stage, in business time: from the activity that moved the deal into it to the one
    that moved it on."""

    stage: str
    entered_at: AwareDatetime
    left_at: AwareDatetime
    seconds: int = Field(ge=0)


class Needs(Inbound):
    pains: list[str] = Field(default=[], max_length=MAX_INPUT_ITEMS)
    requirements: list[str] = Field(default=[], max_length=MAX_INPUT_ITEMS)
    stakeholders: list[str] = Field(default=[], max_length=MAX_INPUT_ITEMS)
    success_criteria: list[str] = Field(default=[], max_length=MAX_INPUT_ITEMS)


class OnboardingTask(Model):
    task: str
    owner_role: str
    due_at: AwareDatetime
    required: bool = True


class CheckIn(Model):
    name: str
    due_at: AwareDatetime


# --- inbound: leads and sales activities published by upstream systems ----------------------------


class LeadCaptured(Event, Inbound):
    TYPE = "lead.captured.v1"
    TOPIC = Topic.LEADS
    KEY_FIELD = "lead_id"
    BUSINESS_TIME = "captured_at"

    lead_id: Identifier
    email: str
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    phone: str | None = None
    company_name: str | None = None
    website: str | None = None
    country: str | None = Field(default=None, description="ISO 3166 code or country name")
    employees: int | str | None = Field(
        default=None, description="a number or a band such as 51-200 or 1000+"
    )
    annual_revenue: int | str | None = Field(default=None, description="a number or a band such as $10M-50M")
    industry: str | None = None
    technologies: list[str] = Field(default=[], max_length=MAX_INPUT_ITEMS)
    intent_signals: list[str] = Field(default=[], max_length=MAX_INPUT_ITEMS)
    source: str = "unknown"
    marketing_consent: bool = False
    captured_at: AwareDatetime | None = Field(
        default=None,
        description="When the lead was captured: its business time (default: its CloudEvents `time`). "
        "Refused with lead.rejected (occurred_in_future) when it lies more than the prospecting "
        "playbook's `business_time.clock_skew_seconds` after the moment prospecting processes it, or "
        "(occurred_too_long_ago) more than `business_time.max_age_days` before it.",
    )


class Activity(Event, Inbound):
    """A sales activity about one deal, logged by a rep or a system."""

    TOPIC = Topic.ACTIVITIES
    BUSINESS_TIME = "occurred_at"

    deal_id: Identifier
    activity_id: Identifier | None = None
    occurred_at: AwareDatetime = Field(
        description="When it happened: the business time of everything it causes (a stage change, a "
        "won deal, a due date), whenever it is logged. Refused with activity.rejected "
        "(occurred_in_future) when it lies more than the stage playbook's "
        "`business_time.clock_skew_seconds` after the moment the stage processes it, or "
        "(occurred_too_long_ago) more than `business_time.max_age_days` before it."
    )
    actor: str | None = None
    actor_role: str | None = Field(default=None, description="e.g. rep, manager; some answers need a role")


class TouchLogged(Activity):
    """One step of the contact cadence: a call, email or message, and what came of it."""

    TYPE = "activity.touch_logged.v1"

    channel: Literal["call", "email", "social", "meeting"]
    outcome: Literal["no_answer", "voicemail", "sent", "bounced", "replied", "meeting_booked"]
    meeting_at: AwareDatetime | None = None


class DiscoveryCallLogged(Activity):
    """A discovery call: some of the framework's answers, the needs assessment, and what the rep decided.

    Answers accumulate over several calls: each call adds answers or overrides earlier ones, and the
    qualification keeps the merged answers with who gave each and when. An answer to a criterion whose
    playbook entry lists `answered_by` roles is refused (answer_not_allowed) unless the call's
    `actor_role` is one of them, also when no role is sent. A call decides only with an explicit
    `outcome`, or (no outcome) when the playbook's `decision.without_outcome` is `when_complete` and every
    required criterion has an answer; a call with partial answers never disqualifies by itself."""

    TYPE = "activity.discovery_call_logged.v1"

    framework: str | None = Field(
        default=None,
        description="a framework of the qualification playbook; none: the one this qualification uses "
        "already, else the playbook's `default_framework`. Another framework than the one the "
        "qualification started with is refused (framework_changed)",
    )
    answers: dict[FieldName, bool | int | str] = Field(default={}, max_length=MAX_INPUT_ITEMS)
    needs: Needs = Needs()
    estimated_amount: Money | None = Field(default=None, description="the latest one given counts")
    expected_close_date: date | None = Field(default=None, description="the latest one given counts")
    nurture_until: date | None = Field(
        default=None, description="criteria not met yet: nurture, not disqualify"
    )
    outcome: Literal["qualified", "disqualified", "continue"] | None = Field(
        default=None,
        description="qualified: every required criterion is met by the answers so far (else refused, "
        "criteria_not_met) and an amount is known (else missing_estimated_amount); disqualified: closes "
        "the lead, the reason code naming the first required criterion not met (else "
        "disqualified_by_rep); continue: the answers are kept, nothing is decided. None: see the "
        "playbook's `decision.without_outcome`",
    )


class NurtureRequested(Activity):
    TYPE = "activity.nurture_requested.v1"

    reopen_on: date
    reason: NonEmptyStr


class DemoHeld(Activity):
    TYPE = "activity.demo_held.v1"

    attendees: list[str] = Field(default=[], max_length=MAX_INPUT_ITEMS)
    feedback: str | None = None


class DemoScheduled(Activity):
    TYPE = "activity.demo_scheduled.v1"

    scheduled_for: AwareDatetime
    attendees: list[str] = Field(default=[], max_length=MAX_INPUT_ITEMS)


class DemoNoShow(Activity):
    TYPE = "activity.demo_no_show.v1"


class QuotePrepared(Activity):
    """A new quote version: lines and discounts; the service prices it and supersedes older versions."""

    TYPE = "activity.quote_prepared.v1"

    currency: CurrencyCode
    lines: list[QuoteLineRequest] = Field(min_length=1, max_length=MAX_INPUT_ITEMS)
    discount_percent: int = Field(default=0, ge=0, le=100)


class DiscountApproved(Activity):
    TYPE = "activity.discount_approved.v1"

    quote_version: int = Field(ge=1)
    approver: NonEmptyStr


class ProposalSent(Activity):
    """A quote version goes to the customer. With `lines` instead of a version, it is prepared and sent."""

    TYPE = "activity.proposal_sent.v1"

    quote_version: int | None = Field(default=None, ge=1)
    currency: CurrencyCode | None = None
    lines: list[QuoteLineRequest] = Field(default=[], max_length=MAX_INPUT_ITEMS)
    discount_percent: int = Field(default=0, ge=0, le=100)


class ProposalAccepted(Activity):
    TYPE = "activity.proposal_accepted.v1"

    quote_version: int | None = Field(default=None, ge=1, description="default: the version last sent")


class ObjectionRaised(Activity):
    TYPE = "activity.objection_raised.v1"

    objection_id: Identifier
    category: Literal["price", "features", "timing", "competitor", "authority", "other"]
    notes: str | None = None


class ObjectionResolved(Activity):
    TYPE = "activity.objection_resolved.v1"

    objection_id: Identifier
    resolution: str | None = None


class ContractSigned(Activity):
    TYPE = "activity.contract_signed.v1"

    signed_by: str | None = None


class PaymentReceived(Activity):
    TYPE = "activity.payment_received.v1"

    amount: Money


class DealLostReported(Activity):
    TYPE = "activity.deal_lost_reported.v1"

    reason_code: NonEmptyStr
    competitor: str | None = None
    notes: str | None = None


class StageMoveRequested(Activity):
    """A rep asks to move the deal to a later stage of its pipeline. Refused with activity.rejected
    (exit_criteria_unmet, naming the criteria that do not hold) unless every stage it leaves lets it go."""

    TYPE = "activity.stage_move_requested.v1"

    to_stage: Identifier = Field(description="a stage id of the deal's pipeline in the playbook")
    reason: str | None = None


class OnboardingTaskCompleted(Activity):
    TYPE = "activity.onboarding_task_completed.v1"

    task: NonEmptyStr


class OnboardingTaskSkipped(Activity):
    TYPE = "activity.onboarding_task_skipped.v1"

    task: NonEmptyStr
    reason: NonEmptyStr


class OnboardingTaskRescheduled(Activity):
    TYPE = "activity.onboarding_task_rescheduled.v1"

    task: NonEmptyStr
    due_at: AwareDatetime


class UsageReported(Activity):
    """A usage or seat signal from the product, for expansion rules."""

    TYPE = "activity.usage_reported.v1"

    seats_used: int = Field(ge=0, le=10_000_000)
    seats_purchased: int = Field(ge=1, le=10_000_000)


# --- rep actions at any stage: activities, owner changes, overdue next steps ------------------------


class ActivityLogged(Activity):
    """A rep's activity on a deal at any stage: a call, email, meeting, note or task, what came of it, and
    optionally the next step it sets. The stage that has the deal applies it: in qualification a call or an
    email counts as a touch of the cadence (outcome replied or meeting_booked as a reply); a carried
    `next_step` replaces the deal's next step."""

    TYPE = "activity.logged.v1"

    kind: Literal["call", "email", "meeting", "note", "task"]
    outcome: str | None = Field(
        default=None, max_length=200, description="what came of it, e.g. no_answer, replied, meeting_booked"
    )
    next_step: NextStep | None = Field(default=None, description="replaces the deal's next step")


class OwnerChangeRequested(Activity):
    """A rep or manager asks to give the deal to another owner (or a rep claims a lead waiting in the
    `unassigned:<team>` queue). Refused with activity.rejected (unknown_owner) for an owner who is not a
    rep of the playbook's teams; answered with deal.owner_changed by the stage that has the deal."""

    TYPE = "activity.owner_change_requested.v1"

    new_owner: NonEmptyStr = Field(description="a rep of the playbook's teams")
    reason: str | None = None


class DealOwnerChanged(Event):
    """The deal has a new owner: every later event of every stage names them, the forecast counts the deal
    for them."""

    TYPE = "deal.owner_changed.v1"
    TOPIC = Topic.DEALS
    BUSINESS_TIME = "changed_at"

    deal_id: Identifier
    previous_owner: str
    owner: str
    changed_at: AwareDatetime = Field(description="when the request happened (its `occurred_at`)")
    actor: str | None = Field(default=None, description="who asked for it")


class NextStepOverdue(Event):
    """The deal's next step fell due with no newer one scheduled: raised once per next step, at any stage."""

    TYPE = "deal.next_step_overdue.v1"
    TOPIC = Topic.DEALS
    BUSINESS_TIME = "due_at"

    deal_id: Identifier
    owner: str | None = None
    stage: str = Field(description="the stage the deal is in, as the playbook names it")
    next_step: NextStep
    due_at: AwareDatetime = Field(description="the next step's due time")
    from_history: bool = Field(
        default=False,
        description="it fell due before the deal was imported (before the import's as_of): a record of "
        "the past, late, that pages nobody",
    )


class NextStepMissing(Event):
    """An open deal entered a stage that sets no next step (one the playbook no longer has): raised once
    per stage entry, until an activity.logged with a `next_step` gives it one."""

    TYPE = "deal.next_step_missing.v1"
    TOPIC = Topic.DEALS
    BUSINESS_TIME = "detected_at"

    deal_id: Identifier
    owner: str | None = None
    stage: str
    detected_at: AwareDatetime = Field(description="when the deal entered the stage")


class DealNextStepSet(Event):
    """A rep's activity or a demo rule of the playbook's `next_step_on` gave the open deal a new next step
    (a stage entered sets its own, carried on deal.stage_changed)."""

    TYPE = "deal.next_step_set.v1"
    TOPIC = Topic.DEALS
    BUSINESS_TIME = "set_at"

    deal_id: Identifier
    stage: str
    next_step: NextStep
    source: str = Field(description="activity.logged, demo_scheduled or demo_no_show")
    set_at: AwareDatetime = Field(description="when the activity that set it happened")


class DealReopenRequested(Activity):
    """A rep reopens a lost deal into a stage of its pipeline, in a new cycle that keeps its history.
    Refused with activity.rejected: deal_not_lost (open or won), unknown_stage (not a stage of its
    pipeline)."""

    TYPE = "activity.deal_reopen_requested.v1"

    to_stage: Identifier = Field(description="a proposal stage id of the deal's pipeline")
    reason: str | None = None


class DealReopened(Event):
    """A lost deal is open again, in its next cycle; a deal.stage_changed (from lost) follows."""

    TYPE = "deal.reopened.v1"
    TOPIC = Topic.DEALS
    BUSINESS_TIME = "reopened_at"

    deal_id: Identifier
    stage: str = Field(description="the stage it re-enters")
    cycle: int = Field(ge=2, description="1 is the deal's first cycle; each reopening starts the next")
    owner: str | None = None
    actor: str | None = None
    reason: str | None = None
    reopened_at: AwareDatetime = Field(description="when the request happened (its `occurred_at`)")


class DealCorrectionReported(Activity):
    """A rep corrects an open deal's amount or expected close date (at least one). Refused with
    activity.rejected: nothing_to_correct (neither given, or both as they are), currency_mismatch (an
    amount in another currency than an accepted quote's), deal_closed."""

    TYPE = "activity.deal_corrected.v1"

    amount: Money | None = None
    expected_close_date: date | None = None
    reason: str | None = None


class DealCorrected(Event):
    """An open deal's amount or expected close date was corrected: the previous and the new values of what
    changed (a field not corrected is none in both)."""

    TYPE = "deal.corrected.v1"
    TOPIC = Topic.DEALS
    BUSINESS_TIME = "corrected_at"

    deal_id: Identifier
    previous_amount: Money | None = None
    amount: Money | None = None
    previous_expected_close_date: date | None = None
    expected_close_date: date | None = None
    actor: str | None = None
    reason: str | None = None
    corrected_at: AwareDatetime = Field(description="when the correction happened (its `occurred_at`)")


# --- prospecting ---------------------------------------------------------------------------------


class FitTier(StrEnum):
    A = "A"
    B = "B"
    C = "C"


class ProspectIdentified(Event):
    """A lead that fits became a prospect; its CloudEvents `time` is when the lead was captured."""

    TYPE = "prospect.identified.v1"
    TOPIC = Topic.PROSPECTS

    deal_id: Identifier
    lead_id: Identifier
    contact: Contact
    company: Company
    source: str
    marketing_consent: bool
    fit_score: int = Field(ge=0, le=100)
    tier: FitTier
    fit_explanation: list[CriterionResult] = []
    owner: str
    next_step: NextStep
    previous_deal_id: Identifier | None = Field(
        default=None,
        description="the earlier deal this lead matched (same person or account), when the prospecting "
        "playbook's `deduplication` policy opens a new deal instead: by default for a lead that matches "
        "only closed deals (won, lost or disqualified)",
    )


class LeadMerged(Event):
    """A lead matched an existing open deal and was merged into it (`relation` says how): the same
    person again (a duplicate), or another person at the same account (same company domain or name),
    who joins the deal's buying committee. Which happens is the prospecting playbook's `deduplication`
    policy; a lead that matches only closed deals opens a new deal by default (prospect.identified with
    `previous_deal_id`)."""

    TYPE = "lead.merged.v1"
    TOPIC = Topic.PROSPECTS

    deal_id: Identifier = Field(description="the existing prospect the lead was merged into")
    lead_id: Identifier = Field(description="the lead that was merged")
    matched_on: Literal["email", "domain", "company_name"]
    merged_fields: dict[FieldName, str] = Field(description="what the merged lead adds or changes")
    merged_leads: list[str] = Field(
        max_length=1000,
        description="the most recent leads merged into this prospect (the playbook's `limits.merged_leads`,"
        " default 100), oldest first",
    )
    relation: Literal["duplicate", "buying_committee"] = Field(
        default="duplicate",
        description="duplicate: the same person again, what their lead adds is merged into the deal; "
        "buying_committee: another person at the account, who joins the open deal (`contact`)",
    )
    contact: Contact | None = Field(
        default=None, description="the person who joins the buying committee (relation buying_committee)"
    )


class LeadRejected(Event):
    """A lead that cannot become a prospect, with every reason (e.g. invalid_email, not_a_fit, or
    occurred_in_future / occurred_too_long_ago for an implausible `captured_at`)."""

    TYPE = "lead.rejected.v1"
    TOPIC = Topic.PROSPECTS
    KEY_FIELD = "lead_id"

    lead_id: Identifier
    reasons: list[Reason] = Field(min_length=1)


# --- qualification -------------------------------------------------------------------------------


class LeadQualified(Event):
    """A deal is opened: the prospect meets the qualification framework's exit criteria."""

    TYPE = "lead.qualified.v1"
    TOPIC = Topic.QUALIFICATIONS
    BUSINESS_TIME = "qualified_at"

    deal_id: Identifier
    owner: str
    contact: Contact
    company: Company
    framework: str
    needs: Needs
    amount: Money
    expected_close_date: date | None = None
    qualified_at: AwareDatetime = Field(
        description="When the discovery call that qualified it happened (its `occurred_at`), or the "
        "qualification SLA's due time for one decided at the SLA; not when it was processed; never "
        "before the qualification opened"
    )
    expansion_of: str | None = Field(default=None, description="the original deal, for an expansion deal")
    deal_type: str | None = Field(
        default=None,
        description="e.g. renewal; with the lead source it chooses the deal's pipeline (playbook "
        "pipeline_for); an expansion deal (expansion_of) is of type expansion",
    )
    lead_source: str | None = Field(default=None, description="the lead's source, when known")


class NextStepScheduled(Event):
    """The rep's next step on a lead changed: what to do and by when."""

    TYPE = "qualification.next_step_scheduled.v1"
    TOPIC = Topic.QUALIFICATIONS

    deal_id: Identifier
    owner: str
    next_step: NextStep
    touches_done: int = Field(ge=0)
    touches_planned: int = Field(ge=0)


class SlaBreached(Event):
    """An SLA was missed; its business time is the moment it fell due."""

    TYPE = "qualification.sla_breached.v1"
    TOPIC = Topic.QUALIFICATIONS
    BUSINESS_TIME = "due_at"

    deal_id: Identifier
    owner: str
    sla: Literal["first_touch_overdue", "qualification_overdue", "unassigned_unclaimed"] = Field(
        description="unassigned_unclaimed: a lead routed to the `unassigned:<team>` queue was not claimed "
        "within the qualification playbook's `unassigned_claim_hours`"
    )
    due_at: AwareDatetime
    from_history: bool = Field(
        default=False,
        description="it fell due before the deal was imported (before the import's as_of): a record of "
        "the past, late, that pages nobody",
    )


class LeadNurtured(Event):
    TYPE = "lead.nurtured.v1"
    TOPIC = Topic.QUALIFICATIONS

    deal_id: Identifier
    reason: str
    reopen_on: date


class QualificationReopened(Event):
    TYPE = "qualification.reopened.v1"
    TOPIC = Topic.QUALIFICATIONS
    BUSINESS_TIME = "reopened_at"

    deal_id: Identifier
    owner: str
    reopened_at: AwareDatetime = Field(description="the nurture's end (its `reopen_on`, 00:00 UTC)")


class ExpansionDealOpened(Event):
    """Qualification opened an expansion deal for an existing customer, linked to the original deal."""

    TYPE = "deal.expansion_opened.v1"
    TOPIC = Topic.QUALIFICATIONS

    deal_id: Identifier
    original_deal_id: Identifier
    customer: Company
    owner: str
    product: str
    reason: str


class LeadDisqualified(Event):
    TYPE = "lead.disqualified.v1"
    TOPIC = Topic.QUALIFICATIONS
    BUSINESS_TIME = "disqualified_at"

    deal_id: Identifier
    reason_code: NonEmptyStr
    detail: str | None = None
    disqualified_at: AwareDatetime = Field(
        description="When the discovery call that disqualified it happened, the cadence's end for "
        "no_response, or the qualification SLA's due time for one decided at the SLA; not when it was "
        "processed"
    )


# --- history brought from another CRM --------------------------------------------------------------


class ImportedStage(Inbound):
    stage: NonEmptyStr = Field(description="a stage id of the playbook")
    entered_at: AwareDatetime


class OpportunityHistory(Inbound):
    """What an export of another CRM tells about one opportunity, as `dealflow import opportunities`
    reads it through its mapping: who, what, which stage, and when, all in business time."""

    deal_id: Identifier = Field(description="from source and source_id: the same row always maps here")
    source: Identifier = Field(description="the system it came from, e.g. salesforce or hubspot")
    source_id: NonEmptyStr = Field(description="the opportunity's id in that system")
    owner: NonEmptyStr
    team: str | None = None
    manager: str | None = None
    region: str | None = None
    company: Company = Company()
    product: str | None = Field(default=None, description="a product of the price list, when it matched one")
    lead_source: str | None = None
    pipeline: NonEmptyStr = Field(description="a pipeline id of the playbook")
    stage: NonEmptyStr = Field(description="a stage id of the pipeline, or won or lost")
    stage_history: list[ImportedStage] = Field(
        default=[],
        max_length=MAX_INPUT_ITEMS,
        description="the stages it is known to have entered, oldest first; the last is its stage at "
        "closing (or now, while open)",
    )
    created_at: AwareDatetime = Field(description="when the opportunity was created")
    engaged_at: AwareDatetime | None = Field(
        default=None, description="when the buyer first engaged (e.g. the first meeting), when known"
    )
    closed_at: AwareDatetime | None = Field(default=None, description="when it was won or lost")
    expected_close_date: date | None = None
    amount: Money | None = Field(default=None, description="none: the export had no usable amount")
    loss_reason: str | None = None
    as_of: AwareDatetime = Field(
        description="the moment the history is known up to (the import's --as-of, else when it ran); "
        "its business time. A deadline of the deal that fell due before it is recorded as history, late, "
        "and pages nobody"
    )


class OpportunityImported(Event, OpportunityHistory):
    """One opportunity of a CRM export, published by `dealflow import opportunities`. The stage service
    that owns its stage takes it (qualification for qualification's stages, proposal for the others and
    for closed ones) and answers deal.imported.v1, or activity.rejected.v1 naming what it cannot use. The
    same row imported again has the same event id and changes nothing."""

    TYPE = "opportunity.imported.v1"
    TOPIC = Topic.IMPORTS
    BUSINESS_TIME = "as_of"


class DealImported(Event, OpportunityHistory):
    """A deal brought in with its history, as the stage service that now owns it recorded it. On
    deals.v1, not deals.won.v1: an imported win is history, nothing to bill or provision; a deal still
    open goes on like any other, and its later win is a deal.won.v1."""

    TYPE = "deal.imported.v1"
    TOPIC = Topic.DEALS
    BUSINESS_TIME = "as_of"

    stage_service: str = Field(description="qualification or proposal")
    next_step: NextStep | None = Field(default=None, description="an open deal's next step in its stage")


# --- proposal and closing ------------------------------------------------------------------------


class DealStageChanged(Event):
    TYPE = "deal.stage_changed.v1"
    TOPIC = Topic.DEALS
    BUSINESS_TIME = "changed_at"

    deal_id: Identifier
    previous_stage: str | None = Field(default=None, description="none for the first stage")
    stage: str
    probability: float = Field(ge=0, le=1, description="win probability of the new stage")
    next_step: NextStep | None = Field(
        default=None,
        description="the new stage's next step (the playbook's, due after its days from changed_at); "
        "none for won and lost",
    )
    changed_at: AwareDatetime = Field(
        description="Business time: when the activity that moved the deal happened (a demo held, a "
        "quote sent), or the qualification for the first stage; never before the deal entered its "
        "previous stage. Services before contract 1.1.0 set it to the moment they processed that "
        "activity."
    )


class QuoteIssued(Event):
    """A quote version was prepared (and, if its discount needs one, waits for approval) or sent."""

    TYPE = "quote.issued.v1"
    TOPIC = Topic.DEALS

    deal_id: Identifier
    quote: Quote
    status: Literal["needs_approval", "approved", "sent"]
    expires_at: AwareDatetime | None = None


class QuoteExpired(Event):
    TYPE = "quote.expired.v1"
    TOPIC = Topic.DEALS
    BUSINESS_TIME = "expired_at"

    deal_id: Identifier
    quote_version: int
    expired_at: AwareDatetime = Field(description="the quote's expiry: its `expires_at`")


class DealLost(Event):
    TYPE = "deal.lost.v1"
    TOPIC = Topic.DEALS
    BUSINESS_TIME = "lost_at"

    deal_id: Identifier
    stage: str
    reason_code: NonEmptyStr
    competitor: str | None = None
    lost_at: AwareDatetime = Field(description="when the loss reported happened (its `occurred_at`)")


class DealWon(Event):
    """The deal is closed and won: what billing, provisioning and data teams build on."""

    TYPE = "deal.won.v1"
    TOPIC = Topic.DEALS_WON
    BUSINESS_TIME = "won_at"

    deal_id: Identifier
    customer: Company
    contact: Contact
    owner: str
    quote_version: int | None = Field(default=None, description="the accepted quote version")
    lines: list[QuoteLine]
    amount: Money
    won_at: AwareDatetime = Field(
        description="Business time: when the activity that completed the closing steps happened (e.g. "
        "the payment received); never before the deal entered closing. Services before contract 1.1.0 "
        "set it to the moment they processed it."
    )
    stage_history: list[StageVisit]


# --- onboarding ----------------------------------------------------------------------------------


class OnboardingStarted(Event):
    TYPE = "onboarding.started.v1"
    TOPIC = Topic.ONBOARDINGS
    BUSINESS_TIME = "started_at"

    deal_id: Identifier
    customer: Company
    owner: str
    template: str | None = None
    plan: list[OnboardingTask]
    started_at: AwareDatetime = Field(description="the deal's `won_at`: onboarding starts when it is won")


class OnboardingAtRisk(Event):
    """A task is overdue: raised once per task."""

    TYPE = "onboarding.at_risk.v1"
    TOPIC = Topic.ONBOARDINGS
    BUSINESS_TIME = "due_at"

    deal_id: Identifier
    task: str
    owner_role: str
    due_at: AwareDatetime


class OnboardingCompleted(Event):
    TYPE = "onboarding.completed.v1"
    TOPIC = Topic.ONBOARDINGS
    BUSINESS_TIME = "completed_at"

    deal_id: Identifier
    completed_at: AwareDatetime = Field(
        description="when the activity that completed the last required task happened; never before "
        "the deal was won"
    )
    time_to_value_seconds: int = Field(ge=0, description="from won to go-live")
    on_time_ratio: float | None = Field(
        default=None, ge=0, le=1, description="tasks completed by their due date"
    )
    check_ins: list[CheckIn] = Field(default=[], description="follow-ups scheduled after go-live")


class CheckInDue(Event):
    TYPE = "onboarding.check_in_due.v1"
    TOPIC = Topic.ONBOARDINGS
    BUSINESS_TIME = "due_at"

    deal_id: Identifier
    check_in: str
    due_at: AwareDatetime
    owner: str


class UpsellIdentified(Event):
    """An expansion opportunity for an existing customer; qualification opens it as a new deal."""

    TYPE = "upsell.identified.v1"
    TOPIC = Topic.ONBOARDINGS
    KEY_FIELD = "expansion_deal_id"

    expansion_deal_id: Identifier
    original_deal_id: Identifier
    customer: Company
    contact: Contact
    owner: str
    product: str
    reason: str


# --- insights ------------------------------------------------------------------------------------


class DealStalled(Event):
    """An open deal made no progress in its stage for the playbook's number of days: raised once per stall.

    Progress (a stage change, a next step, a quote) ends the stall; if the deal stalls again, a new
    `deal.stalled` follows.
    """

    TYPE = "deal.stalled.v1"
    TOPIC = Topic.INSIGHTS
    BUSINESS_TIME = "detected_at"

    deal_id: Identifier
    owner: str | None = Field(description="the deal's owner, when a stage has named one")
    stage: str
    stalled_since: AwareDatetime = Field(description="the deal's last progress")
    days_without_progress: int = Field(ge=0)
    next_step: NextStep | None = Field(default=None, description="the last next step scheduled, if any")
    detected_at: AwareDatetime = Field(
        description="when the stall began: the last progress plus the stage's stall days (business "
        "time), not when insights noticed it"
    )
    from_history: bool = Field(
        default=False,
        description="it began before the deal was imported (before the import's as_of): a record of the "
        "past, late, that pages nobody",
    )


# --- time ----------------------------------------------------------------------------------------


class DeadlineReached(Event):
    """A stage's own deadline came due. Published by the stage service to itself, keyed by the deal, so
    the consumer that owns the deal applies it: each deadline fires once, whatever the replicas. The
    processing clock decides that it is due; what it causes is dated at its `due_at`, not when it was
    announced."""

    TYPE = "deadline.reached.v1"
    TOPIC = Topic.DEADLINES
    BUSINESS_TIME = "due_at"

    deal_id: Identifier
    stage_service: str
    deadline_id: str
    due_at: AwareDatetime


# --- rule breaks ---------------------------------------------------------------------------------


class ActivityRejected(Event):
    """An activity broke the stage's rules; the deal's state is unchanged. Besides each stage's own
    rules (e.g. deal_closed, unknown_product), any stage refuses an activity dated implausibly by its
    processing clock: occurred_in_future (beyond the playbook's clock skew allowance) or
    occurred_too_long_ago (beyond its maximum age)."""

    TYPE = "activity.rejected.v1"
    TOPIC = Topic.ACTIVITIES_REJECTED

    deal_id: Identifier
    activity_type: str
    activity_event_id: str
    stage_service: str
    reason: Reason


# --- personal data -------------------------------------------------------------------------------


class ErasureRequested(Event):
    """A person asked to be forgotten (GDPR art. 17). Every service that holds data about them
    anonymises it and confirms with `personal_data.erased`; keyed by the request."""

    TYPE = "personal_data.erasure_requested.v1"
    TOPIC = Topic.PRIVACY
    KEY_FIELD = "request_id"

    request_id: Identifier
    email: str = Field(min_length=3, max_length=320, description="Whose data to erase.")
    requested_by: str | None = Field(default=None, description="Who filed the request, for the audit trail.")


class PersonalDataErased(Event):
    """One service's confirmation that it anonymised everything it held about the request's person."""

    TYPE = "personal_data.erased.v1"
    TOPIC = Topic.PRIVACY
    KEY_FIELD = "request_id"

    request_id: Identifier
    service: str
    records_anonymised: int = Field(ge=0, description="Deals and other records that held their data.")
    erased_at: AwareDatetime
