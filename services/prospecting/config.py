"""The prospecting playbook: the Ideal Customer Profile, deduplication and routing, validated at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain import BusinessTimeRules
from shared.playbook import PlaybookDocument, Team, load_document, without_properties

SECTION = "prospecting"  # its section of the playbook document (shared/playbook.py)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Criterion(Strict):
    weight: int = Field(ge=0, le=100)


class IndustryCriterion(Criterion):
    target: frozenset[str]
    excluded: frozenset[str] = Field(default=frozenset(), description="a hard exclusion: score 0")


class SizeCriterion(Criterion):
    min_employees: int = Field(ge=0)
    max_employees: int = Field(ge=0)


class GeographyCriterion(Criterion):
    countries: frozenset[str]
    excluded: frozenset[str] = Field(default=frozenset(), description="a hard exclusion: score 0")


class SeniorityCriterion(Criterion):
    levels: frozenset[str] = Field(description="c_level, vp, director, manager, individual")


class SignalsCriterion(Criterion):
    technologies: frozenset[str] = frozenset()
    intent: frozenset[str] = frozenset()


class IdealCustomerProfile(Strict):
    industry: IndustryCriterion
    size: SizeCriterion
    geography: GeographyCriterion
    seniority: SeniorityCriterion
    signals: SignalsCriterion
    fit_threshold: int = Field(ge=0, le=100)
    tier_a_from: int = Field(ge=0, le=100)
    tier_b_from: int = Field(ge=0, le=100)

    @model_validator(mode="after")
    def weights_add_up(self) -> IdealCustomerProfile:
        weights = (self.industry, self.size, self.geography, self.seniority, self.signals)
        total = sum(criterion.weight for criterion in weights)
        if total != 100:
            raise ValueError(f"criterion weights must add up to 100, not {total}")
        if not self.tier_b_from <= self.tier_a_from:
            raise ValueError("tier_b_from must not exceed tier_a_from")
        if self.size.min_employees > self.size.max_employees:
            raise ValueError("size.min_employees must not exceed size.max_employees")
        return self


class Routing(Strict):
    teams: tuple[Team, ...] = Field(min_length=1)
    period_days: int = Field(default=30, ge=1, description="capacity counts reset every this many days")
    first_touch_hours: dict[str, int] = Field(description="by fit tier: A, B, C")

    @model_validator(mode="after")
    def every_tier_has_a_first_touch(self) -> Routing:
        missing = {"A", "B", "C"} - set(self.first_touch_hours)
        if missing:
            raise ValueError(f"first_touch_hours lacks tiers {sorted(missing)}")
        if sum(1 for team in self.teams if not team.countries) > 1:
            raise ValueError("only one team may have an empty territory")
        return self


class Deduplication(Strict):
    """What a lead that matches an earlier deal becomes; a deal's claim on an email, domain or company name
    lasts `window_days`, and closure (won, lost, disqualified) is learnt from the stage events."""

    window_days: int = Field(default=90, ge=0, description="a lead matching a prospect this recent is merged")
    same_person_open_deal: Literal["merge", "new_deal"] = Field(
        default="merge",
        description="the same email as an open deal: merged into it (lead.merged), or a new deal",
    )
    same_account_open_deal: Literal["join", "merge", "new_deal"] = Field(
        default="join",
        description="another person at the account (company domain or name) of an open deal: joins its "
        "buying committee (lead.merged, relation buying_committee), merged as a duplicate, or a new deal",
    )
    closed_deal: Literal["new_deal", "merge"] = Field(
        default="new_deal",
        description="a lead matching only closed deals: a new deal (prospect.identified with "
        "previous_deal_id), or merged into the closed deal (lead.merged)",
    )


class Limits(Strict):
    """How much one prospect's records may hold, so no document or event grows without bound."""

    merged_leads: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="leads a lead.merged event lists (and the prospect's claim keeps): the most recent",
    )


class ProspectingPlaybook(Strict):
    icp: IdealCustomerProfile
    routing: Routing
    deduplication: Deduplication = Deduplication()
    free_mail_domains: frozenset[str]
    limits: Limits = Limits()
    business_time: BusinessTimeRules


def from_document(document: PlaybookDocument, section: dict[str, Any]) -> ProspectingPlaybook:
    """The section, with routing's teams and reps from the document's one list of teams."""
    routing = section.get("routing")
    teams = [team.model_dump() for team in document.teams]
    if isinstance(routing, dict):
        section = {**section, "routing": {**routing, "teams": teams}}
    return ProspectingPlaybook.model_validate(section)


def section_schema() -> dict[str, Any]:
    return without_properties(ProspectingPlaybook.model_json_schema(), "routing.teams")


def load_playbook(path: Path | None = None) -> ProspectingPlaybook:
    """Read and validate the playbook; a bad document stops the service with pydantic's explanation."""
    document = load_document(path)
    return from_document(document, document.prospecting)
