"""Smoke tests of the large-registry benchmarks: churn, reads, steady state, simulator.

Each runs its script's ``--quick`` mode (seconds) and checks the shape of
the output: every figure measured and finite where it must be, the JSON
keys as documented, and no process left behind. The figures themselves are
the benchmarks' business, not a pass/fail here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_bench_cluster import agents_using

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
TIMEOUT = 180.0
"""Seconds for one quick run (5-30 s each on two loaded cores)."""


def quick(script: str, tmp_path: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    """Run ``script --quick``; (its stdout, its JSON), once every process it started is gone."""
    out, workdir = tmp_path / "bench.json", tmp_path / "work"
    argv = [sys.executable, str(SCRIPTS / script), "--quick", "--json", str(out), *extra]
    if "--workdir" not in extra and script != "bench_sim_table.py":
        argv += ["--workdir", str(workdir)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert agents_using(tmp_path) == []
    report: dict[str, Any] = json.loads(out.read_text())
    return result.stdout, report


def finite(row: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = row[key]
        assert isinstance(value, int | float), f"{key} = {value!r}"
        assert math.isfinite(value), f"{key} = {value!r}"
        assert value >= 0, f"{key} = {value!r}"


@pytest.mark.slow
def test_churn_quick_run_reports_every_figure_and_stops_every_agent(tmp_path: Path) -> None:
    stdout, report = quick("bench_churn.py", tmp_path)
    [cluster] = report["clusters"]
    [run] = cluster["runs"]
    assert cluster["nodes"] == 3
    assert "p99_s" in stdout
    assert run["ops"] == 80  # 40 ops/s for 2 s
    finite(run, ("achieved_rate", "missing", "refused", "longest_stall_ms", "cpu_pct_agents"))
    finite(run, ("false_suspicions", "false_deaths"))
    seen = [run[k] for k in ("p50_s", "p99_s", "max_s") if run[k] is not None]
    assert seen == sorted(seen)  # None only for what was late: over the drain


@pytest.mark.slow
def test_reads_quick_run_compares_the_same_lookups_on_both_tables(tmp_path: Path) -> None:
    stdout, report = quick("bench_reads.py", tmp_path)
    assert "large/small" in stdout
    assert report["large"]["entries"] == 5000
    assert report["large"]["target_instances"] == report["small"]["target_instances"] == 5
    assert report["small"]["entries"] == 999 + 5
    finite(report["median"], ("service_ratio", "catalog_ratio", "service_large_per_s"))
    assert report["large"]["discover_us"] > 0


@pytest.mark.slow
def test_steady_quick_run_measures_idle_cost_once_the_queues_are_empty(tmp_path: Path) -> None:
    stdout, report = quick("bench_steady.py", tmp_path)
    small, large = report["rows"]
    assert (small["instances"], large["instances"]) == (150, 600)
    for row in (small, large):
        assert row["drained"] is True
        assert row["queue_depth"] == 0
        finite(row, ("preload_s", "drain_s", "cpu_pct_per_node", "udp_pkts_per_node_s"))
        finite(row, ("sync_bytes_per_node_s", "syncs", "entries_repaired"))
    assert "against" in stdout


@pytest.mark.slow
def test_simulator_quick_run_converges_and_reports_traffic(tmp_path: Path) -> None:
    _, report = quick("bench_sim_table.py", tmp_path)
    [row] = report["rows"]
    assert (row["nodes"], row["instances"]) == (20, 400)
    finite(row, ("converged_s", "udp_msgs_per_node_s", "sync_kib_per_node_s", "wall_s"))
    assert row["held_pct"] == 100.0
