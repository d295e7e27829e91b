"""Scaling one stage: three qualification replicas under load, one killed and one added mid-run.

The replicas are real `python -m services.qualification` processes in one consumer group. Each deal's
prospect and discovery call are published at a steady rate; a quarter of the way in, one replica gets
SIGKILL (no goodbye to the group, so its partitions wait out the session timeout), and halfway a fourth
replica starts. At the end every deal must have exactly its expected outputs, distinct by `ce_id` (none
lost, none applied twice), and the group must have committed every input partition to its end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from cli.kafka_io import SeenEvent, all_topics, publish, read_all
from contracts import Event, Topic, dead_letter_topic
from contracts.events import (
    Company,
    Contact,
    DiscoveryCallLogged,
    Money,
    NextStep,
    ProspectIdentified,
)
from services.qualification.service import definition as qualification
from shared.envelope import encode
from shared.kafka import client_options, ensure_topics, group_progress, running
from shared.mongo import make_client, service_database
from shared.settings import Settings
from shared.store import OUTBOX_CHECKPOINTS
from tests.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
REPO = Path(__file__).resolve().parents[2]
SERVICE = "qualification"
PARTITIONS = 6
DEALS = 300
DEALS_PER_SECOND = 10  # 300 deals over about 30 s: the kill and the new replica land mid-stream
BANT_MET = {"budget": True, "authority": True, "need": True, "timeline": True}
QUALIFIED = Counter({"qualification.next_step_scheduled.v1": 1, "lead.qualified.v1": 1})
DISQUALIFIED = Counter({"qualification.next_step_scheduled.v1": 1, "lead.disqualified.v1": 1})


class Replicas:
    """Replicas of one stage service as separate processes, each with its own log and HTTP port."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.http_ports: dict[int, int] = {}
        self.env = (
            os.environ
            | settings.environment()
            | {
                "DEALFLOW_HTTP_HOST": "127.0.0.1",
            }
        )

    def log(self, replica: int) -> Path:
        return self.log_dir / f"{SERVICE}.{replica}.log"

    def start(self, replica: int) -> None:
        # Its own HTTP port from the OS: a stack already running here on the default ports cannot clash.
        self.http_ports[replica] = free_port()
        with self.log(replica).open("ab") as log:
            self.processes[replica] = subprocess.Popen(
                [sys.executable, "-m", f"services.{SERVICE}"],
                cwd=REPO,
                env=self.env | {"DEALFLOW_HTTP_PORT": str(self.http_ports[replica])},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill9(self, replica: int) -> None:
        process = self.processes[replica]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    async def ready(self, replica: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while '"service_ready"' not in self.log(replica).read_text(errors="replace"):
            process = self.processes[replica]
            assert process.poll() is None, f"replica {replica} died: {self.tail(replica)}"
            assert time.monotonic() < deadline, f"replica {replica} not ready: {self.tail(replica)}"
            await asyncio.sleep(0.2)

    async def readiness(self, replica: int, timeout: float = 20) -> tuple[int, dict[str, object]]:
        """The replica's /readyz answer, once it says ready (the consumer learns its assignment a moment
        after the broker reports the group stable), or its last answer when `timeout` runs out."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=10) as client:
            while True:
                response = await client.get(f"http://127.0.0.1:{self.http_ports[replica]}/readyz")
                if response.status_code == 200 or time.monotonic() > deadline:
                    return response.status_code, response.json()["checks"]
                await asyncio.sleep(0.3)

    def tail(self, replica: int) -> str:
        return self.log(replica).read_text(errors="replace")[-3000:]

    def dead(self, *replicas: int) -> list[int]:
        return [replica for replica in replicas if self.processes[replica].poll() is not None]

    def stop_all(self) -> None:
        running = [process for process in self.processes.values() if process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def six_partitions(settings: Settings) -> Settings:
    return settings.model_copy(update={"partitions": PARTITIONS})


@pytest.fixture
def replicas(six_partitions: Settings, tmp_path: Path) -> Iterator[Replicas]:
    started = Replicas(six_partitions, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def deal_inputs(number: int) -> list[Event]:
    """A prospect and its discovery call; odd deals meet BANT (qualified), even ones miss the budget."""
    deal = deal_id(number)
    # The first touch is due tomorrow, so no deadline fires during the test and the outputs are exact.
    due = datetime.now(UTC) + timedelta(days=1)
    prospect = ProspectIdentified(
        deal_id=deal,
        lead_id=deal,
        contact=Contact(email=f"buyer@{deal}.example"),
        company=Company(name=f"Company {deal}"),
        source="scaling_test",
        marketing_consent=False,
        fit_score=90,
        tier="A",
        owner="anna.schmidt",
        next_step=NextStep(action="first_touch", due_at=due),
    )
    qualifies = number % 2 == 1
    call = DiscoveryCallLogged(
        deal_id=deal,
        occurred_at=datetime.now(UTC),
        answers=BANT_MET if qualifies else BANT_MET | {"budget": False},
        estimated_amount=Money(amount_minor=500_000, currency="EUR"),
        actor_role="rep",
    )
    return [prospect, call]


def deal_id(number: int) -> str:
    return f"scale-{number:04d}"


def input_event_id(number: int, index: int) -> str:
    return f"{deal_id(number)}.input-{index}"


def expected_outputs(number: int) -> Counter[str]:
    return QUALIFIED if number % 2 == 1 else DISQUALIFIED


@dataclass
class Milestones:
    """Moments in the load at which the test changes the replica set."""

    quarter: asyncio.Event
    half: asyncio.Event


async def steady_load(settings: Settings, milestones: Milestones) -> None:
    chunk = 2
    for start in range(0, DEALS, chunk):
        await publish(
            settings,
            [
                encode(
                    event,
                    topic=settings.topic(event.TOPIC),
                    source="/scaling-test",
                    event_id=input_event_id(number, index),
                )
                for number in range(start, start + chunk)
                for index, event in enumerate(deal_inputs(number))
            ],
        )
        if start >= DEALS // 4:
            milestones.quarter.set()
        if start >= DEALS // 2:
            milestones.half.set()
        await asyncio.sleep(chunk / DEALS_PER_SECOND)


@dataclass(frozen=True)
class GroupMember:
    member_id: str
    partitions: frozenset[TopicPartition]


async def group_members(settings: Settings) -> tuple[str, list[GroupMember]]:
    """The consumer group's state and members, each with the partitions the leader assigned it."""
    async with running(AIOKafkaAdminClient(**client_options(settings))) as admin:
        [response] = await admin.describe_consumer_groups([settings.consumer_group(SERVICE)])
    [group] = response.groups
    _error, _group_id, state, _protocol_type, _protocol, members, *_ = group
    described = []
    for member_id, _client_id, _host, _metadata, assignment, *_ in members:
        owned = ConsumerProtocolMemberAssignment.decode(assignment).partitions() if assignment else []
        described.append(GroupMember(member_id, frozenset(owned)))
    return state, described


async def stable_group(
    settings: Settings, condition: str, holds: object, timeout: float = 60
) -> list[GroupMember]:
    """The group's members once it is stable and `holds(members)` is true; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        state, members = await group_members(settings)
        if state == "Stable" and holds(members):  # type: ignore[operator]
            return members
        assert time.monotonic() < deadline, f"group never reached: {condition}; last {state} {members}"
        await asyncio.sleep(0.5)


async def stored_deals(settings: Settings) -> dict[str, dict[str, object]]:
    client = make_client(settings, app_name="scaling-test")
    try:
        database = service_database(client, settings, SERVICE)
        # What is published is told by the partition's checkpoint (shared.runtime.outbox), not by a mark.
        published_through = {
            document["_id"]: document["published_through"]
            async for document in database[OUTBOX_CHECKPOINTS].find({})
        }
        projection = {"version": 1, "applied": 1, "has_outbox": 1, "outbox_ticket": 1, "partition": 1}
        return {
            document["_id"]: {
                "version": document["version"],
                "applied": sorted(applied["id"] for applied in document["applied"]),
                "unsent": document["has_outbox"]
                and document.get("outbox_ticket", 0) > published_through.get(document["partition"], -1),
            }
            async for document in database["aggregates"].find({}, projection)
        }
    finally:
        await client.close()


def outputs_by_deal(events: list[SeenEvent]) -> dict[str, Counter[str]]:
    """Each deal's distinct outputs (one per ce_id: a re-published copy is the same output)."""
    distinct = {
        event.id: event for event in events if event.headers.get("ce_source") == f"/dealflow/{SERVICE}"
    }
    outputs: dict[str, Counter[str]] = {}
    for event in distinct.values():
        outputs.setdefault(event.key, Counter())[event.type] += 1
    return outputs


async def test_three_replicas_one_killed_one_added_lose_nothing_and_apply_nothing_twice(
    six_partitions: Settings, replicas: Replicas
) -> None:
    settings = six_partitions
    await ensure_topics(settings, [settings.topic(topic) for topic in Topic])
    input_topics = [settings.topic(topic) for topic in qualification().input_topics]
    every_input_partition = {
        TopicPartition(topic, partition) for topic in input_topics for partition in range(PARTITIONS)
    }

    for replica in (1, 2, 3):
        replicas.start(replica)
    for replica in (1, 2, 3):
        await replicas.ready(replica)
    three = await stable_group(
        settings,
        "three members, each owning partitions, together owning every input partition",
        lambda members: (
            len(members) == 3
            and all(member.partitions for member in members)
            and frozenset().union(*(member.partitions for member in members)) == every_input_partition
        ),
    )
    # The range assignor splits each topic's 6 partitions 2-2-2, the same numbers in every input topic,
    # so each deal's prospect and activities reach the same replica.
    for member in three:
        assert {tp.partition for tp in member.partitions if tp.topic == input_topics[0]} == {
            tp.partition for tp in member.partitions
        }
        assert len({tp.partition for tp in member.partitions}) == PARTITIONS // 3
    # Each replica says the same on /readyz: ready, owning 2 partitions of each of its input topics.
    for replica in (1, 2, 3):
        status, checks = await replicas.readiness(replica)
        assert (status, checks["partitions_assigned"]) == (200, len(input_topics) * PARTITIONS // 3)

    milestones = Milestones(asyncio.Event(), asyncio.Event())
    load = asyncio.create_task(steady_load(settings, milestones))
    try:
        await milestones.quarter.wait()
        replicas.kill9(2)
        await milestones.half.wait()
        replicas.start(4)
        await replicas.ready(4)
        after = await stable_group(
            settings,
            "the killed member gone and the new one owning partitions",
            lambda members: (
                len(members) == 3
                and len({member.member_id for member in three} & {member.member_id for member in members})
                == 2
                and all(member.partitions for member in members)
            ),
        )
        await load
    finally:
        load.cancel()
        await asyncio.gather(load, return_exceptions=True)
    [newcomer] = [member for member in after if member.member_id not in {m.member_id for m in three}]
    assert newcomer.partitions
    status, checks = await replicas.readiness(4)
    assert (status, checks["partitions_assigned"]) == (200, len(newcomer.partitions))

    expected = {deal_id(number): expected_outputs(number) for number in range(DEALS)}
    deadline = time.monotonic() + 60
    while True:
        offsets = await group_progress(settings, settings.consumer_group(SERVICE), input_topics)
        outputs = outputs_by_deal(await read_all(settings, [settings.topic(Topic.QUALIFICATIONS)]))
        drained = all(committed == end for committed, end in offsets.values())
        if (drained and outputs == expected) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)

    assert replicas.dead(1, 3, 4) == []
    lost = sorted(deal for deal in expected if deal not in outputs)
    assert lost == [], f"{len(lost)} deals have no output"
    wrong = {
        deal: dict(outputs[deal]) for deal in expected if deal in outputs and outputs[deal] != expected[deal]
    }
    assert wrong == {}, "a deal lost an output or has one applied twice (two ce_ids for one effect)"
    assert set(outputs) == set(expected)
    assert set(offsets) == every_input_partition
    for topic in (settings.topic(Topic.PROSPECTS), settings.topic(Topic.ACTIVITIES)):
        loaded = [offsets[TopicPartition(topic, partition)][1] > 0 for partition in range(PARTITIONS)]
        assert all(loaded), f"a partition of {topic} had no load"
    behind = {f"{tp.topic}:{tp.partition}": pair for tp, pair in offsets.items() if pair[0] != pair[1]}
    assert behind == {}, "partitions not consumed to the end (committed, end)"

    everything = await read_all(settings, all_topics(settings))
    rejected = settings.topic(Topic.ACTIVITIES_REJECTED)
    assert [event.key for event in everything if event.topic == rejected] == []
    dead_letters = settings.topic(dead_letter_topic(SERVICE))
    assert [event.key for event in everything if event.topic == dead_letters] == []

    # Applied once, seen from the database: each deal's document lists its two inputs once each (in either
    # order: they travel on different topics, and a call that comes first is parked until its prospect),
    # its version counts exactly two writes (a second application would add one), and nothing is unsent.
    stored = await stored_deals(settings)
    assert set(stored) == set(expected)
    applied_once = {
        deal_id(number): {
            "version": 2,
            "applied": [input_event_id(number, 0), input_event_id(number, 1)],
            "unsent": False,
        }
        for number in range(DEALS)
    }
    assert {deal: stored[deal] for deal in applied_once if stored[deal] != applied_once[deal]} == {}
