"""Checks a Kafka record against the AsyncAPI document: its channel, message, key, headers and payload.

The document's schemas are AsyncAPI schemas (a superset of JSON Schema draft-07), so draft-07 rules apply.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from contracts.asyncapi import Document

DOCUMENT_URI = "urn:dealflow:asyncapi"


def schema_problems(document: Document, pointer: str, instance: object) -> list[str]:
    """How `instance` breaks the schema at `pointer` (a JSON pointer into the document)."""
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, Resource(contents=document, specification=DRAFT7)
    )
    validator = Draft7Validator({"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=registry)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


def channel_for_topic(document: Document, topic: str, namespace: str) -> str:
    matches = [
        channel_id
        for channel_id, channel in document["channels"].items()
        if channel["address"].replace("{namespace}", namespace) == topic
    ]
    assert len(matches) == 1, f"{topic} is not exactly one channel of the AsyncAPI document: {matches}"
    return matches[0]


def message_for_record(document: Document, channel_id: str, headers: dict[str, str]) -> str:
    """A pointer to the channel's message this record is: the one named by its `ce_type`, or the only one."""
    pointers = [
        str(message["$ref"]).removeprefix("#")
        for message in document["channels"][channel_id]["messages"].values()
    ]
    if len(pointers) == 1:
        return pointers[0]
    named = [pointer for pointer in pointers if _resolve(document, pointer)["name"] == headers.get("ce_type")]
    assert named, f"channel {channel_id} has no message {headers.get('ce_type')}"
    return named[0]


def record_problems(
    document: Document, *, topic: str, namespace: str, key: str, headers: dict[str, str], value: bytes
) -> list[str]:
    """Every way the record breaks the message the AsyncAPI document declares for its topic."""
    message = message_for_record(document, channel_for_topic(document, topic, namespace), headers)
    problems = [f"header {problem}" for problem in schema_problems(document, f"{message}/headers", headers)]
    problems += [
        f"key {problem}" for problem in schema_problems(document, f"{message}/bindings/kafka/key", key)
    ]
    if _resolve(document, message)["contentType"] == "application/json":
        payload = json.loads(value)
        problems += [
            f"payload {problem}" for problem in schema_problems(document, f"{message}/payload", payload)
        ]
    return problems


def _resolve(document: Document, pointer: str) -> Any:
    node: Any = document
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node
