"""The rules an imported opportunity's history must follow, whichever stage service takes it. Pure, no I/O.

An export of another CRM brings a deal with its past (opportunity.imported.v1). The stage service that
owns the row's stage takes it; these rules are the same for each of them: a history that contradicts
itself or its pipeline is refused, and a row imported again replaces the deal it made only while no live
activity has touched that deal since.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from contracts import Event
from contracts.events import Contact, OpportunityHistory
from shared.domain import Decision, RuleBroken

WON = "won"
LOST = "lost"
CLOSED_STAGES = frozenset({WON, LOST})
# An export names no contact person: the deal keeps an empty one, as an erased contact keeps `[erased]`,
# so nothing downstream mistakes it for somebody's address.
UNKNOWN_CONTACT = Contact(email="")
# Reason codes of a refused import.
UNKNOWN_PIPELINE = "unknown_pipeline"
UNKNOWN_STAGE = "unknown_stage"
MISSING_CLOSED_AT = "missing_closed_at"
STAGE_NOT_IN_PIPELINE = "stage_not_in_pipeline"
STAGE_HISTORY_OUT_OF_ORDER = "stage_history_out_of_order"
STAGE_HISTORY_ENDS_ELSEWHERE = "stage_history_ends_elsewhere"
AFTER_AS_OF = "after_as_of"
DEAL_EXISTS = "deal_exists"
DEAL_ACTIVE = "deal_active"


def check_history(row: OpportunityHistory, pipeline_stages: tuple[str, ...]) -> None:
    """Refuse (RuleBroken) a row whose history does not hold together: a stage of its history outside its
    pipeline, entries not oldest first, an open deal whose history ends in another stage than its own, a
    closed one without its closing time, or any of its times after the moment it is known up to."""
    closed = row.stage in CLOSED_STAGES
    if closed and row.closed_at is None:
        raise RuleBroken(MISSING_CLOSED_AT, f"a {row.stage} deal needs the time it was closed", "closed_at")
    last = len(row.stage_history) - 1
    for index, entry in enumerate(row.stage_history):
        closing_entry = closed and index == last and entry.stage == row.stage
        if entry.stage not in pipeline_stages and not closing_entry:
            raise RuleBroken(
                STAGE_NOT_IN_PIPELINE,
                f"{entry.stage!r} is not a stage of pipeline {row.pipeline} ({', '.join(pipeline_stages)})",
                f"stage_history.{index}.stage",
            )
        if index and entry.entered_at < row.stage_history[index - 1].entered_at:
            raise RuleBroken(
                STAGE_HISTORY_OUT_OF_ORDER,
                "the stage history lists the stages it entered oldest first",
                f"stage_history.{index}.entered_at",
            )
    if not closed and row.stage_history and row.stage_history[-1].stage != row.stage:
        raise RuleBroken(
            STAGE_HISTORY_ENDS_ELSEWHERE,
            f"an open deal's history ends in its stage {row.stage}, not in {row.stage_history[-1].stage}",
            f"stage_history.{last}.stage",
        )
    times = [
        ("created_at", row.created_at),
        *((f"stage_history.{i}.entered_at", entry.entered_at) for i, entry in enumerate(row.stage_history)),
        *([("closed_at", row.closed_at)] if closed and row.closed_at is not None else []),
    ]
    for field, at in times:
        if at > row.as_of:
            raise RuleBroken(
                AFTER_AS_OF,
                f"dated {at.isoformat()}, after the history is known up to ({row.as_of.isoformat()})",
                field,
            )


def entered_current_stage(row: OpportunityHistory) -> datetime:
    """When the open deal entered its stage: its history's last entry, else when it was created."""
    return row.stage_history[-1].entered_at if row.stage_history else row.created_at


def import_digest(row: OpportunityHistory) -> str:
    """What the row says, less the moment it is known up to: an export made again later, of a deal that
    has not changed, has the same digest."""
    content = row.model_dump(mode="json", include=set(OpportunityHistory.model_fields), exclude={"as_of"})
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def replaces_import(
    imported_as_of: datetime | None, imported_digest: str | None, touched_since: bool, row: OpportunityHistory
) -> bool:
    """Whether a row for a deal this stage already holds replaces it: only a deal made by an import
    that no live activity touched since, and only by a row known up to a later moment that says
    something else. The same row exported again, or an older one, changes nothing; a deal of the
    stage's own, or one live activity touched, refuses it."""
    if imported_as_of is None:
        raise RuleBroken(DEAL_EXISTS, "a deal with this id exists already, not made by an import", "deal_id")
    if touched_since:
        raise RuleBroken(
            DEAL_ACTIVE,
            f"the deal imported as of {imported_as_of.isoformat()} has had live activity since: "
            "its history is dealflow's now",
            "deal_id",
        )
    return row.as_of > imported_as_of and import_digest(row) != imported_digest


class ImportMarks(BaseModel):
    """What a stage keeps of the import that made one of its deals (none of it for a deal born here)."""

    source: str | None = Field(default=None, description="an imported deal: the CRM it came from")
    source_id: str | None = Field(default=None, description="an imported deal: its id in that CRM")
    imported_as_of: datetime | None = Field(
        default=None,
        description="an imported deal: the moment its history is known up to; a deadline due by then "
        "fell due in the past, and is recorded, not acted on",
    )
    imported_digest: str | None = Field(
        default=None, description="an imported deal: what its row said, less as_of (import_digest)"
    )
    touched_since_import: bool = Field(
        default=False, description="a live activity changed the imported deal: a later import is refused"
    )

    def due_in_history(self, due_at: datetime) -> bool:
        """Whether a deadline fell due before the deal was imported: history, late, paging nobody."""
        return self.imported_as_of is not None and due_at <= self.imported_as_of


def import_marks(row: OpportunityHistory) -> dict[str, Any]:
    """The ImportMarks of a deal the row makes."""
    return {
        "source": row.source,
        "source_id": row.source_id,
        "imported_as_of": row.as_of,
        "imported_digest": import_digest(row),
    }


Marked = TypeVar("Marked", bound=ImportMarks)
Handled = TypeVar("Handled", bound=Event)
Rules = TypeVar("Rules")


def live(
    handler: Callable[[Marked, Handled, datetime, Rules], Decision[Marked]],
) -> Callable[[Marked, Handled, datetime, Rules], Decision[Marked]]:
    """The handler of a live activity. One that changes an imported deal marks it touched since the
    import: from then on its history is dealflow's, and a later import of it is refused."""

    @wraps(handler)
    def applied(state: Marked, event: Handled, now: datetime, playbook: Rules) -> Decision[Marked]:
        decision = handler(state, event, now, playbook)
        unchanged = decision.state == state and not decision.events
        if state.imported_as_of is None or state.touched_since_import or unchanged:
            return decision
        return Decision(decision.state.model_copy(update={"touched_since_import": True}), decision.events)

    return applied
