"""Totality: every record a service consumes ends in exactly one answer, whatever a sender puts in it.

The answers: applied; an `activity.rejected.v1` naming the record (`activity_event_id` = its ce_id); or a
dead letter in the service's dead-letter topic (matched by `dlq_source_topic/partition/offset`). A record
of another stage's type is ignored by the services it is not for, and an imported row of another stage's
is taken as nothing; a deadline that is not due changes nothing. Nothing in a record may stall a
partition, rewind one, or make a stage do what it should not, and no good record is lost.

The run, against the five service processes (tests/hostile/conftest.py):

- phase 0: deals in known states (open in qualification, in presentation or negotiation, won and in
  onboarding), which hostile activities and forged deadlines aim at; activities of two deals whose
  leads come later (they wait, parked);
- phase 1: ~120 good deals (leads and their activities), two good upsells, four good rows of a CRM
  export and two erasure requests, interleaved with every hostile record Hypothesis drew
  (tests/hostile/generators.py), on every input topic of every service;
- phase 2: the leads whose activities waited, and deals for which a deadline was forged before they
  opened;
- then: wait (bounded) for every consumer group to commit its end offsets, and account for every record.

`HOSTILE_CLASSES=deep_nesting,ce_time` runs only those classes (the good records always run).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts import Event, Topic, dead_letter_topic, event_model
from contracts.events import ActivityRejected, DeadlineReached, ErasureRequested, PersonalDataErased
from contracts.flows import party
from contracts.topics import SERVICES
from shared.envelope import derived_event_id, encode
from shared.kafka import client_options, existing_partitions, partition_of, running
from shared.mongo import make_client, service_database
from shared.settings import Settings
from tests.hostile import generators
from tests.hostile.conftest import HOSTILE_REPORT, PARKED_MAX_AGE_SECONDS, Observer, Pipeline, Seen
from tests.hostile.generators import GOOD_SOURCE, Journey, Probe

pytestmark = pytest.mark.hostile

GOOD_DEALS = 120
CHUNK_RECORDS = 40  # per send round; one round every CHUNK_PAUSE seconds (~400 records a second)
CHUNK_PAUSE = 0.1
PHASE0_TIMEOUT = 60.0
FORGERIES_TIMEOUT = 30.0
FINAL_TIMEOUT = 80.0
STALLED_AFTER = 20.0  # no committed offset moved for this long while records wait: stalled
QUIET_AFTER = PARKED_MAX_AGE_SECONDS + 10.0
OBSERVER_TIMEOUT = 60.0
ERASURES = ["g-erasure-0", "g-erasure-1"]


@dataclass(frozen=True)
class Placed:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Consumer:
    service: str
    group: str
    topics: frozenset[str]
    handles: frozenset[str]
    privacy: bool = False

    @property
    def label(self) -> str:
        return f"{self.service}{' (privacy)' if self.privacy else ''}"


def consumers(settings: Settings) -> list[Consumer]:
    """Every consumer group of the deployment, with its topics and the types it handles (contracts.flows)."""
    found = []
    for service in SERVICES:
        receives = [model for model in party(service).receives if model is not ErasureRequested]
        group = settings.consumer_group(service)
        found.append(
            Consumer(
                service,
                group,
                frozenset(settings.topic(model.TOPIC) for model in receives),
                frozenset(model.TYPE for model in receives),
            )
        )
        found.append(
            Consumer(
                service,
                f"{group}.privacy",
                frozenset({settings.topic(Topic.PRIVACY)}),
                frozenset({ErasureRequested.TYPE}),
                privacy=True,
            )
        )
    return found


class Progress:
    """Committed and end offsets of every consumer group, read with clients kept open for the run."""

    def __init__(self, settings: Settings, groups: Sequence[Consumer]) -> None:
        self.settings = settings
        self.groups = groups
        self.admin = AIOKafkaAdminClient(**client_options(settings))
        self.consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
        self.partitions: list[TopicPartition] = []

    async def read(self) -> dict[tuple[str, str, int], tuple[int, int]]:
        """(group, topic, partition) -> (committed, end)."""
        if not self.partitions:
            topics = sorted({topic for group in self.groups for topic in group.topics})
            self.partitions = await existing_partitions(self.settings, topics)
        ends = await self.consumer.end_offsets(self.partitions)
        answer = {}
        for group in self.groups:
            committed = await self.admin.list_consumer_group_offsets(group.group)
            for tp in self.partitions:
                if tp.topic in group.topics:
                    done = committed[tp].offset if tp in committed else 0
                    answer[(group.group, tp.topic, tp.partition)] = (max(done, 0), ends[tp])
        return answer


async def send(
    producer: AIOKafkaProducer, items: Sequence[tuple[str, int, bytes | None, bytes | None, Sequence]]
) -> list[Placed]:
    """(topic, partition, key, value, headers) each, in order; where each landed."""
    futures = [
        await producer.send(topic, value=value, key=key, partition=partition, headers=list(headers))
        for topic, partition, key, value, headers in items
    ]
    return [Placed(md.topic, md.partition, md.offset) for md in await asyncio.gather(*futures)]


def good_item(settings: Settings, event: Event, ce_id: str) -> tuple[str, int, bytes, bytes, list]:
    record = encode(event, topic=settings.topic(event.TOPIC), source=GOOD_SOURCE, event_id=ce_id)
    headers = [(name, value.encode()) for name, value in record.headers.items()]
    return (
        record.topic,
        partition_of(event.partition_key, settings.partitions),
        record.key,
        record.value,
        headers,
    )


def probe_item(settings: Settings, probe: Probe) -> tuple[str, int, bytes | None, bytes | None, Sequence]:
    return settings.topic(probe.topic), probe.partition, probe.key, probe.value, probe.headers


@dataclass
class Run:
    settings: Settings
    pipeline: Pipeline
    observer: Observer
    producer: AIOKafkaProducer
    progress: Progress
    probes: list[tuple[Probe, Placed]] = field(default_factory=list)
    good: dict[Placed, str] = field(default_factory=dict)  # where each good record is -> its deal
    started: float = field(default_factory=time.monotonic)
    timeline: list[str] = field(default_factory=list)

    def mark(self, what: str) -> None:
        self.timeline.append(f"{time.monotonic() - self.started:6.1f}s  {what}")

    async def send_good(
        self, journeys: Iterable[Journey], skip_first: bool = False, only_first: bool = False
    ) -> None:
        items, owners = [], []
        for journey in journeys:
            events = (
                journey.events[1:] if skip_first else journey.events[:1] if only_first else journey.events
            )
            offset = 1 if skip_first else 0
            for index, event in enumerate(events, start=offset):
                items.append(good_item(self.settings, event, f"{journey.deal_id}/{index}"))
                owners.append(journey.deal_id)
        for start in range(0, len(items), CHUNK_RECORDS):
            placed = await send(self.producer, items[start : start + CHUNK_RECORDS])
            self.good.update(zip(placed, owners[start : start + CHUNK_RECORDS], strict=True))

    async def stream(self, units: list[list[tuple[object, tuple]]]) -> None:
        """Publish units (a good deal's records, or one builder's probes) in order, in paced rounds."""
        flat = [entry for unit in units for entry in unit]
        for start in range(0, len(flat), CHUNK_RECORDS):
            chunk = flat[start : start + CHUNK_RECORDS]
            placed = await send(self.producer, [item for _, item in chunk])
            for (what, _), where in zip(chunk, placed, strict=True):
                if isinstance(what, Probe):
                    self.probes.append((what, where))
                else:
                    self.good[where] = str(what)
            await asyncio.sleep(CHUNK_PAUSE)


async def parked_expiry() -> float:
    return QUIET_AFTER


async def wait_until(
    run: Run,
    done: Callable[[], Awaitable[bool]],
    timeout: float,
    what: str,
    quiet_after: Callable[[], Awaitable[float]] = parked_expiry,
) -> bool:
    """Poll `done()` until it holds, the time is up, or nothing moves any more.

    Nothing moves: records wait and no committed offset moved for STALLED_AFTER seconds (a stall: a
    consumer that redelivers one batch for ever commits nothing, however busy it is); or nothing waits,
    yet no record appeared anywhere for `quiet_after()` seconds (by default long enough for parked
    records to expire).
    """
    deadline = time.monotonic() + timeout
    offsets: object = None
    seen = -1
    offsets_moved = records_moved = time.monotonic()
    while True:
        if await done():
            run.mark(f"{what}: reached")
            return True
        progress = await run.progress.read()
        committed = {key: done_up_to for key, (done_up_to, _) in progress.items()}
        waiting = sum(end - done_up_to for done_up_to, end in progress.values())
        now = time.monotonic()
        if committed != offsets:
            offsets, offsets_moved = committed, now
        if len(run.observer.records) != seen:
            seen, records_moved = len(run.observer.records), now
        if waiting and now - offsets_moved > STALLED_AFTER:
            behind = sorted(
                f"{group.split('.', 1)[1]} {topic.split('.', 1)[1]}:{partition} {done_up_to}/{end}"
                for (group, topic, partition), (done_up_to, end) in progress.items()
                if done_up_to < end
            )
            run.mark(
                f"{what}: given up, no committed offset moved for {STALLED_AFTER:.0f}s, {waiting} waiting "
                f"({', '.join(behind[:6])}{' ...' if len(behind) > 6 else ''})"
            )
            return False
        if not waiting and now - max(offsets_moved, records_moved) > (quiet := await quiet_after()):
            run.mark(f"{what}: given up, nothing happened for {quiet:.0f}s")
            return False
        if now > deadline:
            run.mark(f"{what}: given up after {timeout:.0f}s, {waiting} records waiting")
            return False
        await asyncio.sleep(1)


# --- what happened -------------------------------------------------------------------------------


@dataclass
class Evidence:
    """Everything that tells what became of a record, gathered once at the end."""

    progress: dict[tuple[str, str, int], tuple[int, int]]
    # (service, source topic, partition, offset) -> the code of each dead letter of that record
    dead_letters: dict[tuple[str, str, int, int], list[str]]
    described: dict[tuple[str, str, int, int], str]  # what a dead letter was, and why
    rejections: dict[tuple[str, str], set[str]]  # (service, activity_event_id) -> rejection ids
    emitted: set[tuple[str, str]]  # (service, ce_id) of every event a service published
    confirmed: set[tuple[str, str]]  # (service, request_id) of every erasure confirmation
    applied: dict[str, set[str]]  # service -> event ids its documents record as applied
    parked: dict[str, set[tuple[str, int, int]]]  # service -> sources of records still waiting

    def committed(self, group: str, topic: str, partition: int) -> int:
        return self.progress.get((group, topic, partition), (0, 0))[0]


async def gather_evidence(run: Run, groups: Sequence[Consumer]) -> Evidence:
    settings = run.settings
    dlq_topics = {settings.topic(dead_letter_topic(service)): service for service in SERVICES}
    dead_letters: dict[tuple[str, str, int, int], list[str]] = defaultdict(list)
    described: dict[tuple[str, str, int, int], str] = {}
    rejections: dict[tuple[str, str], set[str]] = defaultdict(set)
    emitted: set[tuple[str, str]] = set()
    confirmed: set[tuple[str, str]] = set()
    for record in run.observer.records:
        if record.topic in dlq_topics:
            headers = record.headers
            try:
                source = (
                    headers["dlq_source_topic"],
                    int(headers["dlq_source_partition"]),
                    int(headers["dlq_source_offset"]),
                )
            except (KeyError, ValueError):
                continue
            code = headers.get("dlq_error_code", "?")
            dead_letters[(dlq_topics[record.topic], *source)].append(code)
            if code not in ("deal_never_opened",):
                described[(dlq_topics[record.topic], *source)] = (
                    f"{headers.get('ce_type', '?').removeprefix('io.dealflow.')} {code}: "
                    f"{headers.get('dlq_error', '')[:160]}"
                )
            continue
        service = record.source.removeprefix("/dealflow/")
        if not record.source.startswith("/dealflow/") or record.source == GOOD_SOURCE:
            continue
        emitted.add((service, record.ce_id))
        if record.type == PersonalDataErased.TYPE.removeprefix("io.dealflow.") and record.data:
            confirmed.add((service, str(record.data.get("request_id"))))
        if record.type == ActivityRejected.TYPE.removeprefix("io.dealflow.") and record.data:
            rejections[
                (str(record.data.get("stage_service")), str(record.data.get("activity_event_id")))
            ].add(record.ce_id)
    applied: dict[str, set[str]] = defaultdict(set)
    parked: dict[str, set[tuple[str, int, int]]] = defaultdict(set)
    client = make_client(settings, app_name="hostile-suite")
    try:
        for service in SERVICES:
            database = service_database(client, settings, service)
            for name in await database.list_collection_names():
                async for document in database[name].find({}, {"applied": 1, "parked": 1}):
                    for item in document.get("applied") or ():  # ids, or {id, digest} documents
                        applied[service].add(str(item.get("id") if isinstance(item, dict) else item))
                    for waiting in document.get("parked") or ():
                        if isinstance(waiting, dict) and {"topic", "partition", "offset"} <= set(waiting):
                            parked[service].add((waiting["topic"], waiting["partition"], waiting["offset"]))
    finally:
        await client.close()
    return Evidence(
        await run.progress.read(), dead_letters, described, rejections, emitted, confirmed, applied, parked
    )


def outcomes(probe: Probe, where: Placed, consumer: Consumer, evidence: Evidence) -> list[str]:
    if evidence.committed(consumer.group, where.topic, where.partition) <= where.offset:
        return ["pending"]
    found = [
        f"dead_lettered:{code}"
        for code in evidence.dead_letters.get(
            (consumer.service, where.topic, where.partition, where.offset), []
        )
    ]
    if probe.ce_id and not probe.conflict_copy:
        if consumer.privacy:
            request = _field(probe.value, "request_id")
            if (consumer.service, derived_event_id(probe.ce_id, consumer.service)) in evidence.emitted or (
                request is not None and (consumer.service, request) in evidence.confirmed
            ):
                found.append("applied")
        elif evidence.rejections.get((consumer.service, probe.ce_id)):
            found.append("rejected")
        elif (consumer.service, derived_event_id(probe.ce_id, 0)) in evidence.emitted or (
            not found and probe.ce_id in evidence.applied.get(consumer.service, ())
        ):
            found.append("applied")
    if (where.topic, where.partition, where.offset) in evidence.parked.get(consumer.service, ()):
        found = [outcome for outcome in found if outcome != "applied"] + ["parked"]
    return found or ["ignored"]


def _field(value: bytes | None, name: str) -> str | None:
    try:
        data = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    return str(data[name]) if isinstance(data, dict) and name in data else None


def allowed_for(probe: Probe, consumer: Consumer) -> frozenset[str]:
    allowed = probe.allowed
    known = probe.event_type is not None and event_model(probe.event_type) is not None
    if known and probe.event_type not in consumer.handles:
        allowed |= {"ignored"}  # another stage's event
    elif (
        probe.event_type == DeadlineReached.TYPE
        and probe.deadline_for is not None
        and probe.deadline_for != consumer.service
    ):
        allowed |= {"ignored"}  # another stage's deadline
    elif probe.answered_by not in (None, consumer.service):
        allowed = frozenset({"applied"})  # another stage's import row: taken as nothing, never answered
    return allowed


def fits(outcome: str, allowed: frozenset[str]) -> bool:
    return outcome in allowed or (outcome.startswith("dead_lettered:") and "dead_lettered" in allowed)


def stage_events(records: Iterable[Seen], settings: Settings) -> tuple[dict[str, Counter[str]], int]:
    """Distinct stage events per key (by source and ce_id), and how many copies of one were seen."""
    skipped = {settings.topic(dead_letter_topic(service)) for service in SERVICES} | {
        settings.topic(Topic.DEADLINES)
    }
    distinct: dict[tuple[str, str], Seen] = {}
    copies = 0
    for record in records:
        if (
            record.topic in skipped
            or not record.source.startswith("/dealflow/")
            or record.source == GOOD_SOURCE
        ):
            continue
        if (record.source, record.ce_id) in distinct:
            copies += 1
        distinct[(record.source, record.ce_id)] = record
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for record in distinct.values():
        counts[(record.key or b"").decode(errors="replace")][record.type] += 1
    return counts, copies


def journeys_wrong(journeys: Sequence[Journey], counts: dict[str, Counter[str]]) -> dict[str, str]:
    wrong = {}
    for journey in journeys:
        got = counts.get(journey.deal_id, Counter())
        if got != journey.expected:
            missing, extra = journey.expected - got, got - journey.expected
            wrong[journey.deal_id] = f"missing {dict(missing)}, extra {dict(extra)}"
        for key in journey.also_silent:
            if counts.get(key):
                wrong[key] = f"expected nothing, got {dict(counts[key])}"
    return wrong


def erasures_unconfirmed(records: Iterable[Seen], settings: Settings) -> dict[str, list[str]]:
    confirmed: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.type == PersonalDataErased.TYPE.removeprefix("io.dealflow.") and record.data:
            confirmed[str(record.data.get("request_id"))].add(record.source.removeprefix("/dealflow/"))
    return {rid: sorted(set(SERVICES) - confirmed[rid]) for rid in ERASURES if set(SERVICES) - confirmed[rid]}


# --- the test ------------------------------------------------------------------------------------


def chosen_classes() -> list[str] | None:
    wanted = os.environ.get("HOSTILE_CLASSES", "").strip()
    return [name.strip() for name in wanted.split(",") if name.strip()] or None


async def test_every_consumed_record_ends_applied_rejected_or_dead_lettered(
    hostile_pipeline: tuple[Settings, Pipeline, Observer, AIOKafkaProducer],
) -> None:
    settings, pipeline, observer, producer = hostile_pipeline
    only = chosen_classes()
    builders = generators.corpus(only)
    groups = consumers(settings)
    progress = Progress(settings, groups)
    async with running(progress.admin), running(progress.consumer):
        run = Run(settings, pipeline, observer, producer, progress)
        run.mark("services ready")

        # Phase 0: deals in known states for hostile records to meet; parked activities.
        phase0 = generators.phase0_journeys()
        parked = generators.parked_journeys()
        await run.send_good(phase0)
        await run.send_good(parked, skip_first=True)

        async def phase0_done() -> bool:
            counts, _ = stage_events(observer.records, settings)
            return not journeys_wrong(phase0, counts)

        await wait_until(run, phase0_done, PHASE0_TIMEOUT, "phase 0 deals in their states")

        # The corpus, now that the phase-0 deals exist (insights' stall ids name their times).
        ctx = generators.Context(partitions=settings.partitions, now=datetime.now(UTC))
        ctx.stall_ids = stall_ids(observer.records, generators.VICTIMS)
        probes = generators.materialize(builders, ctx, only)
        first = [
            p for p in probes if p.phase == 0 or p.variant.startswith(("before the deal", "parked expiry"))
        ]
        rest = [
            p
            for p in probes
            if not (p.phase == 0 or p.variant.startswith(("before the deal", "parked expiry")))
        ]

        # Phase 1: good deals, good upsells and erasures, and every hostile record, interleaved.
        good = [
            *generators.good_deals(GOOD_DEALS),
            *(generators.expansion(f"g-up-{i}") for i in range(2)),
            *generators.good_imports(datetime.now(UTC)),
        ]
        units: list[list[tuple[object, tuple]]] = [
            [
                (journey.deal_id, good_item(settings, event, f"{journey.deal_id}/{index}"))
                for index, event in enumerate(journey.events)
            ]
            for journey in good
        ]
        units += [
            [(rid, good_item(settings, ErasureRequested(request_id=rid, email=f"{rid}@nobody.example"), rid))]
            for rid in ERASURES
        ]
        units += group_by_builder(settings, rest)
        random.Random(20261201).shuffle(units)
        units = [[(p, probe_item(settings, p)) for p in first], *units]
        run.mark(f"phase 1: {len(probes)} hostile records, {sum(len(u) for u in units) - len(probes)} good")
        await run.stream(units)
        run.mark("phase 1 published")

        forged_first = [
            (p, w) for p, w in run.probes if p.variant.startswith(("before the deal", "parked expiry"))
        ]

        async def forgeries_consumed() -> bool:
            state = await progress.read()
            return all(
                state.get((settings.consumer_group(p.deadline_for or ""), w.topic, w.partition), (0, 0))[0]
                > w.offset
                for p, w in forged_first
            )

        await wait_until(run, forgeries_consumed, FORGERIES_TIMEOUT, "deadlines forged for phase 2 consumed")

        # Phase 2: the deals whose deadlines were forged before they opened; the parked deals' leads.
        late = generators.late_journeys()
        await run.send_good(late)
        await run.send_good(parked, only_first=True)
        run.mark("phase 2 published")
        # The hostile deals' journeys are checked in phase 0 only: hostile records may move them on.
        every_journey = [*(j for j in phase0 if not j.deal_id.startswith("hx-")), *parked, *good, *late]

        async def settled() -> bool:
            state = await progress.read()
            if any(committed < end for committed, end in state.values()):
                return False
            counts, _ = stage_events(observer.records, settings)
            if journeys_wrong(every_journey, counts) or erasures_unconfirmed(observer.records, settings):
                return False
            return await still_parked(settings) == 0

        async def quiet_after() -> float:
            # Parked records are dead-lettered PARKED_MAX_AGE_SECONDS after they arrived: while some
            # wait, so does the suite; with none, a few quiet seconds mean nothing more will happen.
            return QUIET_AFTER if await still_parked(settings) else 8.0

        await wait_until(
            run,
            settled,
            FINAL_TIMEOUT + PARKED_MAX_AGE_SECONDS,
            "every group at its end offsets, every deal done",
            quiet_after,
        )
        await asyncio.sleep(2)  # anything emitted twice would arrive by now
        duplicates = await pipeline.metric_total("dealflow_duplicates_absorbed")
        dead = pipeline.dead()
        pipeline.stop()
        run.mark("services stopped")
        if not await observer.caught_up(timeout=OBSERVER_TIMEOUT):
            run.mark(f"the watcher had not read every topic to its end after {OBSERVER_TIMEOUT:.0f}s")
        evidence = await gather_evidence(run, groups)

    report, failures = account(run, groups, evidence, every_journey, duplicates, dead)
    HOSTILE_REPORT.extend(report)
    dump(run, evidence, pipeline.log_dir / "evidence.jsonl")
    HOSTILE_REPORT.append(f"records, outcomes and service logs: {pipeline.log_dir}")
    assert not failures, "totality broken:\n" + "\n".join(failures[:60])


def stall_ids(records: Sequence[Seen], deals: Sequence[str]) -> dict[str, list[str]]:
    """The stall deadline ids insights may have pending for these deals: one per event time seen."""
    wanted = set(deals)
    ids: dict[str, set[str]] = defaultdict(set)
    for record in records:
        key = (record.key or b"").decode(errors="replace")
        if key in wanted and record.source.startswith("/dealflow/") and record.headers.get("ce_time"):
            try:
                at = datetime.fromisoformat(record.headers["ce_time"]).astimezone(UTC)
            except ValueError:
                continue
            stage = {
                "prospect.identified.v1": "qualification",
                "qualification.next_step_scheduled.v1": "qualification",
            }.get(record.type)
            for candidate in (stage, "negotiation", "onboarding") if stage is None else (stage,):
                ids[key].add(f"stalled:{candidate}:{at:%Y%m%dT%H%M%S.%fZ}")
    return {key: sorted(values) for key, values in ids.items()}


def group_by_builder(settings: Settings, probes: Sequence[Probe]) -> list[list[tuple[object, tuple]]]:
    """Probes made together (an id conflict's original and its copy) stay together and in order."""
    units: list[list[Probe]] = []
    for probe in probes:
        if units and probe.conflict_copy:
            units[-1].append(probe)
        else:
            units.append([probe])
    return [[(probe, probe_item(settings, probe)) for probe in unit] for unit in units]


async def still_parked(settings: Settings) -> int:
    """Records the stages hold for deals that have not opened (each is answered when it opens or expires)."""
    client = make_client(settings, app_name="hostile-suite")
    try:
        count = 0
        for service in SERVICES:
            collection = service_database(client, settings, service)["aggregates"]
            async for document in collection.find({}, {"parked.offset": 1}):
                count += len(document.get("parked") or ())
        return count
    finally:
        await client.close()


# --- the report ----------------------------------------------------------------------------------


def dump(run: Run, evidence: Evidence, path: Path) -> None:
    """Every record seen, every hostile record sent and the final offsets, for a look after the run."""
    with path.open("w") as out:
        for record in run.observer.records:
            headers = {k: v[:200] for k, v in record.headers.items()}
            line = {
                "seen": [record.topic, record.partition, record.offset],
                "key": repr(record.key)[:200],
                "headers": headers,
                "size": record.size,
            }
            out.write(json.dumps(line) + "\n")
        for probe, where in run.probes:
            line = {
                "sent": [where.topic, where.partition, where.offset],
                "class": probe.cls,
                "variant": probe.variant,
                "ce_id": probe.ce_id,
                "allowed": sorted(probe.allowed),
            }
            out.write(json.dumps(line) + "\n")
        for (group, topic, partition), (committed, end) in sorted(evidence.progress.items()):
            out.write(
                json.dumps({"group": group, "tp": [topic, partition], "committed": committed, "end": end})
                + "\n"
            )


def account(
    run: Run,
    groups: Sequence[Consumer],
    evidence: Evidence,
    journeys: Sequence[Journey],
    duplicates: dict[str, float],
    dead: dict[str, int],
) -> tuple[list[str], list[str]]:
    settings = run.settings
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    per_topic: dict[str, Counter[str]] = defaultdict(Counter)  # outcome -> count, per consumed topic
    tried: Counter[str] = Counter()
    violations: dict[str, list[str]] = defaultdict(list)
    absorbed_copies: Counter[str] = Counter()
    for probe, where in run.probes:
        tried[probe.cls] += 1
        for consumer in groups:
            if where.topic not in consumer.topics:
                continue
            found = outcomes(probe, where, consumer, evidence)
            if probe.conflict_copy and found == ["ignored"] and "ignored" not in allowed_for(probe, consumer):
                found = ["absorbed as a duplicate"]
                absorbed_copies[consumer.service] += 1
            allowed = allowed_for(probe, consumer)
            for outcome in found:
                per_topic[where.topic.split(".", 1)[1]][outcome.split(":")[0]] += 1
                rows[probe.cls][
                    outcome.split(":")[0] if not outcome.startswith("dead_lettered") else outcome
                ] += 1
            if len(found) > 1:
                rows[probe.cls]["multiple"] += 1
            problem = None
            if found == ["pending"]:
                problem = "never consumed (partition stalled behind it?)"
            elif len(found) > 1 and len(set(found)) == 1:
                problem = f"{found[0]} {len(found)} times (its batch was redelivered: a rewind)"
            elif len(found) > 1:
                problem = f"more than one outcome: {found}"
            elif not fits(found[0], allowed):
                problem = f"{found[0]}, expected {' or '.join(sorted(allowed))}"
            if problem:
                violations[probe.cls].append(
                    f"{consumer.label}: {probe.variant} [{where.topic.split('.', 1)[1]} "
                    f"{where.partition}:{where.offset}] -> {problem}"
                )
    lines = [
        f"{'class':<22} {'tried':>5} {'applied':>7} {'rejected':>8} {'ignored':>7} {'pending':>7} "
        f"{'parked':>6} {'other':>6}  dead-lettered by code   [bad]"
    ]
    for cls in sorted(tried):
        row = rows[cls]
        codes = sorted(
            ((k.split(":", 1)[1], v) for k, v in row.items() if k.startswith("dead_lettered:")),
            key=lambda item: -item[1],
        )
        other = row["multiple"] + row["absorbed as a duplicate"]
        lines.append(
            f"{cls:<22} {tried[cls]:>5} {row['applied']:>7} {row['rejected']:>8} {row['ignored']:>7} "
            f"{row['pending']:>7} {row['parked']:>6} {other:>6}  "
            f"{', '.join(f'{code} {count}' for code, count in codes) or '-'}"
            f"   [{len(violations.get(cls, []))}]"
        )
    lines.append("(counts are per consuming group: a record on the activities topic is counted by three)")
    for topic, counts in sorted(per_topic.items()):
        lines.append(
            f"{topic}: {', '.join(f'{outcome} {count}' for outcome, count in sorted(counts.items()))}"
        )
    failures: list[str] = []
    for cls in sorted(violations):
        lines.append(f"{cls}: {len(violations[cls])} outcomes break totality, e.g.")
        lines += [f"    {line}" for line in violations[cls][:6]]
        failures += [f"{cls}: {line}" for line in violations[cls][:8]]

    # Stalls: who sits at each committed offset that is not the end.
    placed = {(where.topic, where.partition, where.offset): probe for probe, where in run.probes}
    good_at = {(where.topic, where.partition, where.offset): deal for where, deal in run.good.items()}
    for (group, topic, partition), (committed, end) in sorted(evidence.progress.items()):
        if committed < end:
            blocker = placed.get((topic, partition, committed))
            who = (
                f"hostile {blocker.cls}: {blocker.variant}"
                if blocker
                else f"good record of {good_at[(topic, partition, committed)]}"
                if (topic, partition, committed) in good_at
                else "a record a service produced"
            )
            # The batch that keeps failing starts at the committed offset; the record that fails it is
            # one of the hostile records just after.
            suspects = [
                f"{offset} {suspect.cls}: {suspect.variant}"
                for offset in range(committed + 1, min(end, committed + 501))
                if (suspect := placed.get((topic, partition, offset))) is not None
            ]
            if suspects:
                who += f"; hostile records after it: {'; '.join(suspects[:3])}"
            line = f"stalled: {group} {topic} partition {partition} at {committed} of {end}, at it: {who}"
            lines.append(line)
            failures.append(line)

    counts, copies = stage_events(run.observer.records, settings)
    wrong = journeys_wrong(journeys, counts)
    # A victim (aimed at by forged deadlines, or by records with the wrong key or partition) that did more
    # than its journey says was fooled; one that did less lost records, like any good deal.
    victims = {
        deal: what
        for deal, what in wrong.items()
        if deal.startswith(("v-", "w-", "z-")) and not what.endswith("extra {}")
    }
    lost = {deal: what for deal, what in wrong.items() if deal not in victims}
    for deal, what in sorted(victims.items()):
        line = f"fooled: deal {deal} (aimed at by hostile records) {what}"
        lines.append(line)
        failures.append(line)
    for deal, what in sorted(lost.items())[:20]:
        line = f"good deal {deal} wrong: {what}"
        lines.append(line)
        failures.append(line)
    if len(lost) > 20:
        lines.append(f"... and {len(lost) - 20} more good deals wrong")
    good_dead = [
        (service, (topic, partition, offset), why)
        for (service, topic, partition, offset), why in evidence.dead_letters.items()
        if (topic, partition, offset) in good_at
    ]
    for service, src, why in good_dead[:20]:
        line = f"good record dead-lettered by {service}: {good_at[src]} at {src[0]} {src[1]}:{src[2]} {why}"
        lines.append(line)
        failures.append(line)
    for rid, missing in erasures_unconfirmed(run.observer.records, settings).items():
        line = f"erasure request {rid} not confirmed by {missing}"
        lines.append(line)
        failures.append(line)
    derived = [
        (service, topic, evidence.described.get((service, topic, partition, offset), codes[0]))
        for (service, topic, partition, offset), codes in evidence.dead_letters.items()
        if (topic, partition, offset) not in placed and (topic, partition, offset) not in good_at
    ]
    for service, topic, what in derived[:10]:
        # A stage published, from hostile input, an event another stage cannot take: the first one
        # accepted what it should have refused.
        line = f"{service} dead-lettered an event a service published ({topic.split('.', 1)[1]}): {what}"
        lines.append(line)
        failures.append(line)
    if len(derived) > 10:
        lines.append(f"... and {len(derived) - 10} more dead letters of events the services published")
    rewinds = {
        service: total - absorbed_copies[service]
        for service, total in duplicates.items()
        if total - absorbed_copies[service] > 0
    }
    if copies:
        line = f"rewound: {copies} events published twice (same source and ce_id)"
        lines.append(line)
        failures.append(line)
    if rewinds:
        line = (
            f"re-processed: records applied again and absorbed as duplicates, per service {rewinds} "
            "(a batch was redelivered or re-run because of a hostile record)"
        )
        lines.append(line)
        failures.append(line)
    if dead:
        line = f"services died: {dead}"
        lines.append(line)
        failures.append(line)
    lines.append(
        f"{len(run.probes)} hostile records, {len(run.good)} good records, "
        f"{sum(1 for j in journeys if j.deal_id not in wrong)}/{len(journeys)} deals exact; timeline:"
    )
    lines += [f"    {entry}" for entry in run.timeline]
    return lines, failures
