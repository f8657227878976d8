"""Smoke test of scripts/bench_scale.py: one quick run (three preloaded nodes and a joiner).

It checks the shape of the output (every figure measured, the JSON keys as
documented) and that no process outlives the script; the figures are the
benchmark's business, not a pass/fail here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_bench_cluster import agents_using

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_scale.py"
FIGURES = {
    "preload_s",
    "join_s",
    "join_longest_stall_ms",
    "joiner_stalls",
    "cluster_stalls",
    "joiner_longest_stall_ms",
    "false_suspicions",
    "bytes_per_instance",
    "cpu_pct_per_node",
    "udp_pkts_per_node_s",
    "tcp_bytes_per_node_s",
    "queue_depth",
}
TIMEOUT = 120.0
"""Seconds for the quick run (about 8 s: four process starts, 2,000 instances, 2 s idle)."""


@pytest.mark.slow
def test_quick_run_reports_every_figure_and_stops_every_process(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    workdir = tmp_path / "work"
    argv = [sys.executable, str(SCRIPT), "--quick", "--json", str(out), "--workdir", str(workdir)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert agents_using(workdir) == []
    assert "join_s" in result.stdout
    report = json.loads(out.read_text())
    [row] = report["rows"]
    assert set(row) == FIGURES | {
        "nodes",
        "instances",
        "per_node",
        "joiner_longest_stall_task",
        "join_stalls_where",
    }
    assert (row["nodes"], row["instances"]) == (3, 3 * row["per_node"])
    for key in FIGURES:
        value = row[key]
        assert isinstance(value, int | float), f"{key} = {value!r}"
        assert math.isfinite(value), f"{key} = {value!r}"
        assert value >= 0, f"{key} = {value!r}"
    assert report["discover_us"] > 0
