"""Qualification rules: work the lead through its contact cadence, then vet it with a framework.

A prospect opens a qualification with a cadence chosen by its fit tier. Touches advance the cadence and
move the next step; a reply turns the next step into the discovery call. Discovery calls gather the
framework's answers: each call adds or overrides answers (the state keeps the merged answers, with who
gave each and when), and an answer from a role the criterion does not accept is refused, also when the
call names no role. A call names its framework, else the qualification's, else the playbook's
`default_framework`. The qualification decides (qualified: a deal is opened; disqualified, with a reason
code; or nurtured, reopened on a date) only on a call's explicit `outcome`, on a complete set of answers
when the playbook's `decision.without_outcome` allows it, or at the qualification SLA (per
`decision.at_sla`): a call with partial answers never disqualifies by itself.
Time decides too, through deadlines the service fires once each: first touch overdue, cadence exhausted
without a reply (disqualified: no_response), qualification overdue, and the end of a nurture.

Reps act on a lead at any moment: a generic activity (activity.logged: a call or an email counts as a
touch of the cadence; a carried next step replaces the lead's), and an owner change (a lead waiting in the
`unassigned:<team>` queue, where prospecting routes it when no rep has room, is claimed that way). An open
lead always has a next step; when it falls due with no newer one, deal.next_step_overdue is raised once,
and a queued lead nobody claims within `unassigned_claim_hours` breaches its SLA once.

Every time is business time: a lead is qualified or disqualified when the discovery call happened (never
before its qualification opened), a deadline's outcome is dated at its due time.

A lead may also come from another CRM (opportunity.imported, a row in the qualification stage): it opens
as it was at the import's `as_of`, with no contact cadence (that happened there) and the discovery call
as its next step; deal.imported answers. An SLA or next step due by `as_of` is reported as history and
decides nothing. A row of a later stage is proposal's: here it only marks the deal as proposal's.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from contracts import Event
from contracts.events import (
    ActivityLogged,
    Company,
    Contact,
    DeadlineReached,
    DealImported,
    DealOwnerChanged,
    DiscoveryCallLogged,
    ExpansionDealOpened,
    LeadDisqualified,
    LeadNurtured,
    LeadQualified,
    Money,
    Needs,
    NextStep,
    NextStepOverdue,
    NextStepScheduled,
    NurtureRequested,
    OpportunityHistory,
    OpportunityImported,
    OwnerChangeRequested,
    ProspectIdentified,
    QualificationReopened,
    SlaBreached,
    TouchLogged,
    UpsellIdentified,
)
from services.qualification.config import Criterion, QualificationPlaybook
from shared.domain import Deadline, Decision, RuleBroken, not_before, pending_by_id
from shared.imported import (
    CLOSED_STAGES,
    UNKNOWN_CONTACT,
    ImportMarks,
    check_history,
    entered_current_stage,
    import_marks,
    replaces_import,
)

# Deadline kinds; each deadline's key is the qualification cycle it belongs to.
FIRST_TOUCH_OVERDUE = "first_touch_overdue"
CADENCE_END = "cadence_end"
QUALIFICATION_OVERDUE = "qualification_overdue"
REOPEN = "reopen"
NEXT_STEP_OVERDUE = "next_step_overdue"
UNASSIGNED_UNCLAIMED = "unassigned_unclaimed"
REPLIES = frozenset({"replied", "meeting_booked"})
# The kinds of activity.logged that count as a touch of the contact cadence.
TOUCH_KINDS = frozenset({"call", "email"})
# Prospecting's owner for a lead no rep had room for: the team's queue, `unassigned:<team>`.
UNASSIGNED_PREFIX = "unassigned:"


class Status(StrEnum):
    OPEN = "open"
    QUALIFIED = "qualified"
    DISQUALIFIED = "disqualified"
    NURTURE = "nurture"


class Answer(BaseModel):
    """One criterion's answer as last given: its value, who gave it and when."""

    value: bool | int | str
    answered_at: datetime
    actor: str | None = None
    actor_role: str | None = None
    activity_id: str | None = None


class Qualification(ImportMarks):
    deal_id: str
    owner: str
    contact: Contact
    company: Company
    tier: str
    status: Status
    cycle: int = 1  # a nurtured lead that reopens starts a new cycle, with new deadlines
    opened_at: datetime
    first_touch_due: datetime
    touches_done: int = 0
    touches_planned: int
    cadence_days: int
    replied: bool = False
    next_step: NextStep | None
    overdue_step: NextStep | None = None  # the next step deal.next_step_overdue was raised for, once
    breached: list[str] = []
    reopen_on: date | None = None
    expansion_of: str | None = None  # the original deal, when this is an expansion deal
    lead_source: str | None = None  # the lead's source: the playbook may choose a pipeline by it
    framework: str | None = None  # set by the first discovery call
    answers: dict[str, Answer] = {}  # merged over the discovery calls, by criterion
    needs: Needs = Needs()
    estimated_amount: Money | None = None
    expected_close_date: date | None = None
    follows_cadence: bool = Field(
        default=True,
        description="False: an imported lead, whose contact cadence happened in the other CRM: no "
        "first-touch SLA, no no_response at the cadence's end (until a nurture reopens it afresh)",
    )


def deadlines(state: Qualification, playbook: QualificationPlaybook) -> list[Deadline]:
    """What is pending in time for this lead, each keyed by its cycle (a reopened lead starts afresh)."""
    cycle = str(state.cycle)
    pending: list[Deadline] = []
    if state.status is Status.OPEN:
        if state.follows_cadence and state.touches_done == 0 and FIRST_TOUCH_OVERDUE not in state.breached:
            pending.append(Deadline(FIRST_TOUCH_OVERDUE, cycle, state.first_touch_due))
        if not state.replied:
            pending.append(Deadline(CADENCE_END, cycle, state.opened_at + timedelta(days=state.cadence_days)))
        if QUALIFICATION_OVERDUE not in state.breached:
            due = state.opened_at + timedelta(days=playbook.qualification_max_days)
            pending.append(Deadline(QUALIFICATION_OVERDUE, cycle, due))
        if state.owner.startswith(UNASSIGNED_PREFIX) and UNASSIGNED_UNCLAIMED not in state.breached:
            due = state.opened_at + timedelta(hours=playbook.unassigned_claim_hours)
            pending.append(Deadline(UNASSIGNED_UNCLAIMED, cycle, due))
        step = state.next_step
        if step is not None and step != state.overdue_step and not _decided_by(state, step.due_at, playbook):
            pending.append(Deadline(NEXT_STEP_OVERDUE, cycle, step.due_at))
    if state.status is Status.NURTURE and state.reopen_on is not None:
        pending.append(Deadline(REOPEN, cycle, datetime.combine(state.reopen_on, time(), tzinfo=UTC)))
    return pending


def _decided_by(state: Qualification, moment: datetime, playbook: QualificationPlaybook) -> bool:
    """Whether a deadline closes the lead by `moment` anyway (the cadence's end without a reply, the
    qualification SLA when it decides): a next step due then is not reported overdue as well."""
    if not state.replied and moment >= state.opened_at + timedelta(days=state.cadence_days):
        return True
    sla = state.opened_at + timedelta(days=playbook.qualification_max_days)
    return playbook.decision.at_sla == "decide" and moment >= sla and not state.due_in_history(sla)


def on_prospect_identified(
    state: Qualification | None, prospect: ProspectIdentified, now: datetime, playbook: QualificationPlaybook
) -> Decision[Qualification]:
    if state is not None:
        return Decision(state)
    cadence = playbook.cadence_by_tier[prospect.tier.value]
    opened = Qualification(
        deal_id=prospect.deal_id,
        owner=prospect.owner,
        contact=prospect.contact,
        company=prospect.company,
        tier=prospect.tier.value,
        status=Status.OPEN,
        opened_at=now,
        first_touch_due=prospect.next_step.due_at,
        touches_planned=cadence.touches,
        cadence_days=cadence.days,
        next_step=NextStep(action="touch_1", due_at=prospect.next_step.due_at),
        lead_source=prospect.source,
    )
    return Decision(opened, [_next_step_event(opened)])


def on_upsell_identified(
    state: Qualification | None, upsell: UpsellIdentified, now: datetime, playbook: QualificationPlaybook
) -> Decision[Qualification]:
    """An existing customer's next deal: opened like a tier A prospect, linked to the original deal."""
    if state is not None:
        return Decision(state)
    cadence = playbook.cadence_by_tier["A"]
    first_touch = now + timedelta(days=1)
    opened = Qualification(
        deal_id=upsell.expansion_deal_id,
        owner=upsell.owner,
        contact=upsell.contact,
        company=upsell.customer,
        tier="A",
        status=Status.OPEN,
        opened_at=now,
        first_touch_due=first_touch,
        touches_planned=cadence.touches,
        cadence_days=cadence.days,
        next_step=NextStep(action="touch_1", due_at=first_touch),
        expansion_of=upsell.original_deal_id,
    )
    expansion = ExpansionDealOpened(
        deal_id=upsell.expansion_deal_id,
        original_deal_id=upsell.original_deal_id,
        customer=upsell.customer,
        owner=upsell.owner,
        product=upsell.product,
        reason=upsell.reason,
    )
    return Decision(opened, [expansion, _next_step_event(opened)])


def on_opportunity_imported(
    state: Qualification | None, row: OpportunityImported, now: datetime, playbook: QualificationPlaybook
) -> Decision[Any]:
    """An open deal of another CRM in the qualification stage opens here with its owner and company:
    deal.imported, its next step the discovery call. Its contact cadence happened in that CRM: none is
    scheduled. A row of proposal's (a later stage, or closed) only marks the deal as proposal's, as a
    qualified lead is, so a rep's activities on it are proposal's to answer; a row of an unknown pipeline
    or stage is proposal's to refuse. Neither changes anything here when no newer than the import."""
    stages = playbook.pipeline_stages.get(row.pipeline)
    if stages is None:
        return Decision(state)
    if row.stage != playbook.stage:
        if row.stage in stages or row.stage in CLOSED_STAGES:
            return _handed_over(state, row, stages)
        return Decision(state)
    if state is not None and not replaces_import(
        state.imported_as_of, state.imported_digest, state.touched_since_import, row
    ):
        return Decision(state)
    check_history(row, stages)
    lead = _imported_lead(row, state, playbook)
    history = row.model_dump(include=set(OpportunityHistory.model_fields))
    imported = DealImported(**history, stage_service="qualification", next_step=lead.next_step)
    return Decision(lead, [imported])


def _imported_lead(
    row: OpportunityImported, previous: Qualification | None, playbook: QualificationPlaybook
) -> Qualification:
    """The open lead as the row leaves it, opened when it entered the qualification stage. The buyer is
    engaged (it is an opportunity already): the next step is the discovery call, and no cadence runs.
    SLAs the lead it replaces already breached, for the same opening, stay breached."""
    entered = entered_current_stage(row)
    step = NextStep(
        action="discovery_call", due_at=entered + timedelta(days=playbook.discovery_call_within_days)
    )
    same_opening = previous is not None and previous.opened_at == entered
    return Qualification(
        deal_id=row.deal_id,
        owner=row.owner,
        contact=UNKNOWN_CONTACT,
        company=row.company,
        tier="A",  # no fit score came with it; like an upsell, a deal someone works already
        status=Status.OPEN,
        opened_at=entered,
        first_touch_due=entered,
        touches_planned=0,
        cadence_days=0,
        replied=True,
        follows_cadence=False,
        next_step=step,
        overdue_step=None if previous is None else previous.overdue_step,
        breached=previous.breached if previous is not None and same_opening else [],
        lead_source=row.lead_source,
        estimated_amount=row.amount,
        expected_close_date=row.expected_close_date,
        **import_marks(row),
    )


def _handed_over(
    state: Qualification | None, row: OpportunityImported, stages: tuple[str, ...]
) -> Decision[Any]:
    """A row proposal takes: the deal is marked proposal's here (as a qualified lead is), unless this
    stage holds a lead of its own or one live activity touched, or the row is no newer, or proposal will
    refuse its history anyway."""
    if state is not None and (
        state.imported_as_of is None
        or state.touched_since_import
        or not replaces_import(state.imported_as_of, state.imported_digest, False, row)
    ):
        return Decision(state)
    try:
        check_history(row, stages)
    except RuleBroken:
        return Decision(state)  # proposal answers it with the rejection
    marked = Qualification(
        deal_id=row.deal_id,
        owner=row.owner,
        contact=UNKNOWN_CONTACT,
        company=row.company,
        tier="A",
        status=Status.QUALIFIED,
        opened_at=row.created_at,
        first_touch_due=row.created_at,
        touches_planned=0,
        cadence_days=0,
        replied=True,
        follows_cadence=False,
        next_step=None,
        lead_source=row.lead_source,
        **import_marks(row),
    )
    return Decision(marked)


def on_touch_logged(
    state: Qualification, touch: TouchLogged, now: datetime, playbook: QualificationPlaybook
) -> Decision[Qualification]:
    _require_open(state)
    touched, step = _touched(state, touch.outcome in REPLIES, touch.meeting_at, touch.occurred_at, playbook)
    return _with_next_step(touched, step)


def _touched(
    state: Qualification,
    reply: bool,
    meeting_at: datetime | None,
    occurred_at: datetime,
    playbook: QualificationPlaybook,
) -> tuple[Qualification, NextStep]:
    """The lead after one more touch of its cadence, and the next step the cadence gives it."""
    touched = state.model_copy(
        update={"touches_done": state.touches_done + 1, "replied": state.replied or reply}
    )
    if touched.replied:
        due = meeting_at or occurred_at + timedelta(days=playbook.discovery_call_within_days)
        step = NextStep(action="discovery_call", due_at=due)
    elif touched.touches_done < touched.touches_planned:
        step = NextStep(
            action=f"touch_{touched.touches_done + 1}", due_at=_touch_due(touched, touched.touches_done + 1)
        )
    else:
        step = NextStep(action="await_reply", due_at=touched.opened_at + timedelta(days=touched.cadence_days))
    return touched, step


def on_activity_logged(
    state: Qualification, activity: ActivityLogged, now: datetime, playbook: QualificationPlaybook
) -> Decision[Qualification]:
    """A rep's call, email, meeting, note or task. A call or an email is a touch of the cadence (replied or
    meeting_booked as a reply), which moves the next step as activity.touch_logged does; a carried next
    step replaces whatever the lead's next step is. A qualified lead's activities are proposal's."""
    if state.status is Status.QUALIFIED:
        return Decision(state)
    _require_open(state)
    step = state.next_step
    if activity.kind in TOUCH_KINDS:
        state, step = _touched(state, activity.outcome in REPLIES, None, now, playbook)
    if activity.next_step is not None:
        step = activity.next_step
    if step is None:  # not for an open lead, which always has one; kept for the type checker
        return Decision(state)
    return _with_next_step(state, step)


def on_owner_change_requested(
    state: Qualification, request: OwnerChangeRequested, now: datetime, playbook: QualificationPlaybook
) -> Decision[Qualification]:
    """Another owner for an open or nurtured lead, e.g. a rep claiming a lead of the `unassigned:<team>`
    queue: deal.owner_changed, and every later event names them. A qualified lead's owner is proposal's."""
    if state.status is Status.QUALIFIED:
        return Decision(state)
    if state.status is Status.DISQUALIFIED:
        raise RuleBroken("qualification_closed", f"the lead is {state.status.value}")
    if request.new_owner not in playbook.reps:
        raise RuleBroken(
            "unknown_owner", f"{request.new_owner!r} is no rep of the playbook's teams", "new_owner"
        )
    if request.new_owner == state.owner:
        return Decision(state)
    changed = DealOwnerChanged(
        deal_id=state.deal_id,
        previous_owner=state.owner,
        owner=request.new_owner,
        changed_at=not_before(now, state.opened_at),
        actor=request.actor,
    )
    return Decision(state.model_copy(update={"owner": request.new_owner}), [changed])


def on_discovery_call_logged(
    state: Qualification, call: DiscoveryCallLogged, now: datetime, playbook: QualificationPlaybook
) -> Decision[Qualification]:
    _require_open(state)
    framework = call.framework or state.framework or playbook.default_framework
    if state.framework is not None and framework != state.framework:
        raise RuleBroken(
            "framework_changed", f"this qualification uses {state.framework}, not {framework}", "framework"
        )
    criteria = playbook.frameworks.get(framework)
    if criteria is None:
        raise RuleBroken("unknown_framework", f"no framework {framework!r} in the playbook", "framework")
    unknown = sorted(set(call.answers) - set(criteria))
    if unknown:
        raise RuleBroken(
            "unknown_framework_field",
            f"{framework} has no criterion {unknown[0]!r}",
            f"answers.{unknown[0]}",
        )
    for name in call.answers:
        allowed = criteria[name].answered_by
        if allowed is not None and call.actor_role not in allowed:
            who = "a call with no actor_role" if call.actor_role is None else f"a {call.actor_role}"
            raise RuleBroken(
                "answer_not_allowed",
                f"{who} may not answer {name!r} (only {', '.join(sorted(allowed))})",
                f"answers.{name}",
            )
    gathered = _gathered(state, call, framework, now)
    unmet = _unmet(gathered, criteria)
    outcome = call.outcome or _outcome_without_one(gathered, criteria, unmet, playbook)
    closed = gathered.model_copy(update={"next_step": None})
    if outcome == "qualified":
        if unmet:
            raise RuleBroken(
                "criteria_not_met", f"not met by the answers so far: {', '.join(unmet)}", "outcome"
            )
        if gathered.estimated_amount is None:
            raise RuleBroken(
                "missing_estimated_amount", "a qualified deal needs an estimated amount", "estimated_amount"
            )
        return _qualified(closed, not_before(now, state.opened_at))
    if call.nurture_until is not None:
        return _nurtured(closed, f"not yet: {', '.join(unmet) or 'nothing unmet'}", call.nurture_until)
    if outcome == "disqualified":
        reason_code = f"{framework.lower()}_{unmet[0]}_not_met" if unmet else "disqualified_by_rep"
        detail = f"not confirmed: {', '.join(unmet)}" if unmet else "disqualified on the discovery call"
        return _disqualified(closed, reason_code, detail, not_before(now, state.opened_at))
    # continue: the answers are kept, nothing is decided; the next step is another call to complete them
    follow_up = NextStep(
        action="discovery_call", due_at=now + timedelta(days=playbook.discovery_call_within_days)
    )
    return _with_next_step(gathered, follow_up)


def _gathered(
    state: Qualification, call: DiscoveryCallLogged, framework: str, now: datetime
) -> Qualification:
    """The state with this call's answers merged in (each overriding an earlier answer to the same
    criterion) and the latest needs, amount and close date it gives."""
    answered = {
        name: Answer(
            value=value,
            answered_at=now,
            actor=call.actor,
            actor_role=call.actor_role,
            activity_id=call.activity_id,
        )
        for name, value in call.answers.items()
    }
    given = call.needs.model_dump(exclude_defaults=True)
    return state.model_copy(
        update={
            "framework": framework,
            "answers": state.answers | answered,
            "needs": state.needs.model_copy(update=given) if given else state.needs,
            "estimated_amount": call.estimated_amount or state.estimated_amount,
            "expected_close_date": call.expected_close_date or state.expected_close_date,
        }
    )


def _unmet(state: Qualification, criteria: dict[str, Criterion]) -> list[str]:
    """The required criteria the merged answers do not meet (unanswered, or answered otherwise)."""
    return [
        name
        for name, criterion in criteria.items()
        if criterion.required
        and (name not in state.answers or state.answers[name].value not in criterion.met_when)
    ]


def _outcome_without_one(
    state: Qualification, criteria: dict[str, Criterion], unmet: list[str], playbook: QualificationPlaybook
) -> str:
    """What a call with no explicit outcome decides: nothing, unless the playbook lets a complete set of
    answers (every required criterion answered) decide."""
    complete = all(name in state.answers for name, criterion in criteria.items() if criterion.required)
    if playbook.decision.without_outcome == "never" or not complete:
        return "continue"
    return "disqualified" if unmet else "qualified"


def _qualified(state: Qualification, at: datetime) -> Decision[Qualification]:
    assert state.framework is not None
    assert state.estimated_amount is not None
    qualified = LeadQualified(
        deal_id=state.deal_id,
        owner=state.owner,
        contact=state.contact,
        company=state.company,
        framework=state.framework,
        needs=state.needs,
        amount=state.estimated_amount,
        expected_close_date=state.expected_close_date,
        qualified_at=at,
        expansion_of=state.expansion_of,
        lead_source=state.lead_source,
    )
    return Decision(state.model_copy(update={"status": Status.QUALIFIED}), [qualified])


def _disqualified(
    state: Qualification, reason_code: str, detail: str, at: datetime
) -> Decision[Qualification]:
    disqualified = LeadDisqualified(
        deal_id=state.deal_id, reason_code=reason_code, detail=detail, disqualified_at=at
    )
    return Decision(state.model_copy(update={"status": Status.DISQUALIFIED}), [disqualified])


def _decided_at_sla(
    state: Qualification, due_at: datetime, playbook: QualificationPlaybook
) -> Decision[Qualification]:
    """The qualification SLA is reached: qualified on what was gathered if it meets every required
    criterion and an amount is known, else disqualified (qualification_overdue)."""
    framework = state.framework or playbook.default_framework
    closed = state.model_copy(update={"framework": framework, "next_step": None})
    unmet = _unmet(closed, playbook.frameworks[framework])
    if not unmet and closed.estimated_amount is not None:
        return _qualified(closed, due_at)
    detail = f"not confirmed: {', '.join(unmet)}" if unmet else "no estimated amount"
    return _disqualified(closed, QUALIFICATION_OVERDUE, f"{detail} by the qualification SLA", due_at)


def on_nurture_requested(
    state: Qualification, request: NurtureRequested, now: datetime, playbook: QualificationPlaybook
) -> Decision[Qualification]:
    _require_open(state)
    return _nurtured(state.model_copy(update={"next_step": None}), request.reason, request.reopen_on)


def on_deadline(
    state: Qualification, deadline: DeadlineReached, now: datetime, playbook: QualificationPlaybook
) -> Decision[Qualification]:
    due = _pending(state, deadline, playbook)
    if due is None:
        return Decision(state)  # dealt with already, or moved: each deadline fires once
    if due.kind == NEXT_STEP_OVERDUE and state.next_step is not None:
        overdue = NextStepOverdue(
            deal_id=state.deal_id,
            owner=state.owner,
            stage=playbook.stage,
            next_step=state.next_step,
            due_at=due.due_at,
            from_history=state.due_in_history(due.due_at),
        )
        return Decision(state.model_copy(update={"overdue_step": state.next_step}), [overdue])
    if due.kind in (FIRST_TOUCH_OVERDUE, QUALIFICATION_OVERDUE, UNASSIGNED_UNCLAIMED):
        from_history = state.due_in_history(due.due_at)
        breached = SlaBreached(
            deal_id=state.deal_id,
            owner=state.owner,
            sla=due.kind,
            due_at=due.due_at,
            from_history=from_history,
        )
        noted = state.model_copy(update={"breached": [*state.breached, due.kind]})
        # An SLA that fell due before the import did not decide the lead: the export has it still open.
        if due.kind == QUALIFICATION_OVERDUE and playbook.decision.at_sla == "decide" and not from_history:
            decided = _decided_at_sla(noted, due.due_at, playbook)
            return Decision(decided.state, [breached, *decided.events])
        return Decision(noted, [breached])
    if due.kind == CADENCE_END:
        disqualified = LeadDisqualified(
            deal_id=state.deal_id,
            reason_code="no_response",
            detail=f"no reply after {state.touches_done} of {state.touches_planned} touches",
            disqualified_at=now,
        )
        return Decision(
            state.model_copy(update={"status": Status.DISQUALIFIED, "next_step": None}), [disqualified]
        )
    # REOPEN: the nurture is over, the lead starts a new cycle with a fresh cadence.
    cadence = playbook.cadence_by_tier[state.tier]
    reopened = state.model_copy(
        update={
            "status": Status.OPEN,
            "cycle": state.cycle + 1,
            "opened_at": now,
            "first_touch_due": now + timedelta(days=1),
            "touches_done": 0,
            "touches_planned": cadence.touches,
            "cadence_days": cadence.days,
            "replied": False,
            "breached": [],
            "reopen_on": None,
            "next_step": NextStep(action="touch_1", due_at=now + timedelta(days=1)),
            "overdue_step": None,
            "follows_cadence": True,
        }
    )
    return Decision(
        reopened,
        [
            QualificationReopened(deal_id=state.deal_id, owner=state.owner, reopened_at=now),
            _next_step_event(reopened),
        ],
    )


def _pending(
    state: Qualification, reached: DeadlineReached, playbook: QualificationPlaybook
) -> Deadline | None:
    """The pending deadline an announcement names; None for one not (or no longer) pending."""
    try:
        named = Deadline.parse(reached.deadline_id)
    except ValueError:
        return None
    return pending_by_id(deadlines(state, playbook)).get(named.id)


def _nurtured(state: Qualification, reason: str, reopen_on: date) -> Decision[Qualification]:
    nurtured = state.model_copy(update={"status": Status.NURTURE, "reopen_on": reopen_on})
    return Decision(nurtured, [LeadNurtured(deal_id=state.deal_id, reason=reason, reopen_on=reopen_on)])


def _touch_due(state: Qualification, touch: int) -> datetime:
    spacing = timedelta(days=state.cadence_days) / state.touches_planned
    return state.first_touch_due + spacing * (touch - 1)


def _with_next_step(state: Qualification, step: NextStep) -> Decision[Qualification]:
    updated = state.model_copy(update={"next_step": step})
    events: list[Event] = [] if step == state.next_step else [_next_step_event(updated)]
    return Decision(updated, events)


def _next_step_event(state: Qualification) -> NextStepScheduled:
    assert state.next_step is not None
    return NextStepScheduled(
        deal_id=state.deal_id,
        owner=state.owner,
        next_step=state.next_step,
        touches_done=state.touches_done,
        touches_planned=state.touches_planned,
    )


def _require_open(state: Qualification) -> None:
    if state.status is not Status.OPEN:
        raise RuleBroken("qualification_closed", f"the lead is {state.status.value}")
