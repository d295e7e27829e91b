"""The onboarding playbook: plan templates, how one is chosen, check-ins and expansion rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain import BusinessTimeRules
from shared.playbook import PlaybookDocument, load_document

SECTION = "onboarding"  # its section of the playbook document (shared/playbook.py)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateTask(Strict):
    task: str
    owner_role: str
    due_after_days: int = Field(ge=0, description="after the deal was won")
    required: bool = True


class Template(Strict):
    tasks: tuple[TemplateTask, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def has_a_go_live(self) -> Template:
        if not any(task.task == "go_live" and task.required for task in self.tasks):
            raise ValueError("every template needs a required go_live task (time to value ends there)")
        return self


class TemplateRule(Strict):
    """The first rule that matches the won deal chooses the template."""

    template: str
    when_product: str | None = None
    when_amount_at_least_minor: int | None = None


class CrossSell(Strict):
    bought: str
    offer: str


class SeatUtilisation(Strict):
    above: float = Field(gt=0, le=1)
    offer: str


class Expansion(Strict):
    cross_sell: tuple[CrossSell, ...] = ()
    seat_utilisation: SeatUtilisation | None = None


class OnboardingPlaybook(Strict):
    templates: dict[str, Template]
    template_rules: tuple[TemplateRule, ...] = ()
    default_template: str
    check_ins_after_go_live_days: tuple[int, ...] = (30, 90)
    expansion: Expansion = Expansion()
    business_time: BusinessTimeRules

    @model_validator(mode="after")
    def templates_exist(self) -> OnboardingPlaybook:
        named = {self.default_template, *(rule.template for rule in self.template_rules)}
        if missing := named - set(self.templates):
            raise ValueError(f"unknown templates {sorted(missing)}")
        return self


def from_document(document: PlaybookDocument, section: dict[str, Any]) -> OnboardingPlaybook:
    return OnboardingPlaybook.model_validate(section)


def section_schema() -> dict[str, Any]:
    return OnboardingPlaybook.model_json_schema()


def load_playbook(path: Path | None = None) -> OnboardingPlaybook:
    """The onboarding section of the playbook document at `path` (default: DEALFLOW_PLAYBOOK)."""
    document = load_document(path)
    return from_document(document, document.onboarding)
