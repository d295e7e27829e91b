"""The committed AsyncAPI document is current, valid for the official parser, and true to the code."""

from __future__ import annotations

import ast
import copy
import importlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contracts import Topic, dead_letter_topic
from contracts.asyncapi import (
    ASYNCAPI_FILE,
    CLOUDEVENTS_HEADERS,
    DEAD_LETTER_HEADERS,
    Document,
    channel_id,
    dead_letter_channel_id,
    document,
    message_id,
    render,
)
from contracts.events import (
    EVENT_TYPES,
    ActivityRejected,
    DeadlineReached,
    ErasureRequested,
    Event,
    PersonalDataErased,
)
from contracts.flows import PARTIES, party
from contracts.topics import SERVICES
from shared.envelope import REQUIRED_ATTRIBUTES, encode
from shared.runtime import StageDefinition
from tests.asyncapi_conformance import record_problems

REPO = Path(__file__).resolve().parents[2]
VALIDATOR = REPO / "tools" / "asyncapi"
SAMPLES = [REPO / "deploy" / "demo" / "leads.jsonl", REPO / "deploy" / "demo" / "activities.jsonl"]
NAMESPACE = "dealflow"


def official_parser(*paths: Path) -> subprocess.CompletedProcess[str]:
    """Runs the official AsyncAPI parser (Node.js, pinned in tools/asyncapi) on documents."""
    node = shutil.which("node")
    assert node is not None, "Node.js 20.17+ is needed to validate the AsyncAPI document"
    assert (VALIDATOR / "node_modules" / "@asyncapi" / "parser").is_dir(), "run `make install`"
    return subprocess.run(
        [node, str(VALIDATOR / "validate.mjs"), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _missing_payload_schema(asyncapi: Document) -> None:
    asyncapi["components"]["messages"]["deal.won.v1"]["payload"] = {"$ref": "#/components/schemas/Nope"}


def _unknown_asyncapi_version(asyncapi: Document) -> None:
    asyncapi["asyncapi"] = "4.0.0"


def _asyncapi_2_operation_action(asyncapi: Document) -> None:
    asyncapi["operations"]["proposal.send.deals_won"]["action"] = "publish"


def _message_of_another_channel(asyncapi: Document) -> None:
    asyncapi["operations"]["proposal.send.deals_won"]["messages"].append(
        {"$ref": "#/channels/deals/messages/deal.lost.v1"}
    )


def _schema_type_not_a_string(asyncapi: Document) -> None:
    asyncapi["components"]["schemas"]["Money"]["type"] = 42


BROKEN_COPIES: dict[str, tuple[Callable[[Document], None], str]] = {
    "missing_payload_schema": (_missing_payload_schema, "invalid-ref"),
    "unknown_asyncapi_version": (_unknown_asyncapi_version, "asyncapi-is-asyncapi"),
    "asyncapi_2_operation_action": (_asyncapi_2_operation_action, "asyncapi-document-resolved"),
    "message_of_another_channel": (
        _message_of_another_channel,
        "asyncapi3-operation-messages-from-referred-channel",
    ),
    "schema_type_not_a_string": (_schema_type_not_a_string, "asyncapi-document-resolved"),
}


@dataclass(frozen=True)
class ParserRun:
    exit_code: int
    verdicts: dict[str, bool]
    """File stem -> whether the parser found it valid."""
    findings: dict[str, list[tuple[str, str]]]
    """File stem -> (severity, code) of every diagnostic."""


@pytest.fixture(scope="module")
def parser_run(tmp_path_factory: pytest.TempPathFactory) -> ParserRun:
    """One run of the official parser over the committed document and every broken copy of it."""
    directory = tmp_path_factory.mktemp("asyncapi")
    paths = [directory / "committed.yaml"]
    paths[0].write_text(ASYNCAPI_FILE.read_text())
    for name, (break_it, _) in BROKEN_COPIES.items():
        broken = copy.deepcopy(document())
        break_it(broken)
        paths.append(directory / f"{name}.yaml")
        paths[-1].write_text(render(broken))
    result = official_parser(*paths)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    findings: dict[str, list[tuple[str, str]]] = {path.stem: [] for path in paths}
    verdicts = {}
    for line in lines:
        stem = Path(line["file"]).stem
        if "valid" in line:
            verdicts[stem] = line["valid"]
        else:
            findings[stem].append((line["severity"], line["code"]))
    assert set(verdicts) == set(findings), result.stdout + result.stderr
    return ParserRun(result.returncode, verdicts, findings)


# --- the committed file ---------------------------------------------------------------------------


def test_committed_asyncapi_document_matches_the_code() -> None:
    assert ASYNCAPI_FILE.read_text() == render(document()), (
        "contracts/asyncapi.yaml differs from the code: run `make schemas` and commit it"
    )


def test_the_official_asyncapi_parser_accepts_the_committed_document(parser_run: ParserRun) -> None:
    failing = [finding for finding in parser_run.findings["committed"] if finding[0] in ("error", "warning")]

    assert failing == []
    assert parser_run.verdicts["committed"] is True


@pytest.mark.parametrize("name", BROKEN_COPIES)
def test_the_official_asyncapi_parser_rejects_a_broken_document(parser_run: ParserRun, name: str) -> None:
    expected_code = BROKEN_COPIES[name][1]

    assert parser_run.verdicts[name] is False
    assert ("error", expected_code) in parser_run.findings[name]
    assert parser_run.exit_code == 1


# --- generated from the code ----------------------------------------------------------------------


def test_every_topic_and_event_type_is_a_channel_and_message() -> None:
    asyncapi = document()

    for topic in Topic:
        assert asyncapi["channels"][channel_id(topic)]["address"] == f"{{namespace}}.{topic}"
    for service in SERVICES:
        channel = asyncapi["channels"][dead_letter_channel_id(service)]
        assert channel["address"] == f"{{namespace}}.{dead_letter_topic(service)}"
    for event_type, model in EVENT_TYPES.items():
        message = asyncapi["components"]["messages"][message_id(event_type)]
        assert message["name"] == event_type
        assert message["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        assert model.__name__ in asyncapi["components"]["schemas"]
        assert model.KEY_FIELD in message["bindings"]["kafka"]["key"]["description"]
        channel_messages = asyncapi["channels"][channel_id(model.TOPIC)]["messages"]
        assert channel_messages[message_id(event_type)] == {
            "$ref": f"#/components/messages/{message_id(event_type)}"
        }


@pytest.fixture
def new_event_model() -> Iterator[type[Event]]:
    """An event type another engineer has just added; unregistered afterwards."""

    class DealStalledForTest(Event):
        TYPE = "deal.stalled_for_test.v1"
        TOPIC = Topic.DEALS

        deal_id: str
        stalled_days: int

    yield DealStalledForTest
    del EVENT_TYPES[DealStalledForTest.TYPE]


def test_a_new_event_model_is_in_the_document_without_editing_the_generator(
    new_event_model: type[Event],
) -> None:
    asyncapi = document()

    assert "deal.stalled_for_test.v1" in asyncapi["channels"]["deals"]["messages"]
    schema = asyncapi["components"]["schemas"]["DealStalledForTest"]
    assert schema["properties"]["stalled_days"]["type"] == "integer"


# --- the records the runtime writes conform to the document ---------------------------------------


def _sample_events() -> list[Event]:
    events = []
    for sample in SAMPLES:
        for line in sample.read_text().splitlines():
            item = json.loads(line)
            events.append(EVENT_TYPES[f"io.dealflow.{item['type']}"].model_validate(item["data"]))
    return events


def test_sample_records_as_the_runtime_encodes_them_conform_to_their_messages() -> None:
    asyncapi = document()
    events = _sample_events()
    trace = {
        "ce_sequence": "0000000003.0001",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "dealflow=1",
    }

    assert len({type(event) for event in events}) >= 10  # leads and activities of every stage
    for event in events:
        record = encode(event, topic=f"{NAMESPACE}.{event.TOPIC}", source="/test", extra_headers=trace)
        problems = record_problems(
            asyncapi,
            topic=record.topic,
            namespace=NAMESPACE,
            key=record.key.decode(),
            headers=record.headers,
            value=record.value,
        )
        assert problems == [], f"{event.TYPE}: {problems}"


def test_every_header_the_runtime_writes_is_declared() -> None:
    asyncapi = document()
    record = encode(_sample_events()[0], topic="t", source="/test", extra_headers={"ce_sequence": "x"})

    declared = asyncapi["components"]["schemas"][CLOUDEVENTS_HEADERS]
    assert set(record.headers) <= set(declared["properties"])
    assert set(declared["required"]) == set(REQUIRED_ATTRIBUTES)


@pytest.mark.parametrize("attribute", REQUIRED_ATTRIBUTES)
def test_a_record_without_a_required_cloudevents_attribute_does_not_conform(attribute: str) -> None:
    event = _sample_events()[0]
    record = encode(event, topic=f"{NAMESPACE}.{event.TOPIC}", source="/test")
    headers = {name: value for name, value in record.headers.items() if name != attribute}

    problems = record_problems(
        document(),
        topic=record.topic,
        namespace=NAMESPACE,
        key=record.key.decode(),
        headers=headers,
        value=record.value,
    )

    assert any(attribute in problem for problem in problems)


def test_a_record_with_a_wrong_key_or_payload_does_not_conform() -> None:
    event = _sample_events()[0]
    record = encode(event, topic=f"{NAMESPACE}.{event.TOPIC}", source="/test")
    common = {"document": document(), "topic": record.topic, "namespace": NAMESPACE}

    bad_key = record_problems(**common, key="not a key!", headers=record.headers, value=record.value)
    bad_payload = record_problems(**common, key=record.key.decode(), headers=record.headers, value=b"{}")

    assert [problem for problem in bad_key if problem.startswith("key")] != []
    assert [problem for problem in bad_payload if problem.startswith("payload")] != []


# --- who sends and receives what: the declaration in contracts/flows.py matches the services --------


def _service_definition(service: str) -> StageDefinition:
    definition: StageDefinition = importlib.import_module(f"services.{service}.service").definition()
    return definition


def _constructed_in(service: str) -> tuple[set[type[Event]], bool]:
    """The event types the service's code constructs, and whether it raises RuleBroken anywhere."""
    by_name = {model.__name__: model for model in EVENT_TYPES.values()}
    constructed: set[type[Event]] = set()
    breaks_rules = False
    for path in (REPO / "services" / service).glob("**/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in by_name:
                constructed.add(by_name[name])
            breaks_rules = breaks_rules or name == "RuleBroken"
    return constructed, breaks_rules


def test_every_service_is_a_declared_party() -> None:
    assert set(SERVICES) <= {declared.name for declared in PARTIES}


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_receives_exactly_what_it_declares(service: str) -> None:
    # The shared runtime answers erasure requests itself, in every service.
    handled = set(_service_definition(service).handlers) | {ErasureRequested}

    assert set(party(service).receives) == handled, (
        f"declare what {service} handles in contracts/flows.py, then run `make schemas`"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_sends_exactly_what_it_declares(service: str) -> None:
    constructed, breaks_rules = _constructed_in(service)
    # The shared runtime emits these for the service: rule breaks as rejections, deadlines as events,
    # and the confirmation of every erasure request.
    constructed.add(PersonalDataErased)
    if breaks_rules:
        constructed.add(ActivityRejected)
    if _service_definition(service).deadlines is not None:
        constructed.add(DeadlineReached)

    assert set(party(service).sends) == constructed, (
        f"declare what {service} emits in contracts/flows.py, then run `make schemas`"
    )


def test_every_event_type_has_a_sender_and_a_receiver() -> None:
    sent = set().union(*(declared.sends for declared in PARTIES))
    received = set().union(*(declared.receives for declared in PARTIES))

    assert [t for t, model in EVENT_TYPES.items() if model not in sent] == []
    assert [t for t, model in EVENT_TYPES.items() if model not in received] == []


def test_operations_name_the_party_and_only_messages_of_their_channel() -> None:
    asyncapi = document()

    for operation_id, operation in asyncapi["operations"].items():
        party_name, action, channel = operation_id.split(".")
        assert operation["action"] == action
        assert operation["channel"] == {"$ref": f"#/channels/{channel}"}
        assert operation["tags"] == [{"$ref": f"#/components/tags/{party_name}"}]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"#/channels/{channel}/messages/")
    for declared in PARTIES:
        for model in declared.sends:
            operation = asyncapi["operations"][f"{declared.name}.send.{channel_id(model.TOPIC)}"]
            ref = f"#/channels/{channel_id(model.TOPIC)}/messages/{message_id(model.TYPE)}"
            assert {"$ref": ref} in operation["messages"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_sends_its_dead_letters_and_ops_reads_them(service: str) -> None:
    asyncapi = document()
    channel = dead_letter_channel_id(service)
    dlq_services = asyncapi["components"]["schemas"][DEAD_LETTER_HEADERS]["properties"]["dlq_service"]

    assert asyncapi["operations"][f"{service}.send.{channel}"]["action"] == "send"
    assert asyncapi["operations"][f"ops.receive.{channel}"]["action"] == "receive"
    assert service in dlq_services["enum"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_receives_erasure_requests_and_confirms_them(service: str) -> None:
    operations = document()["operations"]
    privacy = channel_id(Topic.PRIVACY)

    def message_ref(model: type[Event]) -> dict[str, str]:
        return {"$ref": f"#/channels/{privacy}/messages/{message_id(model.TYPE)}"}

    assert message_ref(ErasureRequested) in operations[f"{service}.receive.{privacy}"]["messages"]
    assert message_ref(PersonalDataErased) in operations[f"{service}.send.{privacy}"]["messages"]
