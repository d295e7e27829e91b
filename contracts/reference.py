"""The README's field reference of what upstream systems send (leads and activities), from the contracts.

`make schemas` writes it between the README's `field-reference` markers; a contract test fails when the
README differs from the models. Each event gets its fields (type, required, meaning) and one line to copy
into a file for `dealflow publish`: the demo's own, else one made of its required fields, and each is
validated against the contract it illustrates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts.events import EVENT_TYPE_PREFIX, EVENT_TYPES, Activity, Event, LeadCaptured

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DEMO_FILES = (REPO / "deploy" / "demo" / "leads.jsonl", REPO / "deploy" / "demo" / "activities.jsonl")
START, END = "<!-- field-reference:start -->", "<!-- field-reference:end -->"
SAMPLE_TIME = "2026-11-02T10:00:00Z"
# Values of the fields whose text has a shape of its own, for examples made of required fields.
SAMPLE_TEXT = {"currency": "EUR", "product": "dealflow-seat", "task": "kickoff"}
COMMON = set(Activity.model_fields)


def inbound_types() -> list[tuple[str, type[Event]]]:
    """What upstream systems publish: the lead, then every activity, by name."""
    models = [(t.removeprefix(EVENT_TYPE_PREFIX), m) for t, m in sorted(EVENT_TYPES.items())]
    return [(t, m) for t, m in models if m is LeadCaptured] + [
        (t, m) for t, m in models if issubclass(m, Activity)
    ]


def reference() -> str:
    parts = [
        "Every activity has these fields, besides its own (below):",
        "",
        *_field_table(Activity, only=COMMON),
    ]
    for name, model in inbound_types():
        own = set(model.model_fields) - (COMMON if issubclass(model, Activity) else set())
        summary = _first_line(model)
        parts += ["", f"**`{name}`** (topic `dealflow.{model.TOPIC}`, key `{model.KEY_FIELD}`){summary}", ""]
        parts += _field_table(model, only=own) if own else ["(no fields of its own)"]
        example = example_line(name, model)
        if example is not None:
            parts += ["", "```json", example, "```"]
    return "\n".join(parts) + "\n"


def _first_line(model: type[Event]) -> str:
    """The model's own docstring's first line, as ': ...' (pydantic gives undocumented models its own)."""
    own = model.__dict__.get("__doc__")
    return f": {own.strip().splitlines()[0]}" if own and own.strip() else ""


def _field_table(model: type[Event], *, only: set[str]) -> list[str]:
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})
    required = set(schema.get("required", []))
    rows = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for field, prop in schema["properties"].items():
        if field not in only:
            continue
        meaning = (prop.get("description") or "").replace("|", "\\|").replace("\n", " ")
        rows.append(
            f"| `{field}` | {_type(prop, definitions)} | {'yes' if field in required else ''} | {meaning} |"
        )
    return rows


def _type(prop: dict[str, Any], definitions: dict[str, Any]) -> str:
    if "$ref" in prop:
        return _ref_name(prop["$ref"])
    if "anyOf" in prop:
        kinds = [_type(option, definitions) for option in prop["anyOf"] if option.get("type") != "null"]
        return " or ".join(kinds)
    if "enum" in prop:
        return " \\| ".join(f"`{value}`" for value in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}), definitions)}"
    if kind == "string" and prop.get("format") in ("date-time", "date", "email"):
        return {"date-time": "date-time (ISO 8601, with offset)", "date": "date", "email": "email"}[
            prop["format"]
        ]
    return str(kind)


def _ref_name(ref: str) -> str:
    return f"object ({ref.rsplit('/', 1)[-1]})"


def example_line(name: str, model: type[Event]) -> str | None:
    """A line for `dealflow publish` that its contract accepts, or None if none can be made."""
    data = _demo_example(name)
    if data is None:
        schema = model.model_json_schema()
        data = _minimal(schema, schema.get("$defs", {}))
    try:
        model.model_validate(data)
    except ValidationError:
        return None
    return json.dumps({"type": name, "data": data}, ensure_ascii=False)


def _demo_example(name: str) -> dict[str, Any] | None:
    for path in DEMO_FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                item = json.loads(line)
                if item.get("type") == name:
                    return dict(item["data"])
    return None


def _minimal(schema: dict[str, Any], definitions: dict[str, Any], name: str = "") -> Any:
    if "$ref" in schema:
        return _minimal(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions, name)
    if "anyOf" in schema:
        return _minimal(next(s for s in schema["anyOf"] if s.get("type") != "null"), definitions, name)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        required = schema.get("required", [])
        return {field: _minimal(schema["properties"][field], definitions, field) for field in required}
    if kind == "array":
        return [_minimal(schema.get("items", {}), definitions)] if schema.get("minItems") else []
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1
    if kind == "boolean":
        return True
    if schema.get("format") == "date-time":
        return SAMPLE_TIME
    if schema.get("format") == "date":
        return SAMPLE_TIME[:10]
    if schema.get("format") == "email":
        return "ana@example.com"
    return SAMPLE_TEXT.get(name, "deal-1042")


def with_reference(readme: str) -> str:
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{reference()}{END}{after}"


def main() -> None:
    README.write_text(with_reference(README.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote the field reference into {README.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()
