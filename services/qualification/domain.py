"""Qualification rules: work the lead through its contact cadence, then vet it with a framework.

A prospect opens a qualification with a cadence chosen by its fit tier. Touches advance the cadence and
move the next step; a reply turns the next step into the discovery call. The discovery call's answers
decide: qualified (a deal is opened), disqualified (with a reason code) or nurtured (reopened on a date).
Time decides too, through deadlines the service fires once each: first touch overdue, cadence exhausted
without a reply (disqualified: no_response), qualification overdue, and the end of a nurture.

Every time is business time: a lead is qualified or disqualified when the discovery call happened (never
before its qualification opened), a deadline's outcome is dated at its due time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from pydantic import BaseModel

from contracts import Event
from contracts.events import (
    Company,
    Contact,
    DeadlineReached,
    DiscoveryCallLogged,
    ExpansionDealOpened,
    LeadDisqualified,
    LeadNurtured,
    LeadQualified,
    NextStep,
    NextStepScheduled,
    NurtureRequested,
    ProspectIdentified,
    QualificationReopened,
    SlaBreached,
    TouchLogged,
    UpsellIdentified,
)
from services.qualification.config import QualificationPlaybook
from shared.domain import Deadline, Decision, RuleBroken, not_before, pending_by_id

# Deadline kinds; each deadline's key is the qualification cycle it belongs to.
FIRST_TOUCH_OVERDUE = "first_touch_overdue"
CADENCE_END = "cadence_end"
QUALIFICATION_OVERDUE = "qualification_overdue"
REOPEN = "reopen"
REPLIES = frozenset({"replied", "meeting_booked"})


class Status(StrEnum):
    OPEN = "open"
    QUALIFIED = "qualified"
    DISQUALIFIED = "disqualified"
    NURTURE = "nurture"


class Qualification(BaseModel):
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
    breached: list[str] = []
    reopen_on: date | None = None
    expansion_of: str | None = None  # the original deal, when this is an expansion deal


def deadlines(state: Qualification, playbook: QualificationPlaybook) -> list[Deadline]:
    """What is pending in time for this lead, each keyed by its cycle (a reopened lead starts afresh)."""
    cycle = str(state.cycle)
    pending: list[Deadline] = []
    if state.status is Status.OPEN:
        if state.touches_done == 0 and FIRST_TOUCH_OVERDUE not in state.breached:
            pending.append(Deadline(FIRST_TOUCH_OVERDUE, cycle, state.first_touch_due))
        if not state.replied:
            pending.append(Deadline(CADENCE_END, cycle, state.opened_at + timedelta(days=state.cadence_days)))
        if QUALIFICATION_OVERDUE not in state.breached:
            due = state.opened_at + timedelta(days=playbook.qualification_max_days)
            pending.append(Deadline(QUALIFICATION_OVERDUE, cycle, due))
    if state.status is Status.NURTURE and state.reopen_on is not None:
        pending.append(Deadline(REOPEN, cycle, datetime.combine(state.reopen_on, time(), tzinfo=UTC)))
    return pending


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


def on_touch_logged(
    state: Qualification, touch: TouchLogged, now: datetime, playbook: QualificationPlaybook
) -> Decision[Qualification]:
    _require_open(state)
    touched = state.model_copy(
        update={"touches_done": state.touches_done + 1, "replied": state.replied or touch.outcome in REPLIES}
    )
    if touched.replied:
        due = touch.meeting_at or touch.occurred_at + timedelta(days=playbook.discovery_call_within_days)
        step = NextStep(action="discovery_call", due_at=due)
    elif touched.touches_done < touched.touches_planned:
        step = NextStep(
            action=f"touch_{touched.touches_done + 1}", due_at=_touch_due(touched, touched.touches_done + 1)
        )
    else:
        step = NextStep(action="await_reply", due_at=touched.opened_at + timedelta(days=touched.cadence_days))
    return _with_next_step(touched, step)


def on_discovery_call_logged(
    state: Qualification, call: DiscoveryCallLogged, now: datetime, playbook: QualificationPlaybook
) -> Decision[Qualification]:
    _require_open(state)
    criteria = playbook.frameworks.get(call.framework)
    if criteria is None:
        raise RuleBroken("unknown_framework", f"no framework {call.framework!r} in the playbook", "framework")
    unknown = sorted(set(call.answers) - set(criteria))
    if unknown:
        raise RuleBroken(
            "unknown_framework_field",
            f"{call.framework} has no criterion {unknown[0]!r}",
            f"answers.{unknown[0]}",
        )
    for name in call.answers:
        allowed = criteria[name].answered_by
        if allowed is not None and call.actor_role is not None and call.actor_role not in allowed:
            raise RuleBroken(
                "answer_not_allowed", f"a {call.actor_role} may not answer {name!r}", f"answers.{name}"
            )
    unmet = [
        name
        for name, criterion in criteria.items()
        if criterion.required and call.answers.get(name) not in criterion.met_when
    ]
    closed = state.model_copy(update={"next_step": None})
    if unmet and call.nurture_until is not None:
        reason = f"not yet: {', '.join(unmet)}"
        return _nurtured(closed, reason, call.nurture_until)
    if unmet:
        disqualified = LeadDisqualified(
            deal_id=state.deal_id,
            reason_code=f"{call.framework.lower()}_{unmet[0]}_not_met",
            detail=f"not confirmed: {', '.join(unmet)}",
            disqualified_at=not_before(now, state.opened_at),
        )
        return Decision(closed.model_copy(update={"status": Status.DISQUALIFIED}), [disqualified])
    if call.estimated_amount is None:
        raise RuleBroken(
            "missing_estimated_amount", "a qualified deal needs an estimated amount", "estimated_amount"
        )
    qualified = LeadQualified(
        deal_id=state.deal_id,
        owner=state.owner,
        contact=state.contact,
        company=state.company,
        framework=call.framework,
        needs=call.needs,
        amount=call.estimated_amount,
        expected_close_date=call.expected_close_date,
        qualified_at=not_before(now, state.opened_at),
        expansion_of=state.expansion_of,
    )
    return Decision(closed.model_copy(update={"status": Status.QUALIFIED}), [qualified])


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
    if due.kind in (FIRST_TOUCH_OVERDUE, QUALIFICATION_OVERDUE):
        breached = SlaBreached(deal_id=state.deal_id, owner=state.owner, sla=due.kind, due_at=due.due_at)
        return Decision(state.model_copy(update={"breached": [*state.breached, due.kind]}), [breached])
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
