"""The qualification playbook: contact cadences, SLAs and qualification frameworks, validated at start."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain import BusinessTimeRules

DEFAULT_PLAYBOOK = Path(__file__).with_name("playbook.yaml")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cadence(Strict):
    touches: int = Field(ge=1, description="contact attempts before giving up")
    days: int = Field(ge=1, description="over how many days; no reply by then disqualifies (no_response)")


class Criterion(Strict):
    required: bool = True
    met_when: tuple[bool | int | str, ...] = (True,)
    answered_by: frozenset[str] | None = Field(
        default=None, description="roles that may answer; none: anyone"
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
    default_framework: str
    business_time: BusinessTimeRules

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


def load_playbook(path: Path | None = None) -> QualificationPlaybook:
    path = path or Path(os.environ.get("DEALFLOW_QUALIFICATION_PLAYBOOK", DEFAULT_PLAYBOOK))
    return QualificationPlaybook.model_validate(yaml.safe_load(path.read_text()))
