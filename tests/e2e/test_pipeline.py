"""The whole pipeline: the five service processes on the real servers, driven by the demo's sample data."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli import demo
from cli.kafka_io import CLI_SOURCE
from contracts import Topic
from contracts.topics import SERVICES, STAGE_SERVICES
from shared.settings import Settings
from shared.tracing import trace_id
from tests.e2e.processes import service_processes

pytestmark = pytest.mark.e2e


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, dict[str, int]]]:
    with service_processes(settings, tmp_path) as http_ports:
        yield settings, http_ports


async def test_sample_leads_travel_from_capture_to_won_and_onboarding(
    pipeline: tuple[Settings, dict[str, int]],
) -> None:
    settings, http_ports = pipeline
    outcome = await demo.run_demo(settings, timeout=180)

    missing = [lead for lead in outcome.expected if not outcome.reached(lead)]
    assert not missing, demo.report(outcome)
    emitted = [
        event
        for event in outcome.events
        if event.headers.get("ce_source", "").startswith("/dealflow/")
        and event.headers["ce_source"] != CLI_SOURCE
    ]
    # The same event twice (same deal, type and content) would mean an input was applied twice.
    once_per_deal = Counter(
        (event.key, event.type, json.dumps(event.data, sort_keys=True)) for event in emitted
    )
    assert [item for item, count in once_per_deal.items() if count > 1] == []
    won = [event for event in outcome.events if event.type == "deal.won.v1"]
    assert sorted(event.key for event in won) == ["lead-acme-001", "lead-globex-002", "lead-initech-003"]
    acme = next(event for event in won if event.key == "lead-acme-001")
    assert acme.data is not None
    assert acme.data["amount"] == {"amount_minor": 1580000, "currency": "EUR"}
    assert [visit["stage"] for visit in acme.data["stage_history"]] == [
        "presentation",
        "proposal",
        "negotiation",
        "closing",
    ]
    rejected = [event for event in outcome.events if event.type == "activity.rejected.v1"]
    assert [(event.key, event.data and event.data["reason"]["code"]) for event in rejected] == [
        ("lead-umbrella-004", "deal_closed")
    ]
    [dead] = [event for event in outcome.events if "dlq_error_code" in event.headers]
    assert (dead.headers["dlq_error_code"], dead.headers["dlq_service"]) == ("invalid_json", "prospecting")

    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat, "kcat is needed to read the deal-won topic as a non-Python client (make test installs it)"
    kcat_command = [kcat, "-b", settings.kafka_bootstrap_servers, "-C", "-t", settings.topic(Topic.DEALS_WON)]
    finished = await asyncio.to_thread(
        subprocess.run,
        [*kcat_command, "-e", "-q", "-f", "%k\t%h\t%s\n"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    output = finished.stdout
    rows = [row.split("\t") for row in output.splitlines() if row]
    assert sorted(row[0] for row in rows) == ["lead-acme-001", "lead-globex-002", "lead-initech-003"]
    for key, headers, value in rows:
        assert "ce_type=io.dealflow.deal.won.v1" in headers
        assert "ce_specversion=1.0" in headers
        assert json.loads(value)["deal_id"] == key

    # One trace per deal: the deal-won event continues the trace its lead started in prospecting.
    for event in won:
        [prospect] = [e for e in outcome.events if e.key == event.key and e.type == "prospect.identified.v1"]
        assert trace_id(event.headers["traceparent"]) == trace_id(prospect.headers["traceparent"])

    async with httpx.AsyncClient(timeout=10) as client:
        for service, port in http_ports.items():
            ready = await client.get(f"http://127.0.0.1:{port}/readyz")
            assert ready.status_code == 200, (service, ready.text)
            assert ready.json()["checks"]["partitions_assigned"] > 0
        metrics = (await client.get(f"http://127.0.0.1:{http_ports['proposal']}/metrics")).text
    won_produced = 'dealflow_events_produced_total{service="proposal",type="io.dealflow.deal.won.v1"} 3.0'
    assert won_produced in metrics

    # Right to erasure: every service anonymises the person and confirms (`dealflow erase` waits for all).
    erase = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "erase",
        "jana.novak@acme-robotics.de",
        "--request-id",
        "erasure-e2e",
        env=os.environ | settings.environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    answer = (await asyncio.wait_for(erase.communicate(), 90))[0].decode()
    assert erase.returncode == 0, answer
    anonymised = {  # "N record(s) anonymised", or "0 records found"
        service: int(count.split()[0])
        for service, count in (line.split(maxsplit=1) for line in answer.splitlines())
        if service in SERVICES
    }
    assert set(anonymised) == set(SERVICES), answer
    assert all(anonymised[stage] > 0 for stage in STAGE_SERVICES), answer  # each stage held Jana's deal
