"""The fault suite: the four services under a steady stream of scripted deals, one fault per scenario.

Pass means every deal reaches exactly its expected events (each stage event once per deal, counted by
event id; copies of an id are re-publications that consumers absorb), every bad input is dead-lettered
with a reason, no consumer is stuck, and a full replay changes no state and emits nothing new.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError

from cli.kafka_io import make_producer
from cli.workload import ScriptedDeal, Verification, scripted_deals, verify
from contracts import Topic
from contracts.topics import STAGE_SERVICES
from shared.envelope import KafkaRecord
from shared.kafka import rewind_group, running
from shared.mongo import make_client, service_database
from shared.settings import Settings
from tests.fault.harness import (
    SCENARIO_REPORT,
    Observer,
    Pipeline,
    consumer_lag,
    infra,
    input_topics,
    stream,
)

pytestmark = pytest.mark.fault

DEALS = 600  # about 3,000 input events
RATE = 60  # deals per second: a 10 s stream, faults land in the middle of it
QUIESCENCE_TIMEOUT = 240
LOCAL_SERVERS = "KAFKA_BOOTSTRAP_SERVERS" not in os.environ and "MONGODB_URI" not in os.environ


@dataclass
class Run:
    settings: Settings
    pipeline: Pipeline
    observer: Observer
    deals: list[ScriptedDeal]


@pytest.fixture
async def run(settings: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Run]:
    pipeline = Pipeline(settings, tmp_path)
    pipeline.start()
    prefix = request.node.name.removeprefix("test_")[:20].replace("_", "-")
    try:
        async with Observer(settings) as observer:
            yield Run(settings, pipeline, observer, scripted_deals(DEALS, prefix=prefix, seed=len(prefix)))
    finally:
        pipeline.stop()


async def quiescent(run: Run) -> Verification:
    """Wait until every deal has its expected events and every consumer group has caught up."""
    deadline = time.monotonic() + QUIESCENCE_TIMEOUT
    while True:
        result = verify(run.deals, run.observer.events)
        if result.ok and await _no_lag(run.settings):
            await asyncio.sleep(2)  # anything emitted twice would arrive by now
            return verify(run.deals, run.observer.events)
        if time.monotonic() > deadline:
            return result
        await asyncio.sleep(1)


async def _no_lag(settings: Settings) -> bool:
    try:
        lags = [
            await consumer_lag(settings, service, input_topics(settings, service))
            for service in STAGE_SERVICES
        ]
    except KafkaError:  # the broker is still coming back: not caught up yet
        return False
    return all(lag == 0 for lag in lags)


def report(scenario: str, inputs: int, result: Verification, run: Run, recovery: float | None) -> None:
    dead = [event for event in run.observer.events if "dlq_error_code" in event.headers]
    line = (
        f"{scenario:<28} inputs={inputs:<6} verified={result.verified}/{result.deals:<6} "
        f"copies_absorbed_downstream={result.redelivered_copies:<4} "
        f"duplicates_absorbed_by_services={run.pipeline.log_count('duplicate_absorbed'):<4} "
        f"dead_letters={len(dead):<4} time_to_recover=" + ("-" if recovery is None else f"{recovery:.1f}s")
    )
    SCENARIO_REPORT.append(line)


def assert_passed(result: Verification, run: Run) -> None:
    assert result.ok, f"{len(result.wrong)} deals wrong, e.g. {list(result.wrong.items())[:3]}"
    assert run.pipeline.dead() == [], f"services died: {run.pipeline.dead()}"


async def test_kill_9_of_each_service_in_turn(run: Run) -> None:
    streaming = asyncio.create_task(stream(run.settings, run.deals, deals_per_second=RATE))
    recoveries = []
    for service in STAGE_SERVICES:
        await asyncio.sleep(2)
        run.pipeline.kill9(service)
        await asyncio.sleep(2)
        run.pipeline.start(service)
        restarted = time.monotonic()
        recoveries.append((restarted, service))
    inputs = await streaming
    result = await quiescent(run)
    times = [
        (run.observer.first_output_after(moment, service) or moment) - moment
        for moment, service in recoveries
    ]
    report("kill -9 each service", inputs, result, run, max(times))
    assert_passed(result, run)


@pytest.mark.skipif(
    not LOCAL_SERVERS, reason="restarts the local servers; servers named by the environment are not ours"
)
@pytest.mark.parametrize(("server", "scenario"), [("kafka", "kafka"), ("ferretdb", "database")])
async def test_server_stopped_and_restarted(run: Run, server: str, scenario: str) -> None:
    streaming = asyncio.create_task(stream(run.settings, run.deals, deals_per_second=RATE))
    await asyncio.sleep(4)
    try:
        await infra("down", server)
        await asyncio.sleep(5)
    finally:  # the tests after this one need the server
        await infra("up", server)
    restarted = time.monotonic()
    inputs = await streaming
    result = await quiescent(run)
    report(f"{scenario} stopped + restarted", inputs, result, run, _since(run, restarted))
    assert_passed(result, run)


def _since(run: Run, moment: float) -> float | None:
    first = run.observer.first_output_after(moment)
    return None if first is None else first - moment


def bad_inputs(settings: Settings) -> list[KafkaRecord]:
    """One of each kind of bad record, each under its own key so its dead letter can be found."""
    rng = random.Random(42)
    good = {
        "ce_specversion": "1.0",
        "ce_source": "/fault-test",
        "ce_type": "io.dealflow.lead.captured.v1",
        "content-type": "application/json",
    }
    lead = json.dumps({"lead_id": "x", "email": "a@b.example"}).encode()
    cases: dict[str, tuple[str, bytes, dict[str, str]]] = {
        "truncated-json": (Topic.LEADS, lead[:15], good),
        "invalid-json": (
            Topic.ACTIVITIES,
            b"{'single': quotes}",
            good | {"ce_type": "io.dealflow.activity.demo_held.v1"},
        ),
        "wrong-types": (Topic.LEADS, json.dumps({"lead_id": ["x"], "email": 5}).encode(), good),
        "missing-fields": (
            Topic.ACTIVITIES,
            b"{}",
            good | {"ce_type": "io.dealflow.activity.proposal_sent.v1"},
        ),
        "unknown-type": (Topic.LEADS, lead, good | {"ce_type": "io.dealflow.lead.teleported.v1"}),
        "oversized": (Topic.LEADS, b'{"lead_id": "x", "pad": "' + b"x" * 2_000_000 + b'"}', good),
        "wrong-content-type": (Topic.LEADS, lead, good | {"content-type": "application/xml"}),
        "random-bytes": (Topic.ACTIVITIES, rng.randbytes(200), {}),
        "no-cloudevents-headers": (Topic.LEADS, lead, {"content-type": "application/json"}),
    }
    return [
        KafkaRecord(
            topic=settings.topic(topic),
            key=f"bad-{name}".encode(),
            value=value,
            headers=headers | ({"ce_id": f"bad-{name}"} if headers else {}),
        )
        for name, (topic, value, headers) in cases.items()
    ]


async def test_bad_inputs_among_good_ones(run: Run) -> None:
    bad = bad_inputs(run.settings)
    inputs = await stream(run.settings, run.deals, deals_per_second=RATE, extra=bad)
    result = await quiescent(run)
    dead = [event for event in run.observer.events if "dlq_error_code" in event.headers]
    report("bad inputs among good", inputs, result, run, None)
    assert_passed(result, run)
    dead_keys = {event.key: event.headers["dlq_error_code"] for event in dead}
    assert set(dead_keys) == {record.key.decode() for record in bad}, dead_keys
    assert dead_keys["bad-oversized"] == "oversized_payload"
    assert dead_keys["bad-unknown-type"] == "unknown_event_type"
    assert dead_keys["bad-wrong-content-type"] == "unsupported_content_type"
    assert all(event.headers.get("dlq_error") for event in dead)
    oversized = next(event for event in dead if event.key == "bad-oversized")
    assert len(oversized.value) > 2_000_000, "the dead letter keeps the original bytes"


async def test_full_replay_changes_nothing(run: Run) -> None:
    await stream(run.settings, run.deals, deals_per_second=RATE * 4)
    first = await quiescent(run)
    assert_passed(first, run)
    records_before = len(run.observer.seen)
    state_before = await _versions(run.settings)

    run.pipeline.stop()
    for service in STAGE_SERVICES:
        await rewind_group(
            run.settings, run.settings.consumer_group(service), input_topics(run.settings, service)
        )
    lag = sum([await consumer_lag(run.settings, s, input_topics(run.settings, s)) for s in STAGE_SERVICES])
    replayed_at = time.monotonic()
    run.pipeline.start()
    result = await quiescent(run)

    report("full replay from offset 0", lag, result, run, time.monotonic() - replayed_at)
    assert_passed(result, run)
    assert lag > 0
    assert len(run.observer.seen) == records_before, "a replay must emit nothing"
    assert await _versions(run.settings) == state_before, "a replay must change no state"


async def _versions(settings: Settings) -> dict[str, dict[str, int]]:
    client = make_client(settings, app_name="fault-test")
    try:
        return {
            service: {
                document["_id"]: document["version"]
                async for document in service_database(client, settings, service)["aggregates"].find(
                    {}, {"version": 1}
                )
            }
            for service in STAGE_SERVICES
        }
    finally:
        await client.close()


@pytest.mark.skipif(
    not LOCAL_SERVERS, reason="restarts the local servers; servers named by the environment are not ours"
)
async def test_clients_started_while_the_broker_restarts_never_hang(settings: Settings) -> None:
    """aiokafka strands a client that bootstraps from a broker shutting down; `running` must end its start.

    Idempotent producers are started over and over, 20 at a time, across broker restarts. Each start
    must end (started, refused, or given up after its bound): without the bound, a stranded one would
    hang this test. Strands are a race, not certain in every run; the report counts them.
    """
    outcomes: Counter[str] = Counter()
    restarting = True

    async def start_one() -> None:
        producer = make_producer(settings)
        try:
            async with running(producer, start_seconds=5):
                outcomes["started"] += 1
        except KafkaConnectionError as error:
            if "no usable broker" not in str(error):
                outcomes["refused"] += 1
            elif producer.client.cluster.brokers():
                outcomes["given up, slow"] += 1
            else:
                outcomes["given up, stranded without brokers"] += 1

    async def keep_starting() -> None:
        while restarting:
            await asyncio.wait_for(asyncio.gather(*(start_one() for _ in range(20))), timeout=30)
            await asyncio.sleep(0.01)

    starting = asyncio.create_task(keep_starting())
    for _ in range(3):
        await asyncio.sleep(3)
        try:
            await infra("down", "kafka")
            await asyncio.sleep(1)
        finally:  # the tests after this one need the broker
            await infra("up", "kafka")
    await asyncio.sleep(3)
    restarting = False
    await starting

    SCENARIO_REPORT.append(f"clients started across 3 broker restarts: {dict(sorted(outcomes.items()))}")
    assert outcomes["started"] > 0
    assert outcomes["refused"] > 0, "some starts must have met the broker away"
