"""The insights playbook: its section of the playbook document (currency rates, reports, limits) and,
from the company-wide parts, every pipeline's stages with their labels, probabilities, forecast categories
and stall days, and the teams."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.playbook import PlaybookDocument, load_document, without_properties

SECTION = "insights"
# What the model takes from the company-wide parts of the document, not from the insights section.
SHARED = (
    "stage_order",
    "stage_label",
    "pipelines",
    "stage_probability",
    "forecast_category",
    "stall_days",
    "teams",
    "team_manager",
    "team_region",
    "default_pipeline",
    "pipeline_by_deal_type",
    "pipeline_by_lead_source",
)
ForecastCategory = Literal["pipeline", "best_case", "commit", "closed"]
UNKNOWN_TEAM = "no_team"


class Limits(BaseModel):
    """How much one deal's timeline keeps itemised, so its document stays far below the database's limit.

    Beyond them the oldest items are folded: counted, and what the reports need of them kept as totals.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeline_entries: int = Field(
        default=200, ge=1, description="entries of the event log kept, newest first; older ones are counted"
    )
    stage_visits: int = Field(
        default=100,
        ge=2,
        description="stage visits kept; the oldest stays are folded into per-stage, per-month totals",
    )


class InsightsPlaybook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage_order: tuple[str, ...] = Field(
        min_length=1, description="every open stage, qualification's first: the board's columns, the funnel"
    )
    stage_label: dict[str, str] = Field(default={}, description="per open stage: its column title")
    pipelines: dict[str, tuple[str, ...]] = Field(default={}, description="pipeline -> its stages")
    stage_probability: dict[str, Decimal] = Field(description="per open stage; won deals count as 1")
    forecast_category: dict[str, ForecastCategory] = Field(description="per open stage")
    reporting_currency: str = Field(pattern=r"^[A-Z]{3}$")
    rate_to_reporting: dict[str, Decimal] = Field(
        description="ISO 4217 code -> value of 1 unit (not 1 minor unit) in the reporting currency"
    )
    stall_days: dict[str, int] = Field(description="per open stage; a stage not listed never stalls")
    teams: dict[str, list[str]] = Field(default={}, description="team -> its owners")
    team_manager: dict[str, str] = Field(
        default={}, description="team -> its manager, when the playbook names one"
    )
    team_region: dict[str, str] = Field(
        default={}, description="team -> its region, when the playbook names one"
    )
    default_pipeline: str | None = Field(
        default=None, description="the pipeline of a deal nothing else places"
    )
    pipeline_by_deal_type: dict[str, str] = Field(default={}, description="deal type -> pipeline")
    pipeline_by_lead_source: dict[str, str] = Field(default={}, description="lead source -> pipeline")
    top_reasons: int = Field(default=5, ge=1)
    velocity_min_cycle_days: float = Field(
        gt=0,
        description="pipeline velocity divides by the average cycle (qualification to won) of the "
        "period's won deals; shorter than this: no velocity figure",
    )
    forecast_min_sample: int = Field(
        default=10,
        ge=1,
        description="closed deals that reached a stage needed before its fitted probability replaces the "
        "playbook's; fewer: the static one is used, and the forecast says so",
    )
    forecast_horizon_days: int = Field(
        default=90,
        ge=1,
        description="the backtest compares a period-end forecast with what those deals won within this "
        "many days after it",
    )
    forecast_backtest_periods: int = Field(
        default=24,
        ge=1,
        description="the latest period ends the backtest scores (each costs a pass over the deals)",
    )
    limits: Limits = Limits()

    @model_validator(mode="after")
    def consistent(self) -> InsightsPlaybook:
        for name, per_stage in (
            ("stage_probability", self.stage_probability),
            ("forecast_category", self.forecast_category),
        ):
            if missing := set(self.stage_order) - set(per_stage):
                raise ValueError(f"{name} lacks stages {sorted(missing)}")
        if any(not 0 <= p <= 1 for p in self.stage_probability.values()):
            raise ValueError("stage probabilities are between 0 and 1")
        if "closed" in self.forecast_category.values():
            raise ValueError("an open stage cannot be in the closed category")
        if self.rate_to_reporting.get(self.reporting_currency) != 1:
            raise ValueError("the reporting currency's own rate must be 1")
        if any(rate <= 0 for rate in self.rate_to_reporting.values()):
            raise ValueError("currency rates are positive")
        if unknown := set(self.stall_days) - set(self.stage_order):
            raise ValueError(f"stall_days names stages that are not open stages: {sorted(unknown)}")
        if any(days < 1 for days in self.stall_days.values()):
            raise ValueError("stall days are at least 1")
        owners = [owner for members in self.teams.values() for owner in members]
        if len(owners) != len(set(owners)):
            raise ValueError("an owner belongs to one team only")
        return self

    @property
    def open_stages(self) -> tuple[str, ...]:
        return self.stage_order

    @property
    def qualification_stage(self) -> str:
        return self.stage_order[0]

    def pipeline_of(self, deal_type: str | None, lead_source: str | None) -> str | None:
        """As the playbook's pipeline_for chooses: deal type, then lead source, else the default."""
        if deal_type is not None and deal_type in self.pipeline_by_deal_type:
            return self.pipeline_by_deal_type[deal_type]
        if lead_source is not None and lead_source in self.pipeline_by_lead_source:
            return self.pipeline_by_lead_source[lead_source]
        return self.default_pipeline

    def team_of(self, owner: str | None) -> str:
        if owner is None:
            return UNKNOWN_TEAM
        if owner.startswith("unassigned:"):
            return owner.removeprefix("unassigned:")
        return next((team for team, members in self.teams.items() if owner in members), UNKNOWN_TEAM)


def from_document(document: PlaybookDocument, section: dict[str, Any]) -> InsightsPlaybook:
    stages = document.stages
    return InsightsPlaybook.model_validate(
        {
            **section,
            "stage_order": document.stage_order(),
            "stage_label": {name: stage.label for name, stage in stages.items()},
            "pipelines": {name: pipeline.stages for name, pipeline in document.pipelines.items()},
            "stage_probability": {name: stage.probability for name, stage in stages.items()},
            "forecast_category": {name: stage.forecast_category for name, stage in stages.items()},
            "stall_days": {name: stage.stall_days for name, stage in stages.items() if stage.stall_days},
            "teams": {team.name: [rep.name for rep in team.reps] for team in document.teams},
            "team_manager": {team.name: team.manager for team in document.teams if team.manager},
            "team_region": {team.name: team.region for team in document.teams if team.region},
            "default_pipeline": document.pipeline_for.default,
            "pipeline_by_deal_type": dict(document.pipeline_for.deal_types),
            "pipeline_by_lead_source": dict(document.pipeline_for.lead_sources),
        }
    )


def section_schema() -> dict[str, Any]:
    return without_properties(InsightsPlaybook.model_json_schema(), *SHARED)


def load_playbook(path: Path | None = None) -> InsightsPlaybook:
    """The insights part of the playbook document at `path` (default: DEALFLOW_PLAYBOOK)."""
    document = load_document(path)
    return from_document(document, document.insights)
