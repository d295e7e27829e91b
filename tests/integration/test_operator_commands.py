"""The operator's `dealflow` commands on the real servers: reading dead letters creates nothing, a dead letter
is shown and re-driven (unchanged after a fix, or with an edited payload) and then applied, and `erase`
reports what each service actually found."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from click.testing import Result
from typer.testing import CliRunner

from cli.kafka_io import SeenEvent, follow, publish, read_all
from cli.main import app as cli
from contracts import Topic, dead_letter_topic
from services.prospecting.service import definition as prospecting
from shared.envelope import KafkaRecord, encode
from shared.kafka import client_options, ensure_topics, running
from shared.settings import Settings
from tests.integration.helpers import events_when, fit_lead, of_type
from tests.integration.helpers import running as stage_running

pytestmark = pytest.mark.integration


async def dealflow(settings: Settings, *args: str, env: dict[str, str] | None = None) -> Result:
    """The command as an operator runs it, against this test's servers and namespace."""
    return await asyncio.to_thread(
        CliRunner().invoke, cli, list(args), env=settings.environment() | {"COLUMNS": "300"} | (env or {})
    )


async def namespace_topics(settings: Settings) -> set[str]:
    async with running(AIOKafkaAdminClient(**client_options(settings))) as admin:
        return {topic for topic in await admin.list_topics() if topic.startswith(f"{settings.namespace}.")}


async def namespace_groups(settings: Settings) -> set[str]:
    async with running(AIOKafkaAdminClient(**client_options(settings))) as admin:
        groups = await admin.list_consumer_groups()
    return {group for group, *_ in groups if group.startswith(f"{settings.namespace}.")}


async def follow_for(settings: Settings, topics: list[str], *, seconds: float) -> list[SeenEvent]:
    """What `dealflow follow --from-beginning` prints in that time."""
    seen: list[SeenEvent] = []

    async def read() -> None:
        async for event in follow(settings, topics, from_beginning=True):
            seen.append(event)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), seconds)
    return seen


def dead_letters(events: list[SeenEvent]) -> list[SeenEvent]:
    return [event for event in events if "dlq_service" in event.headers]


async def test_reading_dead_letters_creates_no_topic_and_no_consumer_group(settings: Settings) -> None:
    unknown = await dealflow(settings, "deadletters", "list", "--service", "nope")
    assert unknown.exit_code == 2, unknown.output
    assert "unknown service 'nope': use one of prospecting, qualification" in unknown.output

    not_started = await dealflow(settings, "deadletters", "list", "--service", "qualification")
    assert not_started.exit_code == 1, not_started.output
    missing = settings.topic(dead_letter_topic("qualification"))
    assert f"no dead-letter topic {missing}" in not_started.output
    assert "qualification has not run in namespace" in not_started.output
    shown = await dealflow(settings, "deadletters", "show", "qualification:0:0")
    assert shown.exit_code == 1
    assert f"no dead-letter topic {missing}" in shown.output
    assert await namespace_topics(settings) == set()

    # With one service's dead-letter topic there: it is listed, and nothing else appears.
    prospecting_dlq = settings.topic(dead_letter_topic("prospecting"))
    await ensure_topics(settings, [prospecting_dlq])
    listed = await dealflow(settings, "deadletters", "list")
    assert listed.exit_code == 0, listed.output
    assert "0 dead letter(s)" in listed.stdout
    assert f"no dead-letter topic {missing}" in listed.stderr
    await follow_for(settings, [prospecting_dlq, settings.topic(Topic.LEADS)], seconds=3)
    assert await namespace_topics(settings) == {prospecting_dlq}
    assert await namespace_groups(settings) == set()


def broken_lead(settings: Settings) -> KafkaRecord:
    """A lead with proper headers whose payload breaks the contract, sent under a key that is not its id."""
    proper = encode(
        fit_lead("lead-redriven"), topic=settings.topic(Topic.LEADS), source="/crm", event_id="crm-1"
    )
    payload = json.loads(proper.value) | {"employees": [250]}
    return KafkaRecord(proper.topic, b"crm-row-17", json.dumps(payload).encode(), proper.headers)


async def test_a_schema_violation_is_shown_fixed_redriven_and_then_applied(
    settings: Settings, tmp_path: Path
) -> None:
    async with stage_running(prospecting(), settings):
        await publish(settings, [broken_lead(settings)])
        [dead] = dead_letters(await events_when(settings, lambda seen: dead_letters(seen) != []))
        assert dead.headers["dlq_error_code"] == "schema_violation"

        # `show` by service and offset alone: the dead-letter topic has one record, in one partition.
        shown = await dealflow(settings, "deadletters", "show", "--service", "prospecting", "--offset", "0")
        assert shown.exit_code == 0, shown.output
        assert f"position   prospecting:{dead.partition}:0" in shown.output
        assert "key        crm-row-17" in shown.output
        assert "  ce_id: crm-1" in shown.output
        assert "  dlq_error_code: schema_violation" in shown.output
        assert '"employees": [\n    250\n  ]' in shown.output

        where = f"prospecting:{dead.partition}:{dead.offset}"
        exported = await dealflow(settings, "deadletters", "show", where, "--payload-only")
        payload = json.loads(exported.stdout)

        # An edit that is still wrong is refused field by field, and nothing is sent.
        still_wrong = tmp_path / "still-wrong.json"
        still_wrong.write_text(json.dumps({key: value for key, value in payload.items() if key != "email"}))
        refused = await dealflow(settings, "deadletters", "redrive", where, "--payload", str(still_wrong))
        assert refused.exit_code == 1, refused.output
        assert "email: Field required" in refused.output
        assert "employees.int: Input should be a valid integer" in refused.output
        leads = [settings.topic(Topic.LEADS)]
        assert len(await read_all(settings, leads)) == 1

        # The same fix made in $EDITOR, checked with --dry-run: shown, not sent.
        editor = tmp_path / "editor.py"
        editor.write_text(
            "import json, pathlib, sys\n"
            "path = pathlib.Path(sys.argv[1])\n"
            "path.write_text(json.dumps(json.loads(path.read_text()) | {'employees': 250}))\n"
        )
        dry = await dealflow(
            settings,
            "deadletters",
            "redrive",
            where,
            "--edit",
            "--dry-run",
            env={"EDITOR": f"{sys.executable} {editor}"},
        )
        assert dry.exit_code == 0, dry.output
        assert "key        lead-redriven" in dry.output
        assert '"employees": 250' in dry.output
        assert "dry run: nothing was sent" in dry.output
        assert len(await read_all(settings, leads)) == 1

        fixed = tmp_path / "fixed.json"
        fixed.write_text(json.dumps(payload | {"employees": 250}))
        redriven = await dealflow(settings, "deadletters", "redrive", where, "--payload", str(fixed))
        assert redriven.exit_code == 0, redriven.output
        assert f"to {settings.topic(Topic.LEADS)}: key lead-redriven, ce_id crm-1 (kept)" in redriven.output
        events = await events_when(settings, lambda seen: of_type(seen, "prospect.identified.v1") != [])

    [prospect] = of_type(events, "prospect.identified.v1")
    assert prospect.data is not None
    assert (prospect.data["lead_id"], prospect.data["company"]["employees"]) == ("lead-redriven", 250)
    original, sent = await read_all(settings, leads)
    assert sent.key == "lead-redriven"  # the payload's partition key, not the key it first came with
    assert not [name for name in sent.headers if name.startswith("dlq_")]
    assert {name: sent.headers[name] for name in ("ce_id", "ce_source", "ce_time", "ce_type")} == {
        name: original.headers[name] for name in ("ce_id", "ce_source", "ce_time", "ce_type")
    }
    assert len(dead_letters(events)) == 1  # the re-driven record was not dead-lettered again


async def test_a_dead_letter_is_redriven_unchanged_once_its_cause_is_fixed(settings: Settings) -> None:
    lead = fit_lead("lead-large").model_copy(
        update={"technologies": ["salesforce", *(f"tool-{n:02d}-{'x' * 40}" for n in range(25))]}
    )
    record = encode(lead, topic=settings.topic(Topic.LEADS), source="/crm", event_id="large-1")
    assert len(record.value) > 1024
    async with stage_running(prospecting(), settings.model_copy(update={"max_event_bytes": 1024})):
        await publish(settings, [record])
        [dead] = dead_letters(await events_when(settings, lambda seen: dead_letters(seen) != []))
    assert dead.headers["dlq_error_code"] == "oversized_payload"

    # The fix: the limit is raised. The dead letter then goes back as it was, and is applied.
    async with stage_running(prospecting(), settings):
        redriven = await dealflow(
            settings, "deadletters", "redrive", f"prospecting:{dead.partition}:{dead.offset}"
        )
        assert redriven.exit_code == 0, redriven.output
        assert "re-drove 1 record(s)" in redriven.output
        events = await events_when(settings, lambda seen: of_type(seen, "prospect.identified.v1") != [])

    assert [event.key for event in of_type(events, "prospect.identified.v1")] == ["lead-large"]
    original, sent = await read_all(settings, [settings.topic(Topic.LEADS)])
    assert (sent.key, sent.value) == (original.key, original.value)
    # FastStream adds a correlation_id to the dead letter it publishes; every other header is the original's.
    assert {
        name: value for name, value in sent.headers.items() if name != "correlation_id"
    } == original.headers
    # Finding the dead letter read no other service's dead-letter topic into existence.
    assert settings.topic(dead_letter_topic("qualification")) not in await namespace_topics(settings)


async def test_erase_says_0_records_found_and_who_did_not_answer(settings: Settings) -> None:
    async with stage_running(prospecting(), settings):
        answer = await dealflow(
            settings, "erase", "nobody@example.com", "--request-id", "erasure-none", "--timeout", "8"
        )

    assert answer.exit_code == 1, answer.output
    lines = answer.output.splitlines()
    assert "prospecting     0 records found" in lines
    assert "qualification   no answer" in lines
    assert lines[-1].startswith("erasure-none: no answer from qualification, proposal, onboarding, insights")
    assert "erased everywhere" not in answer.output


async def test_publish_names_each_bad_line_publishes_the_good_ones_and_fails(
    settings: Settings, tmp_path: Path
) -> None:
    good = fit_lead("lead-published").model_dump(mode="json", exclude_none=True)
    path = tmp_path / "leads.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"type": "lead.captured.v1", "data": {**good, "compnay_name": "typo"}}),
                json.dumps({"type": "lead.captured.v1", "data": {"lead_id": "lead-without-email"}}),
                "{not json",
            ]
        )
        + "\n"
    )
    result = await dealflow(settings, "publish", str(path))
    assert result.exit_code == 1
    assert "line 1: compnay_name: not a field of lead.captured.v1: ignored" in result.output
    assert "line 2: email: Field required" in result.output
    assert "line 3: not valid JSON" in result.output
    assert "published 1 event; 2 lines left out" in result.output
    assert "Traceback" not in result.output
    leads = await read_all(settings, [settings.topic(Topic.LEADS)])
    assert [event.key for event in leads] == ["lead-published"]
