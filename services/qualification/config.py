"""The qualification playbook: contact cadences, SLAs and qualification frameworks, validated at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain import BusinessTimeRules
from shared.playbook import PlaybookDocument, Team, load_document, without_properties

SECTION = "qualification"  # its section of the playbook document (shared/playbook.py)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cadence(Strict):
    touches: int = Field(ge=1, description="contact attempts before giving up")
    days: int = Field(ge=1, description="over how many days; no reply by then disqualifies (no_response)")


class Criterion(Strict):
    required: bool = True
    met_when: tuple[bool | int | str, ...] = (True,)
    answered_by: frozenset[str] | None = Field(
        default=None,
        description="roles (the call's actor_role) that may answer; none: anyone. A call with no role "
        "may not answer a criterion that lists roles",
    )


class DecisionRules(Strict):
    """When a qualification decides: on a call's explicit outcome, and on what these rules allow."""

    without_outcome: Literal["when_complete", "never"] = Field(
        default="when_complete",
        description="a call with no outcome: when_complete decides once every required criterion has an "
        "answer (all met: qualified, else disqualified); never: only an explicit outcome decides",
    )
    at_sla: Literal["decide", "breach_only"] = Field(
        default="decide",
        description="when the qualification SLA (qualification_max_days) is reached: decide qualifies on "
        "the answers gathered if every required criterion is met and an amount is known, else "
        "disqualifies; breach_only only reports the breach and leaves the lead open",
    )


class QualificationPlaybook(Strict):
    cadence_by_tier: dict[str, Cadence]
    qualification_max_days: int = Field(
        ge=1, description="an open qualification older than this breaches its SLA"
    )
    discovery_call_within_days: int = Field(
        default=2, ge=0, description="after a reply with no meeting booked"
    )
    frameworks: dict[str, dict[str, Criterion]]
    default_framework: str = Field(description="the framework of a discovery call that names none")
    decision: DecisionRules = DecisionRules()
    unassigned_claim_hours: int = Field(
        default=24,
        ge=1,
        le=8760,
        description="a lead prospecting routed to the `unassigned:<team>` queue (no rep had room) and that "
        "no rep claims (activity.owner_change_requested) within these hours breaches its SLA "
        "(qualification.sla_breached, unassigned_unclaimed)",
    )
    business_time: BusinessTimeRules
    # From the document's shared parts, not the section: who may own a lead, and the stage's id.
    teams: tuple[Team, ...] = ()
    stage: str = "qualification"
    pipeline_stages: dict[str, tuple[str, ...]] = Field(
        default={}, description="pipeline -> all its stages in order: which imported rows are whose"
    )

    @property
    def reps(self) -> frozenset[str]:
        """Every rep of the document's teams: the owners a lead may be given to."""
        return frozenset(rep.name for team in self.teams for rep in team.reps)

    @model_validator(mode="after")
    def consistent(self) -> QualificationPlaybook:
        if missing := {"A", "B", "C"} - set(self.cadence_by_tier):
            raise ValueError(f"cadence_by_tier lacks tiers {sorted(missing)}")
        if self.default_framework not in self.frameworks:
            raise ValueError(f"default_framework {self.default_framework!r} is not in frameworks")
        for name, criteria in self.frameworks.items():
            if not any(criterion.required for criterion in criteria.values()):
                raise ValueError(f"framework {name} has no required criterion")
        return self


def from_document(document: PlaybookDocument, section: dict[str, Any]) -> QualificationPlaybook:
    """The section, with the document's teams, its qualification stage's id and its pipelines."""
    shared = {
        "teams": [team.model_dump() for team in document.teams],
        "stage": document.qualification_stage,
        "pipeline_stages": {name: pipeline.stages for name, pipeline in document.pipelines.items()},
    }
    return QualificationPlaybook.model_validate({**section, **shared})


def section_schema() -> dict[str, Any]:
    return without_properties(QualificationPlaybook.model_json_schema(), "teams", "stage", "pipeline_stages")


def load_playbook(path: Path | None = None) -> QualificationPlaybook:
    """The qualification section of the playbook document at `path` (default: DEALFLOW_PLAYBOOK)."""
    document = load_document(path)
    return from_document(document, document.qualification)
