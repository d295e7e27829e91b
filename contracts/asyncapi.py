"""The AsyncAPI 3.0 document of the whole system, generated from the contracts (`make schemas`).

Everything in it comes from code: a channel per `Topic` and per service's dead-letter topic, a
message per registered event type with its pydantic payload schema, CloudEvents headers and Kafka key,
and the send and receive operations of every party declared in `contracts.flows`. A new event model,
topic or party therefore appears after `make schemas` without touching this module.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from contracts.events import EVENT_TYPE_PREFIX, EVENT_TYPES, Event
from contracts.flows import PARTIES, Party
from contracts.topics import SERVICES, Topic, dead_letter_topic

ASYNCAPI_FILE = Path(__file__).resolve().parent / "asyncapi.yaml"
ASYNCAPI_VERSION = "3.0.0"
# The version of the contract as a whole; each topic and event type carries its own major version too.
CONTRACT_VERSION = "1.1.0"
KAFKA_BINDING_VERSION = "0.5.0"
DEFAULT_NAMESPACE = "dealflow"
CLOUDEVENTS_HEADERS = "CloudEventsHeaders"
DEAD_LETTER_HEADERS = "DeadLetterHeaders"
DEAD_LETTER_MESSAGE = "dead_letter"
GENERATED_NOTICE = (
    "# Generated from contracts/ by `make schemas` (python -m contracts.asyncapi): do not edit.\n"
)

Document = dict[str, Any]

DESCRIPTION = """\
dealflow runs a company's B2B sales process as events on Apache Kafka: leads are captured, scored and
routed (prospecting), qualified (qualification), taken through quotes to won or lost (proposal), and
onboarded (onboarding).

Every record is a [CloudEvents 1.0](https://cloudevents.io) event in Kafka *binary content mode*: the
attributes are `ce_*` headers, the record value is the JSON `data`, and the record key is the partition
key (the deal id; the lead id for lead events), so one partition, and one consumer, sees a deal in order.

Time is business time: an event's CloudEvents `time` (and its time field, e.g. `changed_at`, `won_at`)
is when what it records happened: an activity's `occurred_at`, and for an event a service derives, the
business time of what caused it (a deadline's `due_at` for what a deadline causes), never the moment the
service processed it, which it carries in `recordedtime` (header `ce_recordedtime`, the CloudEvents
recorded-time extension). The processing clock only decides that a deadline is due, and refuses an
upstream time it finds implausible: an activity (or a lead's `captured_at`) dated more than the stage
playbook's `business_time.clock_skew_seconds` ahead of it is answered with `occurred_in_future`, one more
than `business_time.max_age_days` old with `occurred_too_long_ago` (activity.rejected, or lead.rejected).

Topic names are prefixed with the deployment's namespace (`DEALFLOW_NAMESPACE`, default `dealflow`).
Delivery is at least once: deduplicate by `ce_source` + `ce_id`. Within a version, changes are additive
only (new optional fields); ignore fields you do not know."""


def message_id(event_type: str) -> str:
    return event_type.removeprefix(EVENT_TYPE_PREFIX)


def channel_id(topic: Topic) -> str:
    return topic.name.lower()


def dead_letter_channel_id(service: str) -> str:
    return f"deadletter_{service}"


def document() -> Document:
    """The AsyncAPI 3.0 document, as plain data ready for YAML or JSON."""
    events = [model for _, model in sorted(EVENT_TYPES.items())]
    payload_refs, definitions = models_json_schema(
        [(model, "serialization") for model in events], ref_template="#/components/schemas/{model}"
    )
    schemas = {
        CLOUDEVENTS_HEADERS: _cloudevents_headers(),
        DEAD_LETTER_HEADERS: _dead_letter_headers(),
        **definitions.get("$defs", {}),
    }
    messages: Document = {
        message_id(model.TYPE): _event_message(model, payload_refs[(model, "serialization")])
        for model in events
    }
    messages[DEAD_LETTER_MESSAGE] = _dead_letter_message()
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:dev:dealflow",
        "info": {
            "title": "dealflow",
            "version": CONTRACT_VERSION,
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": _servers(),
        "channels": {**_event_channels(events), **_dead_letter_channels()},
        "operations": _operations(),
        "components": {
            "schemas": schemas,
            "messages": messages,
            "parameters": {
                "namespace": {
                    "description": "The deployment's namespace (`DEALFLOW_NAMESPACE`), "
                    "which prefixes every topic, consumer group and database.",
                    "default": DEFAULT_NAMESPACE,
                    "examples": [DEFAULT_NAMESPACE],
                }
            },
            "securitySchemes": {
                "scramSha512": {
                    "type": "scramSha512",
                    "description": "SASL/SCRAM-SHA-512 authentication over a TLS connection.",
                }
            },
            "tags": {party.name: {"name": party.name, "description": party.description} for party in PARTIES},
        },
    }


def _servers() -> Document:
    return {
        "local": {
            "host": "127.0.0.1:9092",
            "protocol": "kafka",
            "protocolVersion": "4.1",
            "title": "Local broker",
            "description": "The single-node KRaft broker that `make infra-up` starts: plaintext, "
            "loopback only.",
        },
        "production": {
            "host": "{bootstrap_server}",
            "protocol": "kafka-secure",
            "title": "Production cluster",
            "description": "A production cluster (`KAFKA_BOOTSTRAP_SERVERS`): TLS, "
            "authenticated with SASL/SCRAM-SHA-512.",
            "variables": {
                "bootstrap_server": {
                    "description": "host:port of a broker's TLS listener.",
                    "default": "kafka.example.com:9093",
                }
            },
            "security": [{"$ref": "#/components/securitySchemes/scramSha512"}],
        },
    }


def _namespaced(topic_name: str) -> str:
    return "{namespace}." + topic_name


def _event_channels(events: list[type[Event]]) -> Document:
    by_topic = _by_topic(events)
    return {
        channel_id(topic): {
            "address": _namespaced(str(topic)),
            "title": str(topic),
            "messages": {
                message_id(model.TYPE): {"$ref": f"#/components/messages/{message_id(model.TYPE)}"}
                for model in by_topic.get(topic, [])
            },
            "parameters": {"namespace": {"$ref": "#/components/parameters/namespace"}},
            "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING_VERSION}},
        }
        for topic in Topic
    }


def _dead_letter_channels() -> Document:
    return {
        dead_letter_channel_id(service): {
            "address": _namespaced(dead_letter_topic(service)),
            "title": dead_letter_topic(service),
            "description": f"Records the {service} service can never process, with the reason.",
            "messages": {DEAD_LETTER_MESSAGE: {"$ref": f"#/components/messages/{DEAD_LETTER_MESSAGE}"}},
            "parameters": {"namespace": {"$ref": "#/components/parameters/namespace"}},
            "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING_VERSION}},
        }
        for service in SERVICES
    }


def _summary(model: type[Event]) -> str | None:
    # Only the model's own docstring: a subclass without one must not repeat its base class's.
    doc = model.__dict__.get("__doc__")
    return " ".join(doc.split("\n\n")[0].split()) if doc else None


def _key_schema(model: type[Event]) -> Document:
    field_schema = model.model_json_schema(mode="serialization")["properties"][model.KEY_FIELD]
    key = {name: value for name, value in field_schema.items() if name not in ("title", "description")}
    return {
        **key,
        "description": f"The event's `{model.KEY_FIELD}`, UTF-8: the partition key, so one partition "
        "sees all of its events in order.",
    }


def _event_message(model: type[Event], payload_ref: Document) -> Document:
    message: Document = {
        "name": model.TYPE,
        "title": model.__name__,
    }
    summary = _summary(model)
    if summary:
        message["summary"] = summary
    message |= {
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "allOf": [{"$ref": f"#/components/schemas/{CLOUDEVENTS_HEADERS}"}],
            "properties": {
                "ce_type": {"type": "string", "const": model.TYPE},
                "ce_subject": {"type": "string", "description": f"The event's `{model.KEY_FIELD}`."},
            },
        },
        "payload": payload_ref,
        "bindings": {"kafka": {"key": _key_schema(model), "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    return message


def _cloudevents_headers() -> Document:
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes in Kafka binary content mode, and W3C trace context.",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {
                "type": "string",
                "minLength": 1,
                "description": "Unique per event from one source; a redelivered copy keeps it, so "
                "deduplicate by `ce_source` + `ce_id`.",
            },
            "ce_source": {
                "type": "string",
                "minLength": 1,
                "description": "Who sent it: `/dealflow/<service>` for the services.",
                "examples": ["/dealflow/proposal"],
            },
            "ce_type": {"type": "string", "description": "`io.dealflow.<event>.v<major>`"},
            "ce_time": {
                "type": "string",
                "format": "date-time",
                "description": "RFC 3339. When what the event records happened (business time): on "
                "events the services emit, the business time of their cause (an activity's "
                "`occurred_at`, a deadline's `due_at`); on a lead without `captured_at`, its capture.",
            },
            "ce_recordedtime": {
                "type": "string",
                "format": "date-time",
                "description": "On events the services emit: RFC 3339, when the service processed "
                "their cause and made them (CloudEvents recorded-time extension), its processing time.",
            },
            "ce_subject": {"type": "string", "description": "The partition key (also the record key)."},
            "ce_sequence": {
                "type": "string",
                "pattern": r"^[0-9]{10}\.[0-9]{4}$",
                "description": "On events the services emit: orders a deal's events from one "
                "stage (CloudEvents sequence extension); a gap shows loss.",
            },
            "content-type": {
                "type": "string",
                "pattern": r"^application/json\s*(;.*)?$",
                "default": "application/json",
            },
            "traceparent": {
                "type": "string",
                "pattern": r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C Trace Context: the trace this event belongs to.",
            },
            "tracestate": {
                "type": "string",
                "maxLength": 512,
                "description": "W3C Trace Context: vendor-specific trace data.",
            },
        },
    }


def _dead_letter_headers() -> Document:
    return {
        "type": "object",
        "description": "The original record's headers, unchanged, plus the reason it was dead-lettered. "
        "A header whose value was not UTF-8 is kept hex-encoded as `dlq_undecodable_header_<name>`.",
        "required": [
            "dlq_error_code",
            "dlq_error",
            "dlq_source_topic",
            "dlq_source_partition",
            "dlq_source_offset",
            "dlq_service",
            "dlq_time",
        ],
        "properties": {
            "dlq_error_code": {
                "type": "string",
                "description": "Machine-readable reason.",
                "examples": ["invalid_json", "schema_violation", "unknown_event_type", "processing_error"],
            },
            "dlq_error": {"type": "string", "maxLength": 2000, "description": "What exactly is wrong."},
            "dlq_source_topic": {"type": "string", "description": "Where the record was read."},
            "dlq_source_partition": {"type": "string", "pattern": "^[0-9]+$"},
            "dlq_source_offset": {"type": "string", "pattern": "^[0-9]+$"},
            "dlq_service": {"type": "string", "enum": list(SERVICES)},
            "dlq_time": {"type": "string", "format": "date-time"},
        },
        "patternProperties": {"^dlq_undecodable_header_": {"type": "string", "pattern": "^[0-9a-f]*$"}},
        "additionalProperties": {"type": "string"},
    }


def _dead_letter_message() -> Document:
    return {
        "name": "dead_letter",
        "title": "Dead letter",
        "summary": "A record a service can never process: its original key, value and headers, "
        "untouched, plus `dlq_*` headers saying why. `dealflow deadletters redrive` sends it back.",
        "contentType": "application/octet-stream",
        "headers": {"$ref": f"#/components/schemas/{DEAD_LETTER_HEADERS}"},
        "payload": {"description": "The original record value, byte for byte (it may not be JSON)."},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The original record's key (empty if it had none)."},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _operations() -> Document:
    operations: Document = {}
    for party in PARTIES:
        for action, events in (("send", party.sends), ("receive", party.receives)):
            for topic, models in _by_topic(events).items():
                messages = [message_id(model.TYPE) for model in models]
                operations[f"{party.name}.{action}.{channel_id(topic)}"] = _operation(
                    party, action, channel_id(topic), messages
                )
        if party.is_service:
            channel = dead_letter_channel_id(party.name)
            operations[f"{party.name}.send.{channel}"] = _operation(
                party, "send", channel, [DEAD_LETTER_MESSAGE]
            )
    for party in PARTIES:
        if party.receives_dead_letters:
            for service in SERVICES:
                channel = dead_letter_channel_id(service)
                operations[f"{party.name}.receive.{channel}"] = _operation(
                    party, "receive", channel, [DEAD_LETTER_MESSAGE]
                )
    return operations


def _by_topic(events: Iterable[type[Event]]) -> dict[Topic, list[type[Event]]]:
    """The events grouped by topic, in the Topic enum's order, each group sorted by type."""
    ordered = sorted(events, key=lambda model: model.TYPE)
    grouped = {topic: [model for model in ordered if topic == model.TOPIC] for topic in Topic}
    return {topic: models for topic, models in grouped.items() if models}


def _operation(party: Party, action: str, channel: str, messages: list[str]) -> Document:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": f"{party.name} {action}s {', '.join(messages)}",
        "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"} for message in messages],
        "tags": [{"$ref": f"#/components/tags/{party.name}"}],
    }


class _Dumper(yaml.SafeDumper):
    """Writes multi-line text as YAML block scalars, so descriptions read as they were written."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _represent_text)


def render(asyncapi: Document) -> str:
    body = yaml.dump(asyncapi, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
    return GENERATED_NOTICE + body


def main() -> None:
    ASYNCAPI_FILE.write_text(render(document()))
    print(f"wrote {ASYNCAPI_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
