"""The proposal playbook: its section of the playbook document (price list, discount approval, loss
reasons, the demos' next steps), the reps of the document's teams, and the stages it owns in each
pipeline, with their probabilities, next steps and exit criteria."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain import BusinessTimeRules
from shared.playbook import PipelineFor, PlaybookDocument, Stage, load_document, without_properties

SECTION = "proposal"
# What the model takes from the company-wide parts of the document, not from the proposal section.
SHARED = ("stages", "pipelines", "pipeline_for", "reps", "qualification_stages")


class Limits(BaseModel):
    """How much one deal's document may hold, so it stays far below the database's document size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quote_versions: int = Field(
        default=20, ge=1, description="quote versions per deal; one more is refused (too_many_quote_versions)"
    )
    objections: int = Field(
        default=50,
        ge=1,
        description="objections kept per deal: a new one folds the oldest resolved one away, and is "
        "refused (too_many_open_objections) when all of them are open",
    )


class DemoNextStep(BaseModel):
    """The next step a demo activity sets: due at the scheduled meeting, or some days after the activity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str = Field(min_length=1, description="what the owner does next, e.g. hold_demo")
    at: Literal["meeting"] | None = Field(
        default=None, description="meeting: due when the demo is scheduled for (demo_scheduled only)"
    )
    due_after_days: int | None = Field(default=None, ge=0, le=365, description="due this many days later")

    @model_validator(mode="after")
    def one_due_time(self) -> DemoNextStep:
        if (self.at is None) == (self.due_after_days is None):
            raise ValueError("give either at: meeting or due_after_days")
        return self


class NextStepOn(BaseModel):
    """Next steps set by demo activities, besides the one each stage sets on entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    demo_scheduled: DemoNextStep | None = None
    demo_no_show: DemoNextStep | None = None

    @model_validator(mode="after")
    def no_meeting_after_a_no_show(self) -> NextStepOn:
        if self.demo_no_show is not None and self.demo_no_show.at is not None:
            raise ValueError("demo_no_show has no meeting to be due at: use due_after_days")
        return self


class ProposalPlaybook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: dict[str, Stage] = Field(description="the stages proposal owns, from the document's stages")
    pipelines: dict[str, tuple[str, ...]] = Field(description="pipeline -> its proposal stages, in order")
    qualification_stages: dict[str, tuple[str, ...]] = Field(
        default={},
        description="pipeline -> the stages qualification owns in it: an imported row in one of them is "
        "qualification's to take",
    )
    pipeline_for: PipelineFor
    price_list: dict[str, dict[str, int]] = Field(
        description="product -> ISO 4217 currency -> unit price, minor units"
    )
    discount_approval_above_percent: int = Field(ge=0, le=100)
    quote_validity_days: int = Field(default=30, ge=1)
    loss_reasons: frozenset[str]
    limits: Limits = Limits()
    next_step_on: NextStepOn = NextStepOn()
    reps: frozenset[str] = Field(
        default=frozenset(),
        description="the active reps of the document's teams: who a deal may be given to (empty: anyone)",
    )
    business_time: BusinessTimeRules

    @model_validator(mode="after")
    def consistent(self) -> ProposalPlaybook:
        if "competitor" not in self.loss_reasons:
            raise ValueError("loss_reasons must include competitor")
        if unknown := {s for stages in self.pipelines.values() for s in stages} - set(self.stages):
            raise ValueError(f"pipelines name unknown stages {sorted(unknown)}")
        if self.pipeline_for.default not in self.pipelines:
            raise ValueError(f"pipeline_for.default {self.pipeline_for.default!r} is not a pipeline")
        return self

    def probability(self, stage: str) -> float:
        if stage in self.stages:
            return self.stages[stage].probability
        return {"won": 1.0, "lost": 0.0}.get(stage, 0.0)

    def pipeline_stages(self, pipeline: str) -> tuple[str, ...]:
        """Every stage of a pipeline the playbook has, qualification's first, in order."""
        return (*self.qualification_stages.get(pipeline, ()), *self.pipelines[pipeline])

    def stages_of(self, pipeline: str | None) -> tuple[str, ...]:
        """A pipeline's proposal stages; a pipeline the playbook no longer has: the default's."""
        return (
            self.pipelines.get(pipeline or self.pipeline_for.default)
            or self.pipelines[self.pipeline_for.default]
        )


def from_document(document: PlaybookDocument, section: dict[str, Any]) -> ProposalPlaybook:
    pipelines = document.owned_by("proposal")
    owned = {stage for stages in pipelines.values() for stage in stages}
    return ProposalPlaybook.model_validate(
        {
            **section,
            "stages": {name: stage for name, stage in document.stages.items() if name in owned},
            "pipelines": pipelines,
            "qualification_stages": document.owned_by("qualification"),
            "pipeline_for": document.pipeline_for,
            "reps": {rep.name for team in document.teams for rep in team.reps if rep.active},
        }
    )


def section_schema() -> dict[str, Any]:
    return without_properties(ProposalPlaybook.model_json_schema(), *SHARED)


def load_playbook(path: Path | None = None) -> ProposalPlaybook:
    """The proposal part of the playbook document at `path` (default: DEALFLOW_PLAYBOOK)."""
    document = load_document(path)
    return from_document(document, document.proposal)
