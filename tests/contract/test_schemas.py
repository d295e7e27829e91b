"""The committed JSON Schemas are the public contract: they must match the models exactly."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from contracts import Topic
from contracts.events import EVENT_TYPES
from contracts.export import SCHEMA_DIR, render, schemas
from shared.envelope import encode

REPO = Path(__file__).resolve().parents[2]
SAMPLES = [REPO / "deploy" / "demo" / "leads.jsonl", REPO / "deploy" / "demo" / "activities.jsonl"]


def test_committed_schemas_match_the_models() -> None:
    committed = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.json")}
    generated = {name: render(schema) for name, schema in schemas().items()}

    assert set(committed) == set(generated), "run `make schemas` and commit contracts/schemas"
    stale = [name for name in generated if committed[name] != generated[name]]
    assert not stale, f"run `make schemas`: these differ from the models: {stale}"


def test_every_event_type_is_versioned_and_has_a_topic() -> None:
    for event_type, model in EVENT_TYPES.items():
        assert event_type.startswith("io.dealflow.")
        assert event_type.rsplit(".", 1)[1].startswith("v")
        assert str(model.TOPIC).endswith(".v1")


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
def test_sample_events_validate_against_the_published_schemas(sample: Path) -> None:
    for line in sample.read_text().splitlines():
        item = json.loads(line)
        schema = json.loads((SCHEMA_DIR / f"{item['type']}.json").read_text())
        model = EVENT_TYPES[schema["x-cloudevents-type"]]
        record = encode(model.model_validate(item["data"]), topic="t", source="/test")

        jsonschema.validate(json.loads(record.value), schema, cls=jsonschema.Draft202012Validator)


def test_no_service_imports_another_services_code() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_documents_every_topic_and_event_type() -> None:
    readme = (REPO / "README.md").read_text()

    missing_topics = [str(topic) for topic in Topic if f"dealflow.{topic}" not in readme]
    missing_types = [
        t.removeprefix("io.dealflow.") for t in EVENT_TYPES if t.removeprefix("io.dealflow.") not in readme
    ]
    assert missing_topics == []
    assert missing_types == []
