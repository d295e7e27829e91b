"""Write the JSON Schema of every event's payload to contracts/schemas/ (`make schemas`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from contracts.events import EVENT_TYPE_PREFIX, EVENT_TYPES

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def schema_file_name(event_type: str) -> str:
    return f"{event_type.removeprefix(EVENT_TYPE_PREFIX)}.json"


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema (2020-12) of the event's CloudEvents `data`, with its topic and key."""
    result = {}
    for event_type, model in sorted(EVENT_TYPES.items()):
        schema = model.model_json_schema(mode="serialization")
        result[schema_file_name(event_type)] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://dealflow.dev/schemas/{schema_file_name(event_type)}",
            "x-cloudevents-type": event_type,
            "x-topic": str(model.TOPIC),
            "x-key": model.KEY_FIELD,
            **schema,
        }
    return result


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    wanted = schemas()
    for stale in SCHEMA_DIR.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
    for name, schema in wanted.items():
        (SCHEMA_DIR / name).write_text(render(schema))
    print(f"wrote {len(wanted)} schemas to {SCHEMA_DIR}", file=sys.stderr)


if __name__ == "__main__":
    main()
