"""`make bench`: each stage and the whole pipeline measured against raw Kafka and database baselines.

Everything runs against the same servers as the services, in one process tree, so the ratios compare
like with like. One run measures:

- the baselines: a plain aiokafka consume-and-produce loop and a plain PyMongo bulk upsert, at the middle
  size; the lower of the two is the ceiling a stage is held against (it needs both);
- each stage service alone on a pre-filled input topic at three sizes (N/20, N/4, N), each in a fresh
  namespace: its cost per event from its first outputs to its last (so starting and joining the group
  do not count), how that cost grows with the size, its database round trips per event (from the
  service's own /metrics) and its peak memory;
- the four stages together on scripted deals (each lead published with its activities) offered at
  steady rates: latency from lead to deal won, and whether the consumer groups' backlog grows; then the
  offered rate stepped up until it does.

Figures go to the terminal as one table (progress lines go to stderr) and to bench/results.json. The
bench prints targets and whether they are met, but asserts no time: only counts that do not add up fail
the run (`counts_add_up`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from importlib import import_module
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families
from pymongo import ReplaceOne

from cli.kafka_io import (
    CLI_SOURCE,
    SeenEvent,
    all_topics,
    make_producer,
    prepare_topics,
    publish,
    read_all,
    records_for,
    send,
)
from cli.namespaces import delete_namespace
from cli.workload import ScriptedDeal, scripted_deals, verify
from contracts import Event, Topic
from contracts.events import (
    Company,
    Contact,
    DealWon,
    LeadCaptured,
    LeadQualified,
    Money,
    Needs,
    NextStep,
    ProspectIdentified,
    QuoteLine,
)
from contracts.topics import STAGE_SERVICES
from shared.envelope import KafkaRecord
from shared.kafka import client_options, existing_partitions, running
from shared.mongo import make_client
from shared.runtime import StageDefinition
from shared.settings import Settings

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results.json"

# The targets of issue 15. The bench prints each with its measured value; it never fails on them.
TARGET_RATIO = 0.5  # each stage alone, at the middle size, against min(Kafka, database)
TARGET_GROWTH = 1.25  # cost per event at N over cost per event at N/20
TARGET_P99_MS = 250.0  # lead -> deal won at TARGET_P99_RATE leads/s offered
TARGET_P99_RATE = 50.0
TARGET_STEADY_RATE = 200.0  # leads/s offered at which the backlog must not grow
TARGET_PEAK_RSS_MB = 150.0  # every service, at N events

# End to end: the offered rates latency is reported at (plus `--rate`), and the ladder the search for
# the highest sustained rate climbs, reusing the runs it already has.
LATENCY_RATES = (20.0, 50.0, 200.0)
RATE_LADDER = (20.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)
BACKLOG_SAMPLE_SECONDS = 0.5
# A backlog "grows" when, between the second and the last quarter of the offering, it rose by more than
# this many seconds of arriving input: batching alone moves it by less than that.
GROWTH_ALLOWANCE_SECONDS = 0.5
# Outputs of one batch leave within this of each other; the next batch's come later (see steady_cost_ms).
BURST_GAP_MS = 3
BASELINE_RUNS = 3  # a baseline lasts a second or two, so one run swings; the median of three holds


def progress(line: str) -> None:
    """One line per phase on stderr, so a long run shows where it is and stdout keeps only the table."""
    print(line, file=sys.stderr, flush=True)


def stage_sizes(count: int) -> tuple[int, int, int]:
    """The three stage-alone sizes: N/20, N/4 and N (1k, 5k and 20k for the default 20,000)."""
    return max(1, count // 20), max(1, count // 4), count


def offer_seconds(count: int) -> float:
    """How long each latency run offers load: 15 s at the default size, 5 s for small (CI) runs."""
    return min(15.0, max(5.0, count / 1000))


# --- arithmetic of the report (pure, unit-tested) --------------------------------------------------


def steady_window(timestamps_ms: Iterable[int], *, at_least: int = 1) -> tuple[int, int, int] | None:
    """(start, end, events): the steady part of `steady_cost_ms`, or None when it says nothing."""
    ordered = sorted(timestamps_ms)
    if not ordered:
        return None
    first_burst = 1
    while first_burst < len(ordered) and ordered[first_burst] - ordered[first_burst - 1] <= BURST_GAP_MS:
        first_burst += 1
    after = len(ordered) - first_burst
    if after < max(1, at_least):
        return None
    return ordered[first_burst - 1], ordered[-1], after


def steady_cost_ms(timestamps_ms: Iterable[int], *, at_least: int = 1) -> float | None:
    """Milliseconds per event over the steady part, from the first batch's outputs to the last output.

    A stage publishes a batch's outputs in a burst, a millisecond or so apart, then works on the next
    batch. Timing from the first output would count the first burst's events as made inside the window
    (halving the cost of a run of two batches), so the window starts where that burst ends and counts
    the outputs after it. None when fewer than `at_least` come after it (the bench asks for a batch's
    worth): one batch, or one and a bit, says nothing of the cost.
    """
    window = steady_window(timestamps_ms, at_least=at_least)
    if window is None:
        return None
    start, end, events = window
    return (end - start) / events


def per_second(cost_ms: float | None) -> float | None:
    return None if not cost_ms else 1000.0 / cost_ms


def quotient(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is unknown or the denominator is zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def median_rate(count: int, seconds: Iterable[float]) -> float:
    return statistics.median(count / s for s in seconds if s > 0)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    quantiles = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {"p50": quantiles[49], "p95": quantiles[94], "p99": quantiles[98], "max": float(max(values))}


@dataclass(frozen=True)
class LagSample:
    at: float  # seconds since the offering began
    backlog: int  # records on the stages' input topics their groups have not committed, summed
    arrived: int  # records on those topics so far (end offsets), summed the same way


@dataclass(frozen=True)
class BacklogVerdict:
    middle: float  # mean backlog over the second quarter of the offering
    end: float  # mean backlog over its last quarter
    arriving_per_second: float  # input records arriving meanwhile
    grows: bool


def backlog_verdict(samples: list[LagSample], offered_seconds: float) -> BacklogVerdict:
    """Whether the backlog grew while load was offered: its mean over the last quarter of the offering
    against its mean over the second quarter (the first is the pipeline warming up)."""
    during = [sample for sample in samples if 0 <= sample.at <= offered_seconds]
    if len(during) < 2:
        return BacklogVerdict(0.0, 0.0, 0.0, grows=False)
    middle = _mean_backlog(during, offered_seconds / 4, offered_seconds / 2)
    end = _mean_backlog(during, offered_seconds * 3 / 4, offered_seconds)
    arriving = (during[-1].arrived - during[0].arrived) / max(during[-1].at - during[0].at, 1e-9)
    return BacklogVerdict(middle, end, arriving, grows=end - middle > arriving * GROWTH_ALLOWANCE_SECONDS)


def _mean_backlog(samples: list[LagSample], start: float, stop: float) -> float:
    window = [sample.backlog for sample in samples if start <= sample.at <= stop]
    if not window:  # a short run: the sample nearest the window's middle
        middle = (start + stop) / 2
        window = [min(samples, key=lambda sample: abs(sample.at - middle)).backlog]
    return statistics.fmean(window)


def drain_seconds(samples: list[LagSample], offered_seconds: float) -> float | None:
    """Seconds from the end of the offering until the backlog first was zero; None if it never was."""
    return next(
        (
            max(0.0, sample.at - offered_seconds)
            for sample in samples
            if sample.at >= offered_seconds and sample.backlog == 0
        ),
        None,
    )


def sustained_rates(runs: Iterable[dict[str, Any]]) -> tuple[float | None, float | None]:
    """The highest offered rate on the ladder whose backlog did not grow, with every lower step holding
    too, and the first step that grew (None if none did)."""
    highest = None
    for run in sorted(runs, key=lambda run: run["offered_per_second"]):
        if run["offered_per_second"] not in RATE_LADDER:
            continue
        if run["backlog"]["grows"]:
            return highest, run["offered_per_second"]
        highest = run["offered_per_second"]
    return highest, None


def database_commands(exposition: str) -> dict[str, float]:
    """Commands per command name from a /metrics page (`dealflow_database_commands_total`), all clients."""
    commands: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != "dealflow_database_commands":
            continue
        for sample in family.samples:
            if sample.name == "dealflow_database_commands_total":
                name = sample.labels["command"]
                commands[name] = commands.get(name, 0.0) + sample.value
    return commands


def main_commands(commands: dict[str, float], events: int, top: int = 3) -> str:
    """The most frequent commands per event, e.g. "update 2, find 1, insert 0.002"."""
    busiest = sorted(commands.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{name} {count / events:.3g}" for name, count in busiest) if events else ""


# --- running services ----------------------------------------------------------------------------


TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


def listening_port(pid: int) -> int | None:
    """The TCP port a process listens on (a service's HTTP endpoints), from /proc; None while it has none.

    Each service binds port 0 itself and the bench reads which port it got: choosing a free port first
    and handing it over races with every other process on the machine, and a port taken meanwhile
    leaves the service without its endpoints (or, worse, another server answering on it).
    """
    descriptors = Path(f"/proc/{pid}/fd")
    sockets = set()
    with contextlib.suppress(OSError):  # the process may be gone, or closing a descriptor just now
        for descriptor in descriptors.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(descriptor)
                if target.startswith("socket:["):
                    sockets.add(target.removeprefix("socket:[").removesuffix("]"))
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_address, state, inode = fields[1], fields[3], fields[9]
            if state == TCP_LISTEN and inode in sockets:
                return int(local_address.rsplit(":", 1)[1], 16)
    return None


class ServiceProcesses:
    """Stage services as separate processes: their /readyz says when they consume, their /metrics what
    they asked of the database, and /proc their HTTP port and peak memory (VmHWM)."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.env = (
            os.environ
            | settings.environment()
            # Any free port (see listening_port): no clash with a stack already running here (`make run`).
            | {"DEALFLOW_HTTP_PORT": "0", "DEALFLOW_LOG_LEVEL": "WARNING"}
        )
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.logs = contextlib.ExitStack()

    def start(self, *services: str) -> None:
        for service in services:
            log = self.logs.enter_context((self.log_dir / f"bench-{service}.log").open("ab"))
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"], cwd=REPO, env=self.env, stdout=log, stderr=log
            )

    def url(self, service: str, path: str) -> str:
        """The URL of one of the service's endpoints; LookupError while it listens on no port yet."""
        if service not in self.ports:
            port = listening_port(self.processes[service].pid)
            if port is None:
                raise LookupError(f"{service} does not listen yet")
            self.ports[service] = port
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    async def wait_ready(self, timeout: float = 120.0) -> None:
        """Until every service's /readyz answers 200: started, both servers reachable, partitions owned."""
        deadline = time.monotonic() + timeout
        waiting = set(self.processes)
        async with httpx.AsyncClient(timeout=2.0) as http:
            while waiting:
                self.check_alive()
                for service in list(waiting):
                    if await self._ready(http, service):
                        waiting.discard(service)
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"not ready after {timeout:.0f}s: {sorted(waiting)} ({self.log_dir})")
                await asyncio.sleep(0.25)

    async def _ready(self, http: httpx.AsyncClient, service: str) -> bool:
        try:
            return (await http.get(self.url(service, "/readyz"))).status_code == 200
        except (LookupError, httpx.HTTPError):
            return False  # uvicorn binds once the service has started its consumers

    def check_alive(self) -> None:
        """Raise if a service has exited: its work would never be done, and waiting for it is pointless."""
        for service, process in self.processes.items():
            if process.poll() is not None:
                log = self.log_dir / f"bench-{service}.log"
                raise RuntimeError(f"{service} exited with status {process.returncode}; see {log}")

    async def wait_listening(self, timeout: float = 30.0) -> None:
        """Until every service listens (a stage can output before uvicorn binds its port)."""
        deadline = time.monotonic() + timeout
        for service in self.processes:
            while True:
                try:
                    self.url(service, "/")
                    break
                except LookupError:
                    self.check_alive()
                    if time.monotonic() >= deadline:
                        raise
                    await asyncio.sleep(0.1)

    async def database_commands(self) -> dict[str, dict[str, float]]:
        """Each service's database commands so far, by command name, from its /metrics."""
        await self.wait_listening()
        async with httpx.AsyncClient(timeout=10.0) as http:
            pages = {
                service: (await http.get(self.url(service, "/metrics"))).text for service in self.processes
            }
        return {service: database_commands(page) for service, page in pages.items()}

    def peak_rss_mb(self) -> dict[str, float]:
        peaks = {}
        for service, process in self.processes.items():
            status = Path(f"/proc/{process.pid}/status")
            for line in status.read_text().splitlines() if status.exists() else []:
                if line.startswith("VmHWM:"):
                    peaks[service] = round(int(line.split()[1]) / 1024, 1)
        return peaks

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.logs.close()


# --- baselines -----------------------------------------------------------------------------------


async def kafka_baseline(settings: Settings, count: int) -> float:
    """A plain aiokafka loop: consume the leads, produce one record per input, no validation, no
    database. Seconds from the first batch consumed (the group join does not count) to the last ack."""
    source, target = settings.topic("bench.baseline-in"), settings.topic("bench.baseline-out")
    await prepare_topics(settings, [source, target])
    leads = records_for(settings, ((lead, None) for lead in _leads(count)))
    await publish(settings, [KafkaRecord(source, r.key, r.value, r.headers) for r in leads])
    consumer = AIOKafkaConsumer(
        source,
        **client_options(settings),
        group_id=f"{settings.namespace}.baseline",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=500,
    )
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    async with running(consumer), running(producer):
        started, done, deadline = None, 0, time.monotonic() + 120
        while done < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            if batches and started is None:
                started = time.perf_counter()
            futures = []
            for records in batches.values():
                for record in records:
                    futures.append(
                        await producer.send(
                            target, value=record.value, key=record.key, headers=list(record.headers)
                        )
                    )
                done += len(records)
            await asyncio.gather(*futures)
            await consumer.commit()
        if done < count:
            raise TimeoutError(f"the Kafka baseline moved {done} of {count} records")
        return time.perf_counter() - (started or time.perf_counter())


async def database_baseline(settings: Settings, count: int) -> float:
    """A plain PyMongo bulk upsert of as many documents, 500 per round trip; its seconds."""
    client = make_client(settings, app_name="dealflow-bench")
    collection = client[f"{settings.namespace}_bench"]["baseline"]
    documents = [
        {"_id": f"doc-{n}", "state": {"n": n, "text": "x" * 200}, "version": 1} for n in range(count)
    ]
    try:
        started = time.perf_counter()
        for start in range(0, count, 500):
            batch = documents[start : start + 500]
            await collection.bulk_write(
                [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in batch], ordered=False
            )
        return time.perf_counter() - started
    finally:
        await client.close()


async def baseline(
    name: str, measure: Callable[[Settings, int], Awaitable[float]], runs: list[Settings], count: int
) -> dict[str, Any]:
    """The median of the runs (each in its own namespace), with every run's rate."""
    seconds = []
    for settings in runs:
        try:
            seconds.append(await measure(settings, count))
        finally:
            await delete_namespace(settings)
    rates = [round(count / s, 1) for s in seconds if s > 0]
    result = {"name": name, "count": count, "per_second": round(median_rate(count, seconds), 1)}
    progress(f"baseline: {name} {count:,} ... {result['per_second']:,.0f}/s")
    return result | {"runs_per_second": rates}


# --- stages alone --------------------------------------------------------------------------------


def _leads(count: int) -> list[LeadCaptured]:
    return [deal.events[0] for deal in scripted_deals(count, prefix="bench")]  # type: ignore[misc]


def _stage_inputs(service: str, count: int) -> list[Event]:
    now = datetime.now(UTC)
    contact, company = Contact(email="cto@bench.example"), Company(name="Bench", country="DE")
    if service == "prospecting":
        return list(_leads(count))
    if service == "qualification":
        return [
            ProspectIdentified(
                deal_id=f"bench-{n:06d}",
                lead_id=f"bench-{n:06d}",
                contact=contact,
                company=company,
                source="bench",
                marketing_consent=False,
                fit_score=90,
                tier="A",
                owner="rep",
                next_step=NextStep(action="first_touch", due_at=now + timedelta(hours=4)),
            )
            for n in range(count)
        ]
    amount = Money(amount_minor=100_000, currency="EUR")
    if service == "proposal":
        return [
            LeadQualified(
                deal_id=f"bench-{n:06d}",
                owner="rep",
                contact=contact,
                company=company,
                framework="BANT",
                needs=Needs(),
                amount=amount,
                qualified_at=now,
            )
            for n in range(count)
        ]
    return [
        DealWon(
            deal_id=f"bench-{n:06d}",
            customer=company,
            contact=contact,
            owner="rep",
            lines=[
                QuoteLine(product="dealflow-seat", quantity=1, unit_price_minor=100_000, total_minor=100_000)
            ],
            amount=amount,
            won_at=now,
            stage_history=[],
        )
        for n in range(count)
    ]


async def first_outputs(
    settings: Settings,
    topics: list[str],
    source: str,
    keys: set[str],
    *,
    timeout: float,
    still_working: Callable[[], None],
) -> tuple[dict[str, int], float]:
    """Follow the topics until each key has an event from `source`: the Kafka timestamp of each key's
    first such event, and the time.perf_counter() its last one arrived. `still_working` raises if the
    source is gone.

    Only the headers are looked at: the bench shares the cores with the service it measures.
    """
    partitions = await existing_partitions(settings, topics)
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    wanted_source = source.encode()
    first: dict[str, int] = {}
    last_arrival = time.perf_counter()
    async with running(consumer):
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        while len(first) < len(keys) and time.monotonic() < deadline:
            still_working()
            for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                last_arrival = time.perf_counter()
                for record in records:
                    key = (record.key or b"").decode(errors="replace")
                    if key in keys and dict(record.headers).get("ce_source") == wanted_source:
                        first.setdefault(key, record.timestamp)
    return first, last_arrival


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a running process, from /proc (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stage_alone(settings: Settings, service: str, size: int, log_dir: Path) -> dict[str, Any]:
    """The service alone on an input topic pre-filled with `size` events, each for a deal of its own."""
    began = time.perf_counter()
    inputs = _stage_inputs(service, size)
    await prepare_topics(settings, all_topics(settings))  # every topic an output may go to, so all are read
    await publish(settings, records_for(settings, ((event, None) for event in inputs)))
    processes = ServiceProcesses(settings, log_dir)
    started = time.perf_counter()
    processes.start(service)
    try:
        outputs, last_arrival = await first_outputs(
            settings,
            # Not the input topic: the stage writes elsewhere, and reading it would only cost time.
            [topic for topic in all_topics(settings) if topic != settings.topic(inputs[0].TOPIC)],
            f"/dealflow/{service}",
            {event.partition_key for event in inputs},
            timeout=max(120.0, size / 20),
            still_working=processes.check_alive,
        )
        commands = (await processes.database_commands())[service]
        peak = processes.peak_rss_mb().get(service)
        cpu = cpu_seconds(processes.processes[service].pid)
    finally:
        processes.stop()
    cost = steady_cost_ms(outputs.values(), at_least=settings.batch_max_records)
    run: dict[str, Any] = {
        "service": service,
        "size": size,
        "expected": size,
        "accounted": len(outputs),
        "seconds_from_start": round(last_arrival - started, 2),
        "cost_ms": None if cost is None else round(cost, 4),
        "cpu_seconds": cpu,
        "per_second": _rounded(per_second(cost), 1),
        "database_commands": commands,
        "round_trips_per_event": round(sum(commands.values()) / size, 3),
        "peak_rss_mb": peak,
    }
    shown = "-" if run["per_second"] is None else f"{run['per_second']:,.0f}/s"
    progress(
        f"stage alone: {service} {size:,} ... {shown}, {run['round_trips_per_event']} round trips/event"
        f" ({time.perf_counter() - began:.0f} s)"
    )
    return run


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def stage_summary(runs: list[dict[str, Any]], sizes: tuple[int, int, int], ceiling: float) -> dict[str, Any]:
    """Per stage: cost at each size, growth from the smallest to the largest, and at the middle size the
    rate against the ceiling and the round trips per event; peak memory at the largest."""
    small, middle, large = sizes
    summary = {}
    for service in dict.fromkeys(run["service"] for run in runs):
        by_size = {run["size"]: run for run in runs if run["service"] == service}
        summary[service] = {
            "cost_ms": {str(size): by_size[size]["cost_ms"] for size in sizes if size in by_size},
            "growth": _rounded(quotient(_cost(by_size, large), _cost(by_size, small)), 3),
            **marginal_cpu(by_size, sizes),
            "per_second": _per_second_at(by_size, middle),
            "ratio_to_ceiling": _rounded(quotient(_per_second_at(by_size, middle), ceiling), 3),
            "round_trips_per_event": by_size[middle]["round_trips_per_event"] if middle in by_size else None,
            "main_commands": main_commands(by_size[middle]["database_commands"], middle)
            if middle in by_size
            else "",
            "peak_rss_mb": by_size[large]["peak_rss_mb"] if large in by_size else None,
        }
    return summary


def _cost(by_size: dict[int, dict[str, Any]], size: int) -> float | None:
    return by_size[size]["cost_ms"] if size in by_size else None


def marginal_cpu(by_size: dict[int, dict[str, Any]], sizes: tuple[int, int, int]) -> dict[str, Any]:
    """The stage's own CPU per event as the data grows: what each further event cost between the small
    and the middle run, and between the middle and the large one (each run's CPU time includes the same
    start-up, which the difference leaves out), and how the second compares with the first."""
    used = {size: by_size[size].get("cpu_seconds") if size in by_size else None for size in sizes}
    steps: list[float | None] = []
    for fewer, more in itertools.pairwise(sizes):
        before, after = used[fewer], used[more]
        if before is None or after is None or more <= fewer:
            steps.append(None)
        else:
            steps.append(round((after - before) * 1000 / (more - fewer), 4))
    return {"cpu_ms": steps, "cpu_growth": _rounded(quotient(steps[1], steps[0]), 3)}


def _per_second_at(by_size: dict[int, dict[str, Any]], size: int) -> float | None:
    return by_size[size]["per_second"] if size in by_size else None


# --- end to end ----------------------------------------------------------------------------------


def stage_groups(settings: Settings) -> dict[str, list[str]]:
    """Each stage's consumer group and the topics it consumes, as the services subscribe them."""
    groups = {}
    for service in STAGE_SERVICES:
        definition: StageDefinition = import_module(f"services.{service}.service").definition()
        groups[settings.consumer_group(service)] = [settings.topic(t) for t in definition.input_topics]
    return groups


class BacklogWatch:
    """Samples the stages' backlog from Kafka's side: per group, end offsets minus committed offsets of
    its input partitions (a record counts once it is stored, published downstream and committed).

    Used as `async with BacklogWatch(settings) as watch:` right before the offering starts: entering
    opens the clients and takes one sample to warm them up, so sample times count from the offering.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.samples: list[LagSample] = []
        self.started = time.perf_counter()
        self._stop = asyncio.Event()
        self._clients = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BacklogWatch:
        groups = stage_groups(self.settings)
        self.partitions = {
            group: await existing_partitions(self.settings, topics) for group, topics in groups.items()
        }
        self.admin = await self._clients.enter_async_context(
            running(AIOKafkaAdminClient(**client_options(self.settings)))
        )
        self.consumer = await self._clients.enter_async_context(
            running(AIOKafkaConsumer(**client_options(self.settings), enable_auto_commit=False))
        )
        await self._sample()  # connections and group coordinators found before the clock starts
        self.started = time.perf_counter()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        try:
            if self._task is not None:
                await self._task
        finally:
            await self._clients.aclose()

    async def _run(self) -> None:
        while not self._stop.is_set():
            # A failed sample (say, a group coordinator still loading) is skipped: the next will do.
            with contextlib.suppress(KafkaError):
                self.samples.append(await self._sample())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), BACKLOG_SAMPLE_SECONDS)

    async def _sample(self) -> LagSample:
        # Committed offsets first, end offsets after: a record committed in between then still counts,
        # so a zero backlog means nothing was left. The sample is dated when the end offsets are in.
        groups = list(self.partitions)
        offsets = await asyncio.gather(*(self.admin.list_consumer_group_offsets(g) for g in groups))
        committed = dict(zip(groups, offsets, strict=True))
        ends = await self.consumer.end_offsets(sorted({tp for tps in self.partitions.values() for tp in tps}))
        at = time.perf_counter() - self.started
        backlog = arrived = 0
        for group, partitions in self.partitions.items():
            for tp in partitions:
                done = committed[group][tp].offset if tp in committed[group] else 0
                backlog += max(0, ends[tp] - done)
                arrived += ends[tp]
        return LagSample(round(at, 2), backlog, arrived)

    async def drained(self, timeout: float, still_working: Callable[[], None]) -> bool:
        """Wait until a new sample shows no backlog left (or the time is up); `still_working` raises if
        the consumers are gone."""
        deadline = time.monotonic() + timeout
        seen = len(self.samples)
        while time.monotonic() < deadline:
            if any(sample.backlog == 0 for sample in self.samples[seen:]):
                return True
            if self._task is not None and self._task.done():
                self._task.result()  # the watch failed: say why
                return False
            still_working()
            await asyncio.sleep(BACKLOG_SAMPLE_SECONDS / 2)
        return False


async def offer(producer: AIOKafkaProducer, batches: list[list[KafkaRecord]], per_second: float) -> float:
    """Publish the batches (one deal's lead and activities each), `per_second` batches a second on a
    fixed schedule (a late tick catches up); the seconds until the last was handed to the producer."""
    futures: list[asyncio.Future[Any]] = []
    started, sent = time.perf_counter(), 0
    while sent < len(batches):
        due = min(len(batches), int((time.perf_counter() - started) * per_second) + 1)
        for batch in batches[sent:due]:
            futures += await send(producer, batch)
        sent = due
        await asyncio.sleep(min(0.05, 1 / per_second))
    offered = time.perf_counter() - started
    await asyncio.gather(*futures)
    return offered


def deal_latencies_ms(events: list[SeenEvent], won: set[str]) -> list[float]:
    """Per won deal: its deal-won event's Kafka timestamp minus its lead's (the first of each)."""
    lead_at: dict[str, int] = {}
    won_at: dict[str, int] = {}
    for event in events:
        if event.key not in won:
            continue
        if event.topic.endswith(Topic.LEADS) and event.headers.get("ce_source") == CLI_SOURCE:
            lead_at[event.key] = min(event.timestamp_ms, lead_at.get(event.key, event.timestamp_ms))
        elif event.type == "deal.won.v1":
            won_at[event.key] = min(event.timestamp_ms, won_at.get(event.key, event.timestamp_ms))
    return sorted(float(won_at[key] - lead_at[key]) for key in won_at if key in lead_at)


async def end_to_end(
    settings: Settings, offered_per_second: float, seconds: float, log_dir: Path, purpose: str
) -> dict[str, Any]:
    """All four stages on scripted deals offered at a steady rate for `seconds`; every deal verified."""
    began = time.perf_counter()
    leads = max(1, round(offered_per_second * seconds))
    deals = scripted_deals(leads, prefix="e2e", seed=11)
    won = {deal.deal_id for deal in deals if deal.outcome == "won"}
    await prepare_topics(settings, all_topics(settings))  # the watch reads every input from the start
    # Encoded before the clock starts, so the offering is only the sending.
    batches = [records_for(settings, ((event, None) for event in deal.events)) for deal in deals]
    processes = ServiceProcesses(settings, log_dir)
    processes.start(*STAGE_SERVICES)
    try:
        await processes.wait_ready()
        async with running(make_producer(settings)) as producer, BacklogWatch(settings) as watch:
            offered = await offer(producer, batches, offered_per_second)
            # Bounded: a pipeline that cannot drain this in time fails the counts; it does not hang.
            drained = await watch.drained(120 + leads / 10, still_working=processes.check_alive)
        events = await _verified_events(settings, deals)
        commands = await processes.database_commands()
        peaks = processes.peak_rss_mb()
    finally:
        processes.stop()
    verification = verify(deals, events)
    latencies = deal_latencies_ms(events, won)
    run: dict[str, Any] = {
        "purpose": purpose,
        "offered_per_second": offered_per_second,
        "achieved_per_second": round(leads / offered, 1) if offered > 0 else None,
        "offer_seconds": round(offered, 2),
        "leads": leads,
        "deals_verified": verification.verified,
        "deals_won": len(latencies),
        "deals_won_expected": len(won),
        "latency_ms": {name: round(value, 1) for name, value in percentiles(latencies).items()},
        "backlog": _backlog_figures(watch.samples, offered, drained),
        "round_trips_per_lead": round(sum(sum(c.values()) for c in commands.values()) / leads, 2),
        "peak_rss_mb": peaks,
    }
    trend = "grows" if run["backlog"]["grows"] else "steady"
    progress(
        f"end to end: {offered_per_second:g} leads/s offered for {offered:.0f} s ... "
        f"p99 {run['latency_ms'].get('p99', '-')} ms, backlog {trend} ({time.perf_counter() - began:.0f} s)"
    )
    return run


def _backlog_figures(samples: list[LagSample], offered: float, drained: bool) -> dict[str, Any]:
    verdict = backlog_verdict(samples, offered)
    return {
        "middle": round(verdict.middle, 1),
        "end": round(verdict.end, 1),
        "arriving_per_second": round(verdict.arriving_per_second, 1),
        "grows": verdict.grows,
        "drain_seconds": _rounded(drain_seconds(samples, offered), 2) if drained else None,
        "samples": [[sample.at, sample.backlog] for sample in samples],  # [seconds, records]
    }


async def _verified_events(settings: Settings, deals: list[ScriptedDeal]) -> list[SeenEvent]:
    """Every record of the namespace, read again (briefly) until every deal shows what it should."""
    deadline = time.monotonic() + 30
    while True:
        events = await read_all(settings, all_topics(settings))
        if verify(deals, events).ok or time.monotonic() >= deadline:
            return events
        await asyncio.sleep(1)


async def sustained_search(
    measured: list[dict[str, Any]], measure: Callable[[float], Awaitable[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Step up the ladder, reusing measured rates, until a step's backlog grows; the new runs."""
    done = {run["offered_per_second"]: run for run in measured}
    added = []
    for rate in RATE_LADDER:
        if rate not in done:
            done[rate] = await measure(rate)
            added.append(done[rate])
        if done[rate]["backlog"]["grows"]:
            break
    return added


# --- the run -------------------------------------------------------------------------------------


def machine(settings: Settings) -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kafka_bootstrap_servers": settings.kafka_bootstrap_servers,
        "mongodb_uri": settings.mongodb_uri.get_secret_value().split("@")[-1],
        "partitions": settings.partitions,
        "batch_max_records": settings.batch_max_records,
    }


Measured = TypeVar("Measured")


class Namespaces:
    """A fresh namespace per run, under one prefix, deleted when the run ends."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.model_copy(update={"namespace": f"bench{uuid.uuid4().hex[:6]}"})
        self.runs = 0

    def fresh(self, tag: str) -> Settings:
        # The running number first: one namespace's name is never the prefix of another's.
        self.runs += 1
        return self.root.model_copy(update={"namespace": f"{self.root.namespace}{self.runs:02d}{tag}"})

    async def measured(self, tag: str, measure: Callable[[Settings], Awaitable[Measured]]) -> Measured:
        settings = self.fresh(tag)
        try:
            return await measure(settings)
        finally:
            await delete_namespace(settings)


async def run(settings: Settings, count: int, rate: float, log_dir: Path) -> dict[str, Any]:
    namespaces = Namespaces(settings)
    sizes = stage_sizes(count)
    try:
        baselines = await measure_baselines(namespaces, sizes[1])
        stages = await measure_stages(namespaces, sizes, log_dir)
        flows = await measure_flows(namespaces, offer_seconds(count), rate, log_dir)
    finally:
        await delete_namespace(namespaces.root)  # whatever a failed run left behind
    highest, first_growing = sustained_rates(flows)
    report = {
        "machine": machine(settings),
        "count": count,
        "rate": rate,
        "sizes": list(sizes),
        "baselines": baselines,
        "stage_runs": stages,
        "stages": stage_summary(stages, sizes, baselines["ceiling_per_second"]),
        "end_to_end": sorted(flows, key=lambda flow: flow["offered_per_second"]),
        "highest_sustained_per_second": highest,
        "first_growing_per_second": first_growing,
    }
    return report | {"targets": targets(report)}


async def measure_baselines(namespaces: Namespaces, size: int) -> dict[str, Any]:
    kafka = await baseline(
        "aiokafka consume + produce",
        kafka_baseline,
        [namespaces.fresh("k") for _ in range(BASELINE_RUNS)],
        size,
    )
    database = await baseline(
        "PyMongo bulk upsert, 500 per call",
        database_baseline,
        [namespaces.fresh("d") for _ in range(BASELINE_RUNS)],
        size,
    )
    # A stage needs both servers, so the slower of the two bounds it.
    return {
        "kafka": kafka,
        "database": database,
        "ceiling_per_second": min(kafka["per_second"], database["per_second"]),
    }


async def measure_stages(
    namespaces: Namespaces, sizes: tuple[int, int, int], log_dir: Path
) -> list[dict[str, Any]]:
    return [
        await namespaces.measured(
            f"{service[:4]}{size}", partial(stage_alone, service=service, size=size, log_dir=log_dir)
        )
        for service in STAGE_SERVICES
        for size in sizes
    ]


async def measure_flows(
    namespaces: Namespaces, seconds: float, rate: float, log_dir: Path
) -> list[dict[str, Any]]:
    """The latency runs (LATENCY_RATES and `rate`), then the ladder up to the first growing backlog."""

    async def at(offered: float, purpose: str) -> dict[str, Any]:
        measure = partial(
            end_to_end, offered_per_second=offered, seconds=seconds, log_dir=log_dir, purpose=purpose
        )
        return await namespaces.measured(f"e{offered:.0f}", measure)

    flows = [await at(offered, "latency") for offered in sorted({*LATENCY_RATES, rate})]
    return flows + await sustained_search(flows, partial(at, purpose="search"))


# --- targets, table and checks -------------------------------------------------------------------


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 15 with its measured value and whether it is met."""
    small, middle, large = report["sizes"]
    stages = report["stages"]
    return [
        _worst(
            f"every stage alone >= {TARGET_RATIO}x min(Kafka, database) at {middle:,}",
            {service: figures["ratio_to_ceiling"] for service, figures in stages.items()},
            lowest=True,
            unit="x",
            holds=lambda ratio: ratio >= TARGET_RATIO,
        ),
        _worst(
            f"per-event cost at {large:,} <= {TARGET_GROWTH}x that at {small:,}",
            {service: figures["growth"] for service, figures in stages.items()},
            lowest=False,
            unit="x",
            holds=lambda growth: growth <= TARGET_GROWTH,
        ),
        _latency_target(report["end_to_end"]),
        _steady_target(report["end_to_end"]),
        _worst(
            f"peak RSS of every service < {TARGET_PEAK_RSS_MB:g} MB at {large:,} events",
            {service: figures["peak_rss_mb"] for service, figures in stages.items()},
            lowest=False,
            unit=" MB",
            holds=lambda peak: peak < TARGET_PEAK_RSS_MB,
        ),
    ]


def _worst(
    target: str, values: dict[str, float | None], *, lowest: bool, unit: str, holds: Callable[[float], bool]
) -> dict[str, Any]:
    """A target every stage must meet, measured by its worst stage; one unknown value fails it."""
    known = {service: value for service, value in values.items() if value is not None}
    if not known or len(known) < len(values):
        missing = ", ".join(service for service, value in values.items() if value is None)
        return {"target": target, "measured": f"not measured ({missing or 'no stage'})", "met": False}
    service = (min if lowest else max)(known, key=lambda name: known[name])
    word = "lowest" if lowest else "highest"
    return {
        "target": target,
        "measured": f"{word} {known[service]:g}{unit} ({service})",
        "met": all(holds(value) for value in known.values()),
    }


def _flow_at(flows: list[dict[str, Any]], offered: float) -> dict[str, Any] | None:
    return next((flow for flow in flows if flow["offered_per_second"] == offered), None)


def _latency_target(flows: list[dict[str, Any]]) -> dict[str, Any]:
    target = f"p99 lead -> deal won at {TARGET_P99_RATE:g} leads/s offered < {TARGET_P99_MS:g} ms"
    flow = _flow_at(flows, TARGET_P99_RATE)
    p99 = None if flow is None else flow["latency_ms"].get("p99")
    if p99 is None:
        return {"target": target, "measured": "not measured", "met": False}
    return {"target": target, "measured": f"p99 {p99:g} ms", "met": p99 < TARGET_P99_MS}


def _steady_target(flows: list[dict[str, Any]]) -> dict[str, Any]:
    target = f"backlog does not grow at {TARGET_STEADY_RATE:g} leads/s offered"
    flow = _flow_at(flows, TARGET_STEADY_RATE)
    if flow is None:
        return {"target": target, "measured": "not measured", "met": False}
    backlog = flow["backlog"]
    trend = f"{backlog['middle']:,.0f} -> {backlog['end']:,.0f} records"
    return {
        "target": target,
        "measured": f"{'grows' if backlog['grows'] else 'steady'}: {trend}",
        "met": not backlog["grows"],
    }


def columns(rows: list[list[str]], align: str, indent: str = "  ") -> list[str]:
    """Rows as aligned text columns; `align` has one letter per column, "l" or "r"."""
    widths = [max(len(row[index]) for row in rows) for index in range(len(align))]
    return [
        indent
        + "  ".join(
            cell.ljust(width) if side == "l" else cell.rjust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ).rstrip()
        for row in rows
    ]


def _figure(value: float | None, format_spec: str = ",.0f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{format_spec}}{suffix}"


def table(report: dict[str, Any]) -> str:
    """The whole report as text: baselines, stages alone, end to end, targets, machine."""
    lines = [f"dealflow bench --count {report['count']:,} --rate {report['rate']:g}"]
    for section in (_baseline_lines, _stage_lines, _flow_lines, _target_lines):
        lines += ["", *section(report)]
    lines += ["", "machine: " + ", ".join(f"{key}={value}" for key, value in report["machine"].items())]
    return "\n".join(lines)


def _baseline_lines(report: dict[str, Any]) -> list[str]:
    baselines = report["baselines"]
    rows = [["baseline", "events/s", "runs"]]
    for kind in ("kafka", "database"):
        figures = baselines[kind]
        runs = " ".join(f"{rate:,.0f}" for rate in figures["runs_per_second"])
        rows.append([f"{kind}: {figures['name']}", _figure(figures["per_second"]), runs])
    rows.append(["ceiling = min(Kafka, database)", _figure(baselines["ceiling_per_second"]), ""])
    heading = f"baselines at {report['sizes'][1]:,} events (median of {BASELINE_RUNS} runs)"
    return [heading, *columns(rows, "lrl")]


def _stage_lines(report: dict[str, Any]) -> list[str]:
    small, middle, large = report["sizes"]
    rows = [
        [
            "stage",
            f"ms/event at {small:,} / {middle:,} / {large:,}",
            "growth",
            f"CPU ms/event {small:,}-{middle:,} / {middle:,}-{large:,}",
            "CPU growth",
            f"events/s at {middle:,}",
            "x ceiling",
            "round trips/event",
            "main commands per event",
            f"peak RSS at {large:,}",
        ]
    ]
    for service, figures in report["stages"].items():
        rows.append(
            [
                service,
                " / ".join(_figure(cost, ".2f") for cost in figures["cost_ms"].values()),
                _figure(figures["growth"], ".2f", "x"),
                " / ".join(_figure(cost, ".2f") for cost in figures.get("cpu_ms", [])),
                _figure(figures.get("cpu_growth"), ".2f", "x"),
                _figure(figures["per_second"]),
                _figure(figures["ratio_to_ceiling"], ".3f", "x"),
                _figure(figures["round_trips_per_event"], ".3g"),
                figures["main_commands"],
                _figure(figures["peak_rss_mb"], ".0f", " MB"),
            ]
        )
    heading = (
        "stages alone (cost per event over the steady part: first batch's outputs to the last output;"
        " CPU: the stage process's own CPU time per further event, from one size to the next)"
    )
    return [heading, *columns(rows, "lrrrrrrrlr")]


def _flow_lines(report: dict[str, Any]) -> list[str]:
    rows = [
        [
            "leads/s offered",
            "achieved",
            "leads",
            "won",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "backlog mid -> end",
            "grows",
            "drain s",
            "round trips/lead",
            "peak RSS",
        ]
    ]
    for flow in report["end_to_end"]:
        backlog = flow["backlog"]
        rows.append(
            [
                _figure(flow["offered_per_second"], "g"),
                _figure(flow["achieved_per_second"], ",.1f"),
                f"{flow['leads']:,}",
                f"{flow['deals_won']:,}",
                *(_figure(flow["latency_ms"].get(name)) for name in ("p50", "p95", "p99", "max")),
                f"{backlog['middle']:,.0f} -> {backlog['end']:,.0f}",
                "yes" if backlog["grows"] else "no",
                _figure(backlog["drain_seconds"], ".1f"),
                _figure(flow["round_trips_per_lead"], ".1f"),
                _figure(max(flow["peak_rss_mb"].values(), default=None), ".0f", " MB"),
            ]
        )
    highest, first_growing = report["highest_sustained_per_second"], report["first_growing_per_second"]
    sustained = "none on the ladder" if highest is None else f"{highest:g} leads/s"
    if first_growing is not None:
        sustained += f" (it grew at {first_growing:g})"
    return [
        "end to end (each lead published with its activities; latency from lead to deal won)",
        *columns(rows, "rrrrrrrrrlrrr"),
        f"  highest offered rate without a growing backlog: {sustained}",
    ]


def _target_lines(report: dict[str, Any]) -> list[str]:
    rows = [["target", "measured", "met"]]
    rows += [[t["target"], t["measured"], "met" if t["met"] else "not met"] for t in report["targets"]]
    return ["targets", *columns(rows, "lll"), *_cpu_growth_line(report)]


def _cpu_growth_line(report: dict[str, Any]) -> list[str]:
    """What the growth target's wall-clock figure is made of: the stages' own CPU per event."""
    growths = {
        service: figures["cpu_growth"]
        for service, figures in report["stages"].items()
        if figures.get("cpu_growth") is not None
    }
    if not growths:
        return []
    worst = max(growths, key=lambda service: growths[service])
    small, middle, large = report["sizes"]
    return [
        f"  (the stages' own CPU per further event, {middle:,}-{large:,} against {small:,}-{middle:,}:"
        f" highest {growths[worst]:.2f}x, {worst})"
    ]


def counts_add_up(report: dict[str, Any]) -> list[str]:
    """Every measured run must account for every event it was given."""
    problems = [
        f"stage alone {run['service']} {run['size']:,}: {run['accounted']:,} of {run['expected']:,} inputs"
        for run in report["stage_runs"]
        if run["accounted"] != run["expected"]
    ]
    problems += [
        f"end to end {flow['offered_per_second']:g} leads/s: {flow['deals_verified']:,} of {flow['leads']:,}"
        " deals as scripted"
        for flow in report["end_to_end"]
        if flow["deals_verified"] != flow["leads"] or flow["deals_won"] != flow["deals_won_expected"]
    ]
    return problems


def main(count: int, rate: float) -> dict[str, Any]:
    log_dir = REPO / ".local" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(run(Settings(), count, rate, log_dir))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    return report
