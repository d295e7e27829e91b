"""Onboarding rules: a plan from a template, tasks to go-live, check-ins, and the next deal.

A won deal gets the plan of the first template rule it matches. Tasks are completed, skipped (optional
ones only) or rescheduled; an overdue task raises `onboarding.at_risk` once. When every required task is
done the onboarding completes with its time to value (won to go-live) and on-time ratio, check-ins are
scheduled, and the expansion rules look for the next deal: products the customer lacks, seats it is
running out of. Each finding is an `upsell.identified` event that qualification opens as a new deal.

Every time is business time: the plan starts when the deal was won, a task is done when the activity says,
and go-live is never dated before the deal was won.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from contracts import Event
from contracts.events import (
    CheckIn,
    CheckInDue,
    Company,
    Contact,
    DeadlineReached,
    DealOwnerChanged,
    DealWon,
    OnboardingAtRisk,
    OnboardingCompleted,
    OnboardingStarted,
    OnboardingTask,
    OnboardingTaskCompleted,
    OnboardingTaskRescheduled,
    OnboardingTaskSkipped,
    UpsellIdentified,
    UsageReported,
)
from services.onboarding.config import OnboardingPlaybook
from shared.domain import Deadline, Decision, RuleBroken, not_before, pending_by_id

GO_LIVE = "go_live"
# Deadline kinds: an open task's due date (keyed by the task), a check-in after go-live (by its name).
TASK_DUE = "task_due"
CHECK_IN = "check_in"


class PlannedTask(BaseModel):
    task: str
    owner_role: str
    due_at: datetime
    required: bool
    completed_at: datetime | None = None
    skipped: bool = False
    flagged_at_risk: bool = False  # for its current due date: rescheduling it watches the new date

    @property
    def done(self) -> bool:
        return self.completed_at is not None or self.skipped


class Onboarding(BaseModel):
    deal_id: str
    customer: Company
    contact: Contact
    owner: str
    won_at: datetime
    products: list[str]
    template: str
    tasks: list[PlannedTask]
    go_live_at: datetime | None = None
    check_ins: list[CheckIn] = []
    check_ins_fired: list[str] = []
    upsells: list[str] = []  # products offered so far, so each is offered once

    def task(self, name: str) -> PlannedTask:
        for task in self.tasks:
            if task.task == name:
                return task
        raise RuleBroken("unknown_task", f"the {self.template} plan has no task {name!r}", "task")


def deadlines(onboarding: Onboarding) -> list[Deadline]:
    """Each open task's due date until it is flagged at risk (before go-live), each check-in not yet due."""
    pending = [
        Deadline(TASK_DUE, task.task, task.due_at)
        for task in onboarding.tasks
        if not task.done and not task.flagged_at_risk and onboarding.go_live_at is None
    ]
    pending += [
        Deadline(CHECK_IN, check_in.name, check_in.due_at)
        for check_in in onboarding.check_ins
        if check_in.name not in onboarding.check_ins_fired
    ]
    return pending


def choose_template(won: DealWon, playbook: OnboardingPlaybook) -> str:
    products = {line.product for line in won.lines}
    for rule in playbook.template_rules:
        if rule.when_product is not None and rule.when_product in products:
            return rule.template
        if (
            rule.when_amount_at_least_minor is not None
            and won.amount.amount_minor >= rule.when_amount_at_least_minor
        ):
            return rule.template
    return playbook.default_template


def on_deal_won(
    state: Onboarding | None, won: DealWon, now: datetime, playbook: OnboardingPlaybook
) -> Decision[Onboarding]:
    if state is not None:
        return Decision(state)  # the same deal won twice: one plan
    template = choose_template(won, playbook)
    tasks = [
        PlannedTask(
            task=step.task,
            owner_role=step.owner_role,
            due_at=won.won_at + timedelta(days=step.due_after_days),
            required=step.required,
        )
        for step in playbook.templates[template].tasks
    ]
    onboarding = Onboarding(
        deal_id=won.deal_id,
        customer=won.customer,
        contact=won.contact,
        owner=won.owner,
        won_at=won.won_at,
        products=sorted({line.product for line in won.lines}),
        template=template,
        tasks=tasks,
    )
    started = OnboardingStarted(
        deal_id=won.deal_id,
        customer=won.customer,
        owner=won.owner,
        template=template,
        plan=[
            OnboardingTask(
                task=task.task, owner_role=task.owner_role, due_at=task.due_at, required=task.required
            )
            for task in tasks
        ],
        started_at=won.won_at,
    )
    return Decision(onboarding, [started])


def on_owner_changed(
    onboarding: Onboarding, changed: DealOwnerChanged, now: datetime, playbook: OnboardingPlaybook
) -> Decision[Onboarding]:
    """The won deal has another owner: the check-ins and reminders from now on name them."""
    return Decision(onboarding.model_copy(update={"owner": changed.owner}))


def on_task_completed(
    onboarding: Onboarding, done: OnboardingTaskCompleted, now: datetime, playbook: OnboardingPlaybook
) -> Decision[Onboarding]:
    task = _open_task(onboarding, done.task)
    updated = _replace_task(onboarding, task.model_copy(update={"completed_at": done.occurred_at}))
    return _complete_if_done(updated, now, playbook)


def on_task_skipped(
    onboarding: Onboarding, skipped: OnboardingTaskSkipped, now: datetime, playbook: OnboardingPlaybook
) -> Decision[Onboarding]:
    task = _open_task(onboarding, skipped.task)
    if task.required:
        raise RuleBroken("required_task", f"{task.task!r} is required and cannot be skipped", "task")
    return _complete_if_done(
        _replace_task(onboarding, task.model_copy(update={"skipped": True})), now, playbook
    )


def on_task_rescheduled(
    onboarding: Onboarding, moved: OnboardingTaskRescheduled, now: datetime, playbook: OnboardingPlaybook
) -> Decision[Onboarding]:
    task = _open_task(onboarding, moved.task)
    if moved.due_at == task.due_at:
        return Decision(onboarding)
    # A new due date is a new deadline (an announcement of the old one no longer matches): watched anew.
    rescheduled = task.model_copy(update={"due_at": moved.due_at, "flagged_at_risk": False})
    return Decision(_replace_task(onboarding, rescheduled))


def on_usage_reported(
    onboarding: Onboarding, usage: UsageReported, now: datetime, playbook: OnboardingPlaybook
) -> Decision[Onboarding]:
    rule = playbook.expansion.seat_utilisation
    utilisation = usage.seats_used / usage.seats_purchased
    if rule is None or utilisation <= rule.above:
        return Decision(onboarding)
    return _offer(onboarding, [(rule.offer, f"{utilisation:.0%} of {usage.seats_purchased} seats in use")])


def on_deadline(
    onboarding: Onboarding, deadline: DeadlineReached, now: datetime, playbook: OnboardingPlaybook
) -> Decision[Onboarding]:
    try:
        named = Deadline.parse(deadline.deadline_id)
    except ValueError:
        return Decision(onboarding)
    due = pending_by_id(deadlines(onboarding)).get(named.id)
    if due is None:
        return Decision(onboarding)  # done, fired already, or moved to another date since
    if due.kind == CHECK_IN:
        fired = onboarding.model_copy(update={"check_ins_fired": [*onboarding.check_ins_fired, due.key]})
        return Decision(
            fired,
            [
                CheckInDue(
                    deal_id=onboarding.deal_id, check_in=due.key, due_at=due.due_at, owner=onboarding.owner
                )
            ],
        )
    task = onboarding.task(due.key)
    at_risk = OnboardingAtRisk(
        deal_id=onboarding.deal_id, task=task.task, owner_role=task.owner_role, due_at=task.due_at
    )
    return Decision(_replace_task(onboarding, task.model_copy(update={"flagged_at_risk": True})), [at_risk])


def _complete_if_done(
    onboarding: Onboarding, now: datetime, playbook: OnboardingPlaybook
) -> Decision[Onboarding]:
    if any(task.required and not task.done for task in onboarding.tasks):
        return Decision(onboarding)
    go_live_at = not_before(onboarding.task(GO_LIVE).completed_at or now, onboarding.won_at)
    completed_tasks = [task for task in onboarding.tasks if task.completed_at is not None]
    on_time = [task for task in completed_tasks if task.completed_at and task.completed_at <= task.due_at]
    check_ins = [
        CheckIn(name=f"day_{days}", due_at=go_live_at + timedelta(days=days))
        for days in playbook.check_ins_after_go_live_days
    ]
    live = onboarding.model_copy(update={"go_live_at": go_live_at, "check_ins": check_ins})
    completed = OnboardingCompleted(
        deal_id=onboarding.deal_id,
        completed_at=not_before(now, onboarding.won_at),
        time_to_value_seconds=max(0, int((go_live_at - onboarding.won_at).total_seconds())),
        on_time_ratio=round(len(on_time) / len(completed_tasks), 4) if completed_tasks else None,
        check_ins=check_ins,
    )
    offers = [
        (rule.offer, f"bought {rule.bought} without {rule.offer}")
        for rule in playbook.expansion.cross_sell
        if rule.bought in onboarding.products and rule.offer not in onboarding.products
    ]
    expansion = _offer(live, offers)
    return Decision(expansion.state, [completed, *expansion.events])


def _offer(onboarding: Onboarding, offers: list[tuple[str, str]]) -> Decision[Onboarding]:
    events: list[Event] = []
    upsells = list(onboarding.upsells)
    for product, reason in offers:
        if product in upsells:
            continue
        upsells.append(product)
        events.append(
            UpsellIdentified(
                expansion_deal_id=f"{onboarding.deal_id}-x{len(upsells)}",
                original_deal_id=onboarding.deal_id,
                customer=onboarding.customer,
                contact=onboarding.contact,
                owner=onboarding.owner,
                product=product,
                reason=reason,
            )
        )
    return Decision(onboarding.model_copy(update={"upsells": upsells}), events)


def _open_task(onboarding: Onboarding, name: str) -> PlannedTask:
    if onboarding.go_live_at is not None:
        raise RuleBroken("onboarding_completed", "the onboarding is already completed")
    task = onboarding.task(name)
    if task.done:
        raise RuleBroken("task_done", f"{name!r} is already done", "task")
    return task


def _replace_task(onboarding: Onboarding, changed: PlannedTask) -> Onboarding:
    return onboarding.model_copy(
        update={"tasks": [changed if task.task == changed.task else task for task in onboarding.tasks]}
    )
