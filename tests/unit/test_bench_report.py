"""The benchmark's own arithmetic and report, without servers: costs, growth, ratios, the backlog verdict,
the highest sustained rate, database round trips from /metrics, targets, the table and the count check.

No test here asserts a time: the figures are made up, only what the bench does with them is checked.
"""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from cli import bench
from cli.bench import LagSample
from shared.metrics import StageMetrics
from shared.mongo import CommandCounter

SIZES = (1_000, 5_000, 20_000)


def stage_run(service: str, size: int, cost_ms: float | None, **overrides: Any) -> dict[str, Any]:
    run = {
        "service": service,
        "size": size,
        "expected": size,
        "accounted": size,
        "seconds_from_start": 1.0,
        "cost_ms": cost_ms,
        "per_second": bench.per_second(cost_ms),
        "database_commands": {"update": size * 2 / 500, "find": size / 500, "createIndexes": 3.0},
        "round_trips_per_event": (size * 3 / 500 + 3) / size,
        "peak_rss_mb": 90.0 + size / 1000,
    }
    return run | overrides


def flow(offered: float, *, p99: float, grows: bool, **overrides: Any) -> dict[str, Any]:
    leads = int(offered * 15)
    result = {
        "purpose": "latency",
        "offered_per_second": offered,
        "achieved_per_second": offered,
        "offer_seconds": 15.0,
        "leads": leads,
        "deals_verified": leads,
        "deals_won": leads // 2,
        "deals_won_expected": leads // 2,
        "latency_ms": {"p50": p99 / 2, "p95": p99 * 0.9, "p99": p99, "max": p99 * 1.1},
        "backlog": {
            "middle": 100.0,
            "end": 5_000.0 if grows else 120.0,
            "arriving_per_second": 1_000.0,
            "grows": grows,
            "drain_seconds": 9.0 if grows else 0.5,
            "samples": [],
        },
        "round_trips_per_lead": 1.5,
        "peak_rss_mb": {"prospecting": 80.0, "qualification": 95.0},
    }
    return result | overrides


def report(stage_runs: list[dict[str, Any]], flows: list[dict[str, Any]]) -> dict[str, Any]:
    """A report put together as bench.run does, from made-up runs."""
    ceiling = 2_000.0
    highest, first_growing = bench.sustained_rates(flows)
    built = {
        "machine": {"cores": 2, "cpu": "test"},
        "count": SIZES[-1],
        "rate": 200.0,
        "sizes": list(SIZES),
        "baselines": {
            "kafka": {"name": "aiokafka", "count": 5_000, "per_second": 14_000.0, "runs_per_second": [1.0]},
            "database": {"name": "bulk", "count": 5_000, "per_second": ceiling, "runs_per_second": [1.0]},
            "ceiling_per_second": ceiling,
        },
        "stage_runs": stage_runs,
        "stages": bench.stage_summary(stage_runs, SIZES, ceiling),
        "end_to_end": flows,
        "highest_sustained_per_second": highest,
        "first_growing_per_second": first_growing,
    }
    return built | {"targets": bench.targets(built)}


def good_stage_runs() -> list[dict[str, Any]]:
    # 0.8 ms per event = 1,250/s at the middle size: 0.625x the 2,000/s ceiling; growth 0.9/0.8.
    return [
        stage_run(service, size, cost)
        for service in ("prospecting", "qualification")
        for size, cost in zip(SIZES, (0.8, 0.8, 0.9), strict=True)
    ]


def test_sizes_are_n_over_20_n_over_4_and_n() -> None:
    assert bench.stage_sizes(20_000) == (1_000, 5_000, 20_000)
    assert bench.stage_sizes(10) == (1, 2, 10)


def test_offering_lasts_between_5_and_15_seconds() -> None:
    assert bench.offer_seconds(500) == 5.0
    assert bench.offer_seconds(20_000) == 15.0


def test_steady_cost_starts_after_the_first_burst_of_outputs() -> None:
    # Two batches of 500, the second 100 ms after the first: 0.2 ms per event, not 0.1.
    assert bench.steady_cost_ms([0] * 500 + [100] * 500) == pytest.approx(0.2)
    # Outputs spread within each burst do not change that.
    bursts = [*range(0, 10), *range(100, 110), *range(200, 210)]
    assert bench.steady_cost_ms(bursts) == pytest.approx((209 - 9) / 20)
    # A steady stream, 5 ms apart, one event per output.
    assert bench.steady_cost_ms(range(0, 2_000, 5)) == pytest.approx(5.0)


@pytest.mark.parametrize("stamps", [[], [7], [5, 5, 5], [1, 2, 3]])
def test_one_burst_says_nothing_about_cost(stamps: list[int]) -> None:
    assert bench.steady_cost_ms(stamps) is None


def test_less_than_a_batch_after_the_first_burst_is_too_little_to_time() -> None:
    assert bench.steady_cost_ms([0] * 500 + [100] * 499, at_least=500) is None
    assert bench.steady_cost_ms([0] * 500 + [100] * 500, at_least=500) == pytest.approx(0.2)


def test_the_stages_own_cpu_per_further_event_leaves_the_start_up_out() -> None:
    # 1.2 s to start, then 0.8 ms per event up to 5,000 and 1.0 ms per event after it
    used = {1_000: 1.2 + 0.8, 5_000: 1.2 + 4.0, 20_000: 1.2 + 4.0 + 15.0}
    runs = {size: {"cpu_seconds": seconds} for size, seconds in used.items()}
    figures = bench.marginal_cpu(runs, (1_000, 5_000, 20_000))
    assert figures["cpu_ms"] == [pytest.approx(0.8), pytest.approx(1.0)]
    assert figures["cpu_growth"] == pytest.approx(1.25)
    runs[20_000] = {"cpu_seconds": None}  # the process was gone before it was read
    assert bench.marginal_cpu(runs, (1_000, 5_000, 20_000)) == {"cpu_ms": [0.8, None], "cpu_growth": None}


def test_the_cpu_time_of_a_running_process_is_read_from_proc() -> None:
    used = bench.cpu_seconds(os.getpid())
    assert used is not None
    assert used > 0
    assert bench.cpu_seconds(2**22 + 12345) is None  # no such process


def test_quotient_is_unknown_without_both_figures() -> None:
    assert bench.quotient(3.0, 2.0) == 1.5
    assert bench.quotient(None, 2.0) is None
    assert bench.quotient(3.0, None) is None
    assert bench.quotient(3.0, 0.0) is None
    assert bench.per_second(None) is None
    assert bench.per_second(4.0) == 250.0


def test_baseline_rate_is_the_median_run() -> None:
    assert bench.median_rate(1_000, [1.0, 0.5, 2.0]) == 1_000.0


def test_percentiles() -> None:
    values = [float(n) for n in range(1, 101)]
    figures = bench.percentiles(values)
    assert figures["p50"] == pytest.approx(50.5)
    assert figures["p99"] == pytest.approx(99.01)
    assert figures["max"] == 100.0
    assert bench.percentiles([]) == {}
    assert bench.percentiles([7.0]) == {"p50": 7.0, "p95": 7.0, "p99": 7.0, "max": 7.0}


def samples(backlogs: list[int], *, every: float = 0.5, arriving: int = 1_000) -> list[LagSample]:
    return [
        LagSample(at=n * every, backlog=backlog, arrived=int(n * every * arriving))
        for n, backlog in enumerate(backlogs)
    ]


def test_a_backlog_that_wobbles_does_not_grow() -> None:
    verdict = bench.backlog_verdict(samples([0, 300, 100, 400, 200, 300, 100, 400, 250, 350, 0]), 5.0)
    assert verdict.arriving_per_second == pytest.approx(1_000)
    assert not verdict.grows


def test_a_backlog_that_climbs_grows() -> None:
    verdict = bench.backlog_verdict(samples([n * 300 for n in range(11)]), 5.0)
    assert verdict.end - verdict.middle > 500  # more than half a second of the 1,000 records/s arriving
    assert verdict.grows


def test_too_few_samples_are_no_evidence_of_growth() -> None:
    assert not bench.backlog_verdict(samples([5_000]), 5.0).grows


def test_drain_is_timed_from_the_end_of_the_offering() -> None:
    assert bench.drain_seconds(samples([10, 10, 10, 500, 200, 0]), 1.0) == pytest.approx(1.5)
    assert bench.drain_seconds(samples([10, 10, 10, 500]), 1.0) is None


def test_the_highest_sustained_rate_is_the_last_ladder_step_before_growth() -> None:
    flows = [flow(20, p99=1, grows=False), flow(50, p99=1, grows=False), flow(100, p99=1, grows=False)]
    flows += [flow(200, p99=1, grows=True), flow(400, p99=1, grows=False)]
    assert bench.sustained_rates(flows) == (100, 200)
    assert bench.sustained_rates([flow(20, p99=1, grows=True)]) == (None, 20)
    assert bench.sustained_rates([flow(20, p99=1, grows=False), flow(33, p99=1, grows=True)]) == (20, None)


async def test_the_search_climbs_until_the_backlog_grows_reusing_measured_rates() -> None:
    measured_rates: list[float] = []

    async def measure(offered: float) -> dict[str, Any]:
        measured_rates.append(offered)
        return flow(offered, p99=1, grows=offered >= 400)

    added = await bench.sustained_search(
        [flow(20, p99=1, grows=False), flow(200, p99=1, grows=False)], measure
    )
    assert measured_rates == [50, 100, 400]
    assert [run["offered_per_second"] for run in added] == [50, 100, 400]


def test_database_round_trips_are_read_from_a_services_metrics() -> None:
    counter = CommandCounter("dealflow-bench-test")
    for name in ("update", "update", "find"):
        counter.started(SimpleNamespace(command_name=name))  # type: ignore[arg-type]
    commands = bench.database_commands(StageMetrics("bench-test").exposition().decode())
    assert commands["update"] >= 2
    assert commands["find"] >= 1
    assert bench.main_commands({"update": 20.0, "find": 10.0, "insert": 1.0, "ping": 0.5}, 10) == (
        "update 2, find 1, insert 0.1"
    )


def test_stage_summary_holds_growth_ratio_and_round_trips() -> None:
    summary = bench.stage_summary(good_stage_runs(), SIZES, 2_000.0)["qualification"]
    assert summary["growth"] == pytest.approx(0.9 / 0.8, abs=0.001)
    assert summary["per_second"] == 1_250.0
    assert summary["ratio_to_ceiling"] == pytest.approx(0.625)
    assert summary["round_trips_per_event"] == pytest.approx((5_000 * 3 / 500 + 3) / 5_000)
    assert summary["peak_rss_mb"] == 110.0  # at the largest size


def test_targets_met() -> None:
    flows = [flow(20, p99=100, grows=False), flow(50, p99=200, grows=False), flow(200, p99=300, grows=False)]
    verdicts = report(good_stage_runs(), flows)["targets"]
    assert [target["met"] for target in verdicts] == [True] * 5
    assert verdicts[0]["measured"] == "lowest 0.625x (prospecting)"
    assert verdicts[2]["measured"] == "p99 200 ms"
    assert verdicts[4]["measured"] == "highest 110 MB (prospecting)"


def test_targets_not_met_name_the_worst_stage() -> None:
    runs = good_stage_runs()
    runs[-1] = stage_run("qualification", 20_000, 2.0, peak_rss_mb=164.0)  # 2.5x its cost at 1,000
    runs[-2] = stage_run("qualification", 5_000, 4.0)  # 250/s: 0.125x the ceiling
    flows = [flow(50, p99=672, grows=False), flow(200, p99=9_000, grows=True)]
    verdicts = report(runs, flows)["targets"]
    assert [target["met"] for target in verdicts] == [False] * 5
    assert verdicts[0]["measured"] == "lowest 0.125x (qualification)"
    assert verdicts[1]["measured"] == "highest 2.5x (qualification)"
    assert verdicts[3]["measured"] == "grows: 100 -> 5,000 records"
    assert verdicts[4]["measured"] == "highest 164 MB (qualification)"


def test_a_target_not_measured_is_not_met() -> None:
    runs = [stage_run("onboarding", size, None) for size in SIZES]  # no cost: each run was one batch
    verdicts = report(runs, [])["targets"]
    assert [target["met"] for target in verdicts] == [False, False, False, False, True]  # RSS is known
    assert verdicts[0]["measured"] == "not measured (onboarding)"
    assert verdicts[2]["measured"] == "not measured"


def test_the_table_shows_every_section_aligned() -> None:
    flows = [flow(50, p99=672, grows=False), flow(200, p99=9_000, grows=True)]
    text = bench.table(report(good_stage_runs(), flows))
    lines = text.splitlines()
    for heading in ("baselines at 5,000 events", "stages alone", "end to end", "targets", "machine:"):
        assert any(line.startswith(heading) for line in lines), heading
    assert "highest offered rate without a growing backlog: 50 leads/s (it grew at 200)" in text
    target_rows = lines[lines.index("targets") + 1 :]
    met_column = target_rows[0].index("met")
    assert all(row[met_column:].startswith(("met", "not met")) for row in target_rows[1:6])
    stage_header = next(line for line in lines if line.strip().startswith("stage "))
    assert "ms/event at 1,000 / 5,000 / 20,000" in stage_header


def test_columns_align_left_and_right() -> None:
    assert bench.columns([["a", "1"], ["long", "100"]], "lr", indent="") == ["a       1", "long  100"]


def test_counts_add_up_when_every_run_accounts_for_every_event() -> None:
    flows = [flow(50, p99=1, grows=False)]
    assert bench.counts_add_up(report(good_stage_runs(), flows)) == []


def test_counts_that_do_not_add_up_are_named() -> None:
    runs = [*good_stage_runs(), stage_run("proposal", 5_000, 1.0, accounted=4_999)]
    flows = [flow(50, p99=1, grows=False, deals_verified=700)]
    assert bench.counts_add_up(report(runs, flows)) == [
        "stage alone proposal 5,000: 4,999 of 5,000 inputs",
        "end to end 50 leads/s: 700 of 750 deals as scripted",
    ]


def test_the_port_a_process_listens_on_is_read_from_proc() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        assert bench.listening_port(os.getpid()) != server.getsockname()[1]  # bound, not listening
        server.listen()
        assert bench.listening_port(os.getpid()) == server.getsockname()[1]
