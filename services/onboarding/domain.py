"""Onboarding rules: a plan of tasks from a template, completed task by task until go-live."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from contracts.events import (
    Company,
    DealWon,
    OnboardingCompleted,
    OnboardingStarted,
    OnboardingTask,
    OnboardingTaskCompleted,
)
from shared.domain import Decision, RuleBroken

GO_LIVE = "go_live"


class TemplateTask(BaseModel):
    task: str
    owner_role: str
    due_after_days: int
    required: bool = True


STANDARD_PLAN: tuple[TemplateTask, ...] = (
    TemplateTask(task="kickoff", owner_role="customer_success_manager", due_after_days=3),
    TemplateTask(task="technical_setup", owner_role="solutions_engineer", due_after_days=10),
    TemplateTask(task="training", owner_role="customer_success_manager", due_after_days=14),
    TemplateTask(task=GO_LIVE, owner_role="customer_success_manager", due_after_days=21),
)


class PlannedTask(BaseModel):
    task: str
    owner_role: str
    due_at: datetime
    required: bool
    completed_at: datetime | None = None


class Onboarding(BaseModel):
    deal_id: str
    customer: Company
    owner: str
    won_at: datetime
    tasks: list[PlannedTask]
    completed_at: datetime | None = None


def on_deal_won(state: Onboarding | None, won: DealWon, now: datetime) -> Decision[Onboarding]:
    if state is not None:
        return Decision(state)
    tasks = [
        PlannedTask(
            task=step.task,
            owner_role=step.owner_role,
            due_at=won.won_at + timedelta(days=step.due_after_days),
            required=step.required,
        )
        for step in STANDARD_PLAN
    ]
    onboarding = Onboarding(
        deal_id=won.deal_id, customer=won.customer, owner=won.owner, won_at=won.won_at, tasks=tasks
    )
    started = OnboardingStarted(
        deal_id=won.deal_id,
        customer=won.customer,
        owner=won.owner,
        plan=[
            OnboardingTask(
                task=task.task, owner_role=task.owner_role, due_at=task.due_at, required=task.required
            )
            for task in tasks
        ],
        started_at=now,
    )
    return Decision(onboarding, [started])


def on_task_completed(
    onboarding: Onboarding, done: OnboardingTaskCompleted, now: datetime
) -> Decision[Onboarding]:
    if onboarding.completed_at is not None:
        raise RuleBroken("onboarding_completed", "the onboarding is already completed")
    if done.task not in {task.task for task in onboarding.tasks}:
        raise RuleBroken("unknown_task", f"the plan has no task {done.task!r}", "task")
    tasks = [
        task.model_copy(update={"completed_at": done.occurred_at})
        if task.task == done.task and task.completed_at is None
        else task
        for task in onboarding.tasks
    ]
    updated = onboarding.model_copy(update={"tasks": tasks})
    if any(task.required and task.completed_at is None for task in tasks):
        return Decision(updated)
    go_live_at = next((task.completed_at for task in tasks if task.task == GO_LIVE), None) or done.occurred_at
    completed = OnboardingCompleted(
        deal_id=onboarding.deal_id,
        completed_at=now,
        time_to_value_seconds=max(0, int((go_live_at - onboarding.won_at).total_seconds())),
    )
    return Decision(updated.model_copy(update={"completed_at": now}), [completed])
