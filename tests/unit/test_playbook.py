"""The playbook document: one file, a published schema, a check command, and stages as data.

The proposal rules and the insights board run the default playbook, the example playbook and edited
copies of the default on the same code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from cli.playbook import check, document_schema, render
from contracts.events import (
    Company,
    Contact,
    ContractSigned,
    DealStageChanged,
    DealWon,
    DemoHeld,
    DemoScheduled,
    LeadQualified,
    Money,
    Needs,
    ObjectionRaised,
    ObjectionResolved,
    PaymentReceived,
    ProposalAccepted,
    ProposalSent,
    StageMoveRequested,
)
from services.insights import domain as insights
from services.insights.config import load_playbook as insights_playbook
from services.proposal import domain
from services.proposal.config import ProposalPlaybook
from services.proposal.config import load_playbook as proposal_playbook
from shared.domain import Decision, RuleBroken
from shared.playbook import DEFAULT_DOCUMENT, PLAYBOOK_DIR, SCHEMA_FILE, load_document
from tests.insights_events import moved

EXAMPLE = PLAYBOOK_DIR / "example-solution-selling.yaml"
DOCUMENTS = [DEFAULT_DOCUMENT, EXAMPLE]
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LINES = [{"product": "dealflow-platform", "quantity": 1}]


def at(days: int) -> datetime:
    return T0 + timedelta(days=days)


def activity(model: type, days: int, **fields: object) -> Any:
    return model.model_validate({"deal_id": "d-1", "occurred_at": at(days).isoformat()} | fields)


def opened(playbook: ProposalPlaybook, **fields: Any) -> Decision[domain.Deal]:
    event = LeadQualified.model_validate(
        {
            "deal_id": "d-1",
            "owner": "anna.schmidt",
            "contact": Contact(email="a@b.example"),
            "company": Company(name="B"),
            "framework": "BANT",
            "needs": Needs(),
            "amount": Money(amount_minor=120_000, currency="EUR"),
            "qualified_at": T0,
        }
        | fields
    )
    return domain.on_lead_qualified(None, event, T0, playbook)


def stages_of(events: list[Any]) -> list[tuple[str | None, str]]:
    return [(e.previous_stage, e.stage) for e in events if isinstance(e, DealStageChanged)]


def edited(tmp_path: Path, edit: Any) -> Path:
    """A copy of the default playbook, changed by `edit(content)`: no code changes."""
    content = yaml.safe_load(DEFAULT_DOCUMENT.read_text())
    edit(content)
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


# --- the document, its schema and its check -----------------------------------------------------------


def test_the_committed_schema_matches_the_models() -> None:
    assert SCHEMA_FILE.read_text() == render(document_schema()), "run `make schemas`"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_the_shipped_playbooks_validate_against_the_schema_and_the_check(document: Path) -> None:
    content = yaml.safe_load(document.read_text())
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(content, schema, cls=jsonschema.Draft202012Validator)
    assert check(document) == []

    result = CliRunner().invoke(app, ["playbook", "check", str(document)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")


def test_the_check_names_every_error_with_its_path(tmp_path: Path) -> None:
    def break_it(content: dict[str, Any]) -> None:
        content["stages"]["proposal"]["probability"] = 1.5
        content["proposal"]["discount_approval_above_percent"] = 200
        content["qualification"]["cadence_by_tier"]["A"]["touches"] = 0

    result = CliRunner().invoke(app, ["playbook", "check", str(edited(tmp_path, break_it))])

    assert result.exit_code == 1
    assert "stages.proposal.probability: Input should be less than or equal to 1" in result.output
    # the shared parts are fixed first; the sections are checked on a valid base
    fixed = edited(tmp_path, lambda c: (break_it(c), c["stages"]["proposal"].update(probability=0.4)))
    lines = check(fixed)
    assert "proposal.discount_approval_above_percent: Input should be less than or equal to 100" in lines
    assert "qualification.cadence_by_tier.A.touches: Input should be greater than or equal to 1" in lines


def test_a_pipeline_naming_an_unknown_stage_is_refused(tmp_path: Path) -> None:
    path = edited(tmp_path, lambda c: c["pipelines"]["renewal"]["proposal"].insert(0, "renewal_call"))
    assert check(path) == ["(document): Value error, pipeline renewal names unknown stages ['renewal_call']"]


def test_teams_and_probabilities_live_once() -> None:
    document = load_document()
    reps = {team.name: [rep.name for rep in team.reps] for team in document.teams}
    assert insights_playbook().teams == reps
    assert proposal_playbook().probability("negotiation") == float(
        insights_playbook().stage_probability["negotiation"]
    )


# --- proposal stages as data --------------------------------------------------------------------------


def test_every_stage_entered_carries_its_next_step() -> None:
    playbook = proposal_playbook()
    [entered] = opened(playbook).events
    assert isinstance(entered, DealStageChanged)
    assert entered.next_step is not None
    assert (entered.next_step.action, entered.next_step.due_at) == ("hold_demo", T0 + timedelta(days=7))


def test_expansion_and_renewal_deals_run_their_own_pipelines() -> None:
    playbook = proposal_playbook()
    expansion = opened(playbook, expansion_of="d-0").state
    renewal = opened(playbook, deal_type="renewal").state
    assert (expansion.pipeline, expansion.stage) == ("expansion", "proposal")
    assert (renewal.pipeline, renewal.stage) == ("renewal", "negotiation")


def test_a_rep_moving_a_deal_on_before_its_criteria_hold_is_refused_with_them() -> None:
    playbook = proposal_playbook()
    deal = opened(playbook).state
    with pytest.raises(RuleBroken) as refused:
        domain.on_stage_move_requested(
            deal, activity(StageMoveRequested, 1, to_stage="negotiation"), at(1), playbook
        )
    assert refused.value.code == "exit_criteria_unmet"
    assert "presentation: demo_held or quote_sent" in refused.value.message
    assert "proposal: quote_sent" in refused.value.message

    held = domain.on_demo_held(deal, activity(DemoHeld, 1), at(1), playbook).state
    moved_on = domain.on_stage_move_requested(
        held, activity(StageMoveRequested, 2, to_stage="proposal"), at(2), playbook
    )
    assert moved_on.state.stage == "proposal"  # the demo moved it already: nothing to do
    with pytest.raises(RuleBroken, match="past presentation") as backwards:
        domain.on_stage_move_requested(
            held, activity(StageMoveRequested, 2, to_stage="presentation"), at(2), playbook
        )
    assert backwards.value.code == "stage_move_backwards"
    with pytest.raises(RuleBroken) as unknown:
        domain.on_stage_move_requested(
            held, activity(StageMoveRequested, 2, to_stage="legal"), at(2), playbook
        )
    assert unknown.value.code == "unknown_stage"


def run_example(playbook: ProposalPlaybook) -> tuple[domain.Deal, list[Any]]:
    """The example playbook's new-business deal from discovery to won, its procurement moved by a rep."""
    events: list[Any] = []

    def apply(decision: Decision[domain.Deal]) -> domain.Deal:
        events.extend(decision.events)
        return decision.state

    deal = apply(opened(playbook))
    deal = apply(
        domain.on_demo_scheduled(
            deal, activity(DemoScheduled, 1, scheduled_for=at(2).isoformat()), at(1), playbook
        )
    )
    deal = apply(domain.on_demo_held(deal, activity(DemoHeld, 2), at(2), playbook))
    sent = activity(ProposalSent, 3, currency="EUR", lines=LINES)
    deal = apply(domain.on_proposal_sent(deal, sent, at(3), playbook))
    objection = activity(ObjectionRaised, 4, objection_id="o-1", category="features")
    deal = apply(domain.on_objection_raised(deal, objection, at(4), playbook))
    deal = apply(domain.on_proposal_accepted(deal, activity(ProposalAccepted, 5), at(5), playbook))
    assert deal.stage == "procurement"  # only a rep moves procurement on
    with pytest.raises(RuleBroken, match="procurement: objections_resolved") as refused:
        domain.on_stage_move_requested(
            deal, activity(StageMoveRequested, 6, to_stage="legal"), at(6), playbook
        )
    assert refused.value.code == "exit_criteria_unmet"
    resolved = activity(ObjectionResolved, 6, objection_id="o-1")
    deal = apply(domain.on_objection_resolved(deal, resolved, at(6), playbook))
    move = activity(StageMoveRequested, 7, to_stage="legal", actor="anna.schmidt")
    deal = apply(domain.on_stage_move_requested(deal, move, at(7), playbook))
    deal = apply(domain.on_contract_signed(deal, activity(ContractSigned, 8), at(8), playbook))
    return deal, events


def test_the_example_playbook_runs_its_own_stages_and_criteria_on_the_same_code() -> None:
    playbook = proposal_playbook(EXAMPLE)
    deal, events = run_example(playbook)

    assert stages_of(events) == [
        (None, "solution_design"),
        ("solution_design", "technical_validation"),
        ("technical_validation", "business_case"),
        ("business_case", "procurement"),
        ("procurement", "legal"),
        ("legal", "won"),  # won on signature: this playbook does not wait for the payment
    ]
    [won] = [event for event in events if isinstance(event, DealWon)]
    assert [visit.stage for visit in won.stage_history] == [
        "solution_design",
        "technical_validation",
        "business_case",
        "procurement",
        "legal",
    ]
    assert deal.stage == "won"


def test_the_example_playbooks_board_shows_its_columns() -> None:
    playbook = insights_playbook(EXAMPLE)
    board = insights.board([], T0, playbook)
    assert list(board) == [
        "discovery",
        "nurture",
        "solution_design",
        "technical_validation",
        "business_case",
        "procurement",
        "legal",
        "won",
        "onboarding",
        "live",
        "lost",
        "disqualified",
    ]


def test_a_stage_renamed_added_removed_or_given_a_criterion_in_a_copy_needs_no_code_change(
    tmp_path: Path,
) -> None:
    def change(content: dict[str, Any]) -> None:
        stages = content["stages"]
        stages["terms"] = stages.pop("negotiation") | {"label": "Terms"}  # renamed
        del stages["presentation"]  # removed
        stages["security_review"] = {  # added, with a criterion of its own
            "label": "Security review",
            "probability": 0.7,
            "forecast_category": "commit",
            "stall_days": 10,
            "next_step": {"action": "send_security_questionnaire", "due_after_days": 5},
            "exit_criteria": ["objections_resolved", "contract_signed"],
        }
        stages["closing"]["exit_criteria"] = ["quote_accepted", "payment_received"]  # criteria changed
        for pipeline in content["pipelines"].values():
            pipeline["proposal"] = [
                {"negotiation": "terms"}.get(stage, stage)
                for stage in pipeline["proposal"]
                if stage != "presentation"
            ]
        content["pipelines"]["new_business"]["proposal"] = ["proposal", "terms", "security_review", "closing"]

    path = edited(tmp_path, change)
    assert check(path) == []
    playbook = proposal_playbook(path)
    events: list[Any] = []

    def apply(decision: Decision[domain.Deal]) -> domain.Deal:
        events.extend(decision.events)
        return decision.state

    deal = apply(opened(playbook))
    sent = activity(ProposalSent, 1, currency="EUR", lines=LINES)
    deal = apply(domain.on_proposal_sent(deal, sent, at(1), playbook))
    deal = apply(domain.on_proposal_accepted(deal, activity(ProposalAccepted, 2), at(2), playbook))
    assert deal.stage == "security_review"
    deal = apply(domain.on_contract_signed(deal, activity(ContractSigned, 3), at(3), playbook))
    payment = activity(PaymentReceived, 4, amount={"amount_minor": 120_000, "currency": "EUR"})
    deal = apply(domain.on_payment_received(deal, payment, at(4), playbook))

    assert stages_of(events) == [
        (None, "proposal"),
        ("proposal", "terms"),
        ("terms", "security_review"),
        ("security_review", "closing"),
        ("closing", "won"),
    ]
    board = insights.board([], T0, insights_playbook(path))
    assert [c for c in board if c in {"proposal", "terms", "security_review", "closing", "presentation"}] == [
        "proposal",
        "terms",
        "security_review",
        "closing",
    ]


def test_a_deal_in_a_stage_the_edited_playbook_removed_stays_until_a_rep_moves_it(tmp_path: Path) -> None:
    old = proposal_playbook()
    deal = opened(old).state  # in presentation
    path = edited(
        tmp_path,
        lambda c: (
            c["stages"].pop("presentation"),
            c["pipelines"]["new_business"].update(proposal=["proposal", "negotiation", "closing"]),
        ),
    )
    new = proposal_playbook(path)
    held = domain.on_demo_held(deal, activity(DemoHeld, 1), at(1), new)
    assert (held.state.stage, held.events) == ("presentation", [])
    moved_on = domain.on_stage_move_requested(
        held.state, activity(StageMoveRequested, 2, to_stage="proposal"), at(2), new
    )
    assert stages_of(moved_on.events) == [("presentation", "proposal")]
    # insights still shows it, in a column of its own
    timeline = insights.on_stage_changed(
        None, moved("d-1", None, "presentation", T0), T0, insights_playbook(path)
    )
    assert "presentation" in insights.board([timeline.state], T0, insights_playbook(path))
