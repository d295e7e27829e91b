"""`dealflow playbook check FILE`, and the playbook's JSON Schema (`make schemas` writes it).

The document's company-wide parts are modelled in shared/playbook.py; each section by the service that
owns it (services/<name>/config.py), which builds its playbook from its section and the shared parts.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from pydantic import ValidationError

from shared.playbook import SCHEMA_FILE, SECTIONS, PlaybookDocument, error_lines, read_document


def section_module(name: str) -> ModuleType:
    return importlib.import_module(f"services.{name}.config")


def check(path: Path) -> list[str]:
    """Every error of the document at `path`, each as `path.in.document: message`; none: it is valid."""
    try:
        raw = read_document(path)
    except (OSError, yaml.YAMLError, ValueError) as error:
        return [f"(document): {error}"]
    errors: list[str] = []
    document: PlaybookDocument | None = None
    try:
        document = PlaybookDocument.model_validate(raw)
    except ValidationError as error:
        errors += error_lines(error)
    if document is None:
        return errors  # the sections are built on the shared parts: fix those first
    for name in SECTIONS:
        try:
            section_module(name).from_document(document, getattr(document, name))
        except ValidationError as error:
            errors += error_lines(error, prefix=name)
        except ValueError as error:
            errors.append(f"{name}: {error}")
    return errors


def _namespaced(schema: dict[str, Any], prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema without its $defs, and those $defs renamed `<prefix>.<name>` (refs rewritten)."""
    defs = schema.pop("$defs", {})

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: (
                    f"#/$defs/{prefix}.{value.rsplit('/', 1)[1]}"
                    if key == "$ref" and isinstance(value, str)
                    else rewrite(value)
                )
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    return rewrite(schema), {f"{prefix}.{name}": rewrite(body) for name, body in defs.items()}


def document_schema() -> dict[str, Any]:
    """The JSON Schema of the whole document: the shared parts, and each service's section."""
    schema, defs = _namespaced(PlaybookDocument.model_json_schema(), "playbook")
    for name in SECTIONS:
        section, section_defs = _namespaced(section_module(name).section_schema(), name)
        section.pop("title", None)
        schema["properties"][name] = section | {"description": f"read by the {name} service"}
        defs |= section_defs
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://dealflow.dev/schemas/playbook.schema.json",
        **schema,
        "title": "dealflow playbook",
        "$defs": dict(sorted(defs.items())),
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def main() -> None:
    SCHEMA_FILE.write_text(render(document_schema()))
    print(f"wrote {SCHEMA_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
