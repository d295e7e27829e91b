"""The playbook: the company's sales process as one document, read by every service.

It declares the company-wide parts once (teams and their reps; the stages with their labels, win
probabilities, forecast categories, next steps, stall days and exit criteria; the pipelines, each an
ordered list of those stages grouped under the service that owns them; how a deal gets its pipeline) and
one section per service (`prospecting`, `qualification`, `proposal`, `onboarding`, `insights`), which the
service validates with its own model (`services/<name>/config.py`). Nothing here knows a service's rules.

The document is found at `DEALFLOW_PLAYBOOK`, else `playbooks/default.yaml`. Its JSON Schema is
`playbooks/playbook.schema.json` (`make schemas`); `dealflow playbook check FILE` validates a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PLAYBOOK_DIR = Path(__file__).resolve().parent.parent / "playbooks"
DEFAULT_DOCUMENT = PLAYBOOK_DIR / "default.yaml"
SCHEMA_FILE = PLAYBOOK_DIR / "playbook.schema.json"
ENVIRONMENT_VARIABLE = "DEALFLOW_PLAYBOOK"
SECTIONS = ("prospecting", "qualification", "proposal", "onboarding", "insights")
# The services that own stages of a pipeline, in the order a deal meets them.
STAGE_OWNERS = ("qualification", "proposal")
StageId = str
ForecastCategory = Literal["pipeline", "best_case", "commit"]
# What the proposal service knows of a deal, from which a stage's exit criteria are built.
Fact = Literal[
    "needs_captured",  # the discovery call captured the prospect's needs (lead.qualified's needs)
    "demo_scheduled",
    "demo_held",
    "quote_prepared",
    "quote_sent",
    "quote_accepted",
    "objections_resolved",  # no objection is open
    "contract_signed",
    "payment_received",  # payments cover the accepted quote's total (else the deal's amount)
]
FACTS: tuple[str, ...] = Fact.__args__  # type: ignore[attr-defined]
# The activities (the middle of their type: activity.<name>.v1) that may advance a deal.
ActivityName = Literal[
    "demo_scheduled",
    "demo_no_show",
    "demo_held",
    "quote_prepared",
    "discount_approved",
    "proposal_sent",
    "proposal_accepted",
    "objection_raised",
    "objection_resolved",
    "contract_signed",
    "payment_received",
]


UNION_TAGS = frozenset({"AnyOf", "str", "int", "bool", "float"})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rep(Strict):
    name: str
    active: bool = True
    capacity: int = Field(default=30, ge=0, description="new leads per routing period")


class Team(Strict):
    """A sales team: its territory (for routing new leads) and its reps (for routing and the forecast)."""

    name: str
    countries: frozenset[str] = Field(description="territory; empty means every country no other team has")
    reps: tuple[Rep, ...] = Field(min_length=1)
    manager: str | None = Field(default=None, description="who leads the team: reports group by it")
    region: str | None = Field(default=None, description="the team's region, e.g. EMEA: reports group by it")


class AnyOf(Strict):
    any_of: tuple[Fact, ...] = Field(min_length=1, description="one of these facts is enough")


Criterion = Fact | AnyOf


class NextStepRule(Strict):
    action: str = Field(min_length=1, description="what the owner does next, e.g. hold_demo")
    due_after_days: int = Field(ge=0, le=365, description="due this many days after the stage is entered")


class Stage(Strict):
    label: str = Field(min_length=1, description="how people read it (the board's column title)")
    probability: float = Field(ge=0, le=1, description="win probability while a deal is in it")
    forecast_category: ForecastCategory
    stall_days: int | None = Field(
        default=None, ge=1, description="days without progress that raise deal.stalled; none: never"
    )
    next_step: NextStepRule | None = Field(
        default=None, description="set on entry, carried on deal.stage_changed (required on proposal stages)"
    )
    exit_criteria: tuple[Criterion, ...] = Field(
        default=(),
        description="all must hold to leave the stage for the next one (the last proposal stage: won)",
    )
    advance_on: tuple[ActivityName, ...] | None = Field(
        default=None,
        description="activities after which the deal advances when the criteria hold; none: any "
        "activity; []: only a rep's activity.stage_move_requested",
    )

    def unmet(self, facts: dict[str, bool]) -> list[str]:
        """The exit criteria that do not hold, as the playbook names them."""
        unmet = []
        for criterion in self.exit_criteria:
            if isinstance(criterion, AnyOf):
                if not any(facts.get(fact, False) for fact in criterion.any_of):
                    unmet.append(" or ".join(criterion.any_of))
            elif not facts.get(criterion, False):
                unmet.append(criterion)
        return unmet


class Pipeline(Strict):
    """A sales process: its stages in order, grouped under the service that owns them."""

    label: str
    qualification: tuple[StageId, ...] = Field(
        min_length=1, max_length=1, description="the stage a deal is in while qualification works it"
    )
    proposal: tuple[StageId, ...] = Field(
        min_length=1, description="in order; leaving the last one wins the deal"
    )

    @property
    def stages(self) -> tuple[StageId, ...]:
        return (*self.qualification, *self.proposal)


class PipelineFor(Strict):
    """How a deal gets its pipeline: its deal type first, then its lead source, else the default."""

    default: str
    deal_types: dict[str, str] = Field(
        default={},
        description="deal type -> pipeline; expansion: deals opened from upsells, renewal: from onboarding",
    )
    lead_sources: dict[str, str] = Field(default={}, description="lead source -> pipeline")

    def choose(self, deal_type: str | None, lead_source: str | None) -> str:
        if deal_type is not None and deal_type in self.deal_types:
            return self.deal_types[deal_type]
        if lead_source is not None and lead_source in self.lead_sources:
            return self.lead_sources[lead_source]
        return self.default


class PlaybookDocument(Strict):
    """The whole playbook. The sections are validated by the services that own them."""

    teams: tuple[Team, ...] = Field(min_length=1, description="the one list of teams and reps")
    stages: dict[StageId, Stage] = Field(min_length=1)
    pipelines: dict[str, Pipeline] = Field(min_length=1)
    pipeline_for: PipelineFor
    prospecting: dict[str, Any]
    qualification: dict[str, Any]
    proposal: dict[str, Any]
    onboarding: dict[str, Any]
    insights: dict[str, Any]

    @model_validator(mode="after")
    def consistent(self) -> PlaybookDocument:
        reserved = {"won", "lost", "nurture", "disqualified", "onboarding", "live"}
        if clash := reserved & set(self.stages):
            raise ValueError(f"stage ids {sorted(clash)} are reserved for closed deals and other states")
        for name, pipeline in self.pipelines.items():
            if unknown := [stage for stage in pipeline.stages if stage not in self.stages]:
                raise ValueError(f"pipeline {name} names unknown stages {unknown}")
            if len(set(pipeline.stages)) != len(pipeline.stages):
                raise ValueError(f"pipeline {name} lists a stage twice")
            for stage in pipeline.proposal:
                if self.stages[stage].next_step is None:
                    raise ValueError(f"stage {stage} (proposal, pipeline {name}) needs a next_step")
            last = self.stages[pipeline.proposal[-1]]
            if not last.exit_criteria:
                raise ValueError(f"the last stage of pipeline {name} needs exit criteria: they win the deal")
        for stage in {stage for pipeline in self.pipelines.values() for stage in pipeline.qualification}:
            if self.stages[stage].exit_criteria or self.stages[stage].advance_on is not None:
                raise ValueError(
                    f"stage {stage} is qualification's: its framework decides, not exit_criteria"
                )
        first = {pipeline.qualification for pipeline in self.pipelines.values()}
        if len(first) > 1:
            raise ValueError("every pipeline starts with the same qualification stage")
        owned = {
            owner: {stage for pipeline in self.pipelines.values() for stage in getattr(pipeline, owner)}
            for owner in STAGE_OWNERS
        }
        if both := owned["qualification"] & owned["proposal"]:
            raise ValueError(f"stages {sorted(both)} are owned by two services")
        if unused := set(self.stages) - set().union(*owned.values()):
            raise ValueError(f"stages {sorted(unused)} are in no pipeline")
        rules = self.pipeline_for
        named = {rules.default, *rules.deal_types.values(), *rules.lead_sources.values()}
        if unknown_pipelines := named - set(self.pipelines):
            raise ValueError(f"pipeline_for names unknown pipelines {sorted(unknown_pipelines)}")
        reps = [rep.name for team in self.teams for rep in team.reps]
        if len(reps) != len(set(reps)):
            raise ValueError("a rep belongs to one team only")
        if len({team.name for team in self.teams}) != len(self.teams):
            raise ValueError("team names are unique")
        return self

    @property
    def qualification_stage(self) -> StageId:
        return next(iter(self.pipelines.values())).qualification[0]

    def owned_by(self, owner: str) -> dict[str, tuple[StageId, ...]]:
        """Pipeline -> the stages `owner` (qualification or proposal) owns in it, in order."""
        return {name: getattr(pipeline, owner) for name, pipeline in self.pipelines.items()}

    def stage_order(self) -> tuple[StageId, ...]:
        """Every stage once, pipelines in order, each stage where it first appears (the board's order)."""
        order: list[StageId] = []
        for pipeline in self.pipelines.values():
            for index, stage in enumerate(pipeline.stages):
                if stage in order:
                    continue
                # after the nearest earlier stage of this pipeline that is placed already
                before = [order.index(s) for s in pipeline.stages[:index] if s in order]
                order.insert(max(before) + 1 if before else len(order), stage)
        return tuple(order)


def document_path(path: Path | None = None) -> Path:
    return path or Path(os.environ.get(ENVIRONMENT_VARIABLE, DEFAULT_DOCUMENT))


def read_document(path: Path | None = None) -> dict[str, Any]:
    content = yaml.safe_load(document_path(path).read_text())
    if not isinstance(content, dict):
        raise ValueError("a playbook is a YAML mapping")
    return content


def load_document(path: Path | None = None) -> PlaybookDocument:
    """Read and validate the document; a bad one raises pydantic's ValidationError naming every path."""
    return PlaybookDocument.model_validate(read_document(path))


def error_lines(error: ValidationError, prefix: str = "") -> list[str]:
    """Each error as `path: message`, the path dotted from the document's root."""
    lines: list[str] = []
    for item in error.errors():
        # a union's member names its branch in the location (literal[...], AnyOf): not a path
        parts = [str(part) for part in (prefix, *item["loc"]) if part != "" and part not in UNION_TAGS]
        path = ".".join(part for part in parts if not part.startswith(("literal[", "function-")))
        line = f"{path or '(document)'}: {item['msg']}"
        if line not in lines:
            lines.append(line)
    return lines


def without_properties(schema: dict[str, Any], *paths: str) -> dict[str, Any]:
    """`schema` less the properties at dotted `paths` (following $ref into $defs): the parts a service's
    model takes from the company-wide parts rather than from its own section."""
    defs = schema.get("$defs", {})
    for path in paths:
        *parents, leaf = path.split(".")
        node = schema
        for parent in parents:
            node = node["properties"][parent]
            if "$ref" in node:
                node = defs[node["$ref"].rsplit("/", 1)[1]]
        node.get("properties", {}).pop(leaf, None)
        if leaf in node.get("required", []):
            node["required"] = [name for name in node["required"] if name != leaf]
            if not node["required"]:
                del node["required"]
    return schema
