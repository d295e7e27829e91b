"""Qualification rules: a prospect becomes a deal when its framework's exit criteria hold."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from contracts.events import (
    Company,
    Contact,
    DiscoveryCallLogged,
    LeadDisqualified,
    LeadQualified,
    NextStep,
    ProspectIdentified,
)
from shared.domain import Decision, RuleBroken

# The criteria a discovery call must confirm, per framework, in the order a rep asks them.
FRAMEWORK_CRITERIA: dict[str, tuple[str, ...]] = {
    "BANT": ("budget", "authority", "need", "timeline"),
    "MEDDIC": (
        "metrics",
        "economic_buyer",
        "decision_criteria",
        "decision_process",
        "identify_pain",
        "champion",
    ),
}


class Status(StrEnum):
    OPEN = "open"
    QUALIFIED = "qualified"
    DISQUALIFIED = "disqualified"


class Qualification(BaseModel):
    deal_id: str
    owner: str
    contact: Contact
    company: Company
    status: Status
    opened_at: datetime
    next_step: NextStep | None


def on_prospect_identified(
    state: Qualification | None, prospect: ProspectIdentified, now: datetime
) -> Decision[Qualification]:
    if state is not None:
        return Decision(state)
    return Decision(
        Qualification(
            deal_id=prospect.deal_id,
            owner=prospect.owner,
            contact=prospect.contact,
            company=prospect.company,
            status=Status.OPEN,
            opened_at=now,
            next_step=NextStep(action="discovery_call", due_at=prospect.next_step.due_at),
        )
    )


def on_discovery_call_logged(
    state: Qualification, call: DiscoveryCallLogged, now: datetime
) -> Decision[Qualification]:
    if state.status is not Status.OPEN:
        raise RuleBroken("qualification_closed", f"the lead is already {state.status.value}")
    criteria = FRAMEWORK_CRITERIA[call.framework]
    unknown = sorted(set(call.answers) - set(criteria))
    if unknown:
        raise RuleBroken(
            "unknown_framework_field",
            f"{call.framework} has no criterion {unknown[0]!r}",
            f"answers.{unknown[0]}",
        )
    unmet = [criterion for criterion in criteria if call.answers.get(criterion) is not True]
    closed = state.model_copy(update={"next_step": None})
    if unmet:
        return Decision(
            closed.model_copy(update={"status": Status.DISQUALIFIED}),
            [
                LeadDisqualified(
                    deal_id=state.deal_id,
                    reason_code=f"{call.framework.lower()}_{unmet[0]}_not_met",
                    detail=f"not confirmed: {', '.join(unmet)}",
                    disqualified_at=now,
                )
            ],
        )
    if call.estimated_amount is None:
        raise RuleBroken(
            "missing_estimated_amount", "a qualified deal needs an estimated amount", "estimated_amount"
        )
    return Decision(
        closed.model_copy(update={"status": Status.QUALIFIED}),
        [
            LeadQualified(
                deal_id=state.deal_id,
                owner=state.owner,
                contact=state.contact,
                company=state.company,
                framework=call.framework,
                needs=call.needs,
                amount=call.estimated_amount,
                expected_close_date=call.expected_close_date,
                qualified_at=now,
            )
        ],
    )
