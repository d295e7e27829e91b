"""`dealflow publish`'s reader: every bad line named with its field and reason, the good ones kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.event_files import events_from_file, read_event_file

GOOD = {"lead_id": "lead-1", "email": "ana@b-corp.example", "company_name": "B Corp", "source": "web_form"}


def lines(tmp_path: Path, *items: object) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(item if isinstance(item, str) else json.dumps(item) for item in items) + "\n")
    return path


def test_each_bad_line_is_named_with_its_field_and_the_good_lines_are_read(tmp_path: Path) -> None:
    path = lines(
        tmp_path,
        {"type": "lead.captured.v1", "data": GOOD},
        {"type": "lead.captured.v1", "data": {**GOOD, "email": None}},
        "{not json",
        "# a comment, and a blank line follows",
        "",
        {"type": "lead.nope.v1", "data": {}},
        {"data": GOOD},
        {"type": "lead.captured.v1"},
        {"type": "lead.captured.v1", "id": "lead-2-id", "data": {**GOOD, "lead_id": "lead-2"}},
    )
    read = read_event_file(path)
    assert [event.lead_id for event, _ in read.events] == ["lead-1", "lead-2"]  # type: ignore[attr-defined]
    assert [event_id for _, event_id in read.events] == [None, "lead-2-id"]
    assert [(p.line, p.field) for p in read.problems] == [
        (2, "email"),
        (3, ""),
        (6, "type"),
        (7, "type"),
        (8, "data"),
    ]
    assert "not valid JSON" in str(read.problems[1])
    assert str(read.problems[2]) == "line 6: type: unknown event type 'lead.nope.v1'"


def test_fields_the_contract_does_not_know_are_reported_with_their_path(tmp_path: Path) -> None:
    path = lines(
        tmp_path,
        {"type": "lead.captured.v1", "data": {**GOOD, "compnay_name": "typo", "revenue": 5}},
    )
    read = read_event_file(path)
    assert len(read.events) == 1
    assert [(p.line, p.field) for p in read.unknown_fields] == [(1, "compnay_name"), (1, "revenue")]


def test_unknown_fields_inside_nested_objects_and_lists_are_found(tmp_path: Path) -> None:
    call = {
        "deal_id": "deal-1",
        "activity_id": "call-1",
        "occurred_at": "2026-11-02T10:00:00+00:00",
        "actor": "rep",
        "actor_role": "rep",
        "answers": {"budget": True},
        "needs": {"pains": ["slow"], "painz": ["typo"]},
        "estimated_amount": {"amount_minor": 100, "currency": "EUR", "cents": 1},
    }
    read = read_event_file(lines(tmp_path, {"type": "activity.discovery_call_logged.v1", "data": call}))
    assert not read.problems, read.problems
    assert sorted(p.field for p in read.unknown_fields) == ["estimated_amount.cents", "needs.painz"]


def test_the_demo_reader_stops_at_the_first_problem(tmp_path: Path) -> None:
    path = lines(tmp_path, {"type": "lead.captured.v1", "data": GOOD}, "{broken")
    with pytest.raises(ValueError, match="line 2"):
        list(events_from_file(path))
