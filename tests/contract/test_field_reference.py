"""The README's field reference of leads and activities is the contracts' own, and its examples publish."""

from __future__ import annotations

import json

import pytest

from cli.event_files import read_event_file
from contracts.reference import END, README, START, inbound_types, with_reference


def test_the_readme_field_reference_is_current() -> None:
    readme = README.read_text(encoding="utf-8")
    assert readme == with_reference(readme), "run `make schemas`"


@pytest.mark.parametrize(("name", "model"), inbound_types(), ids=[name for name, _ in inbound_types()])
def test_every_lead_and_activity_is_documented_with_an_example_its_contract_accepts(
    name: str, model: type, tmp_path: object
) -> None:
    section = README.read_text(encoding="utf-8").split(START, 1)[1].split(END, 1)[0]
    assert f"**`{name}`**" in section
    examples = [
        line for line in section.splitlines() if line.startswith("{") and json.loads(line)["type"] == name
    ]
    assert len(examples) == 1
    path = tmp_path / "example.jsonl"  # type: ignore[operator]
    path.write_text(examples[0] + "\n")
    read = read_event_file(path)
    assert read.problems == []
    assert read.unknown_fields == []
    assert [type(event) for event, _ in read.events] == [model]
