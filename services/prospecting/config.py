"""The prospecting playbook: the Ideal Customer Profile and routing rules, validated at start."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_PLAYBOOK = Path(__file__).with_name("playbook.yaml")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Criterion(Strict):
    weight: int = Field(ge=0, le=100)


class IndustryCriterion(Criterion):
    target: frozenset[str]
    excluded: frozenset[str] = frozenset()


class SizeCriterion(Criterion):
    min_employees: int = Field(ge=0)
    max_employees: int = Field(ge=0)


class GeographyCriterion(Criterion):
    countries: frozenset[str]


class SeniorityCriterion(Criterion):
    title_keywords: frozenset[str]


class IdealCustomerProfile(Strict):
    industry: IndustryCriterion
    size: SizeCriterion
    geography: GeographyCriterion
    seniority: SeniorityCriterion
    fit_threshold: int = Field(ge=0, le=100)
    tier_a_from: int = Field(ge=0, le=100)
    tier_b_from: int = Field(ge=0, le=100)

    @model_validator(mode="after")
    def weights_add_up(self) -> IdealCustomerProfile:
        total = self.industry.weight + self.size.weight + self.geography.weight + self.seniority.weight
        if total != 100:
            raise ValueError(f"criterion weights must add up to 100, not {total}")
        if not self.tier_b_from <= self.tier_a_from:
            raise ValueError("tier_b_from must not exceed tier_a_from")
        return self


class Team(Strict):
    name: str
    countries: frozenset[str] = Field(description="territory; empty means every other country")
    reps: tuple[str, ...] = Field(min_length=1)


class Routing(Strict):
    teams: tuple[Team, ...] = Field(min_length=1)
    first_touch_hours: dict[str, int] = Field(description="by fit tier: A, B, C")


class ProspectingPlaybook(Strict):
    icp: IdealCustomerProfile
    routing: Routing
    free_mail_domains: frozenset[str]


def load_playbook(path: Path | None = None) -> ProspectingPlaybook:
    """Read and validate the playbook; a bad file stops the service with pydantic's explanation."""
    path = path or Path(os.environ.get("DEALFLOW_PROSPECTING_PLAYBOOK", DEFAULT_PLAYBOOK))
    return ProspectingPlaybook.model_validate(yaml.safe_load(path.read_text()))
