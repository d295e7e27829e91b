"""The proposal playbook: stages and their win probabilities, price list, discount approval, closing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain import BusinessTimeRules

DEFAULT_PLAYBOOK = Path(__file__).with_name("playbook.yaml")
OPEN_STAGES = ("presentation", "proposal", "negotiation", "closing")
ClosingStep = Literal["accepted_quote", "contract_signed", "payment_received"]


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


class ProposalPlaybook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    win_probability: dict[str, float] = Field(description="per open stage; won is 1 and lost is 0")
    price_list: dict[str, dict[str, int]] = Field(
        description="product -> ISO 4217 currency -> unit price, minor units"
    )
    discount_approval_above_percent: int = Field(ge=0, le=100)
    quote_validity_days: int = Field(default=30, ge=1)
    closing_requires: frozenset[ClosingStep]
    loss_reasons: frozenset[str]
    limits: Limits = Limits()
    business_time: BusinessTimeRules

    @model_validator(mode="after")
    def consistent(self) -> ProposalPlaybook:
        if missing := set(OPEN_STAGES) - set(self.win_probability):
            raise ValueError(f"win_probability lacks stages {sorted(missing)}")
        if any(not 0 <= p <= 1 for p in self.win_probability.values()):
            raise ValueError("win probabilities are between 0 and 1")
        if "competitor" not in self.loss_reasons:
            raise ValueError("loss_reasons must include competitor")
        return self

    def probability(self, stage: str) -> float:
        return {"won": 1.0, "lost": 0.0}.get(stage, self.win_probability.get(stage, 0.0))


def load_playbook(path: Path | None = None) -> ProposalPlaybook:
    path = path or Path(os.environ.get("DEALFLOW_PROPOSAL_PLAYBOOK", DEFAULT_PLAYBOOK))
    return ProposalPlaybook.model_validate(yaml.safe_load(path.read_text()))
