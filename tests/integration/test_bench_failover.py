"""Smoke test of scripts/bench_failover.py: one trial of each path on a tiny cluster.

Beyond the shape of the output, two bounds the design promises are
checked, loosely enough not to flake on a busy machine: a killed
instance leaves the client's list within a check's interval + timeout
plus a few seconds of gossip and scheduling, and a caller pays at most
one retry per call for it (two attempts), with no failed call.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_bench_cluster import agents_using

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_failover.py"
TIMEOUT = 90.0
"""Seconds for the whole run (about 20 s: four agents, two instances, SWIM detection of n4)."""
CHECK_BOUND = 1.5
"""The benchmark's check: interval 1 s + timeout 500 ms."""
SLACK = 3.0
"""Seconds of gossip, blocking-query wake-up and a loaded machine on top of a check."""
EJECT_AFTER = 3
"""The client's default: failures in a row before an instance is ejected."""


@pytest.mark.slow
def test_one_trial_of_each_path_reports_sane_figures_and_stops_every_process(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    workdir = tmp_path / "work"
    argv = [sys.executable, str(SCRIPT), "--trials", "1", "--node-trials", "1"]
    argv += ["--instances", "2", "--callers", "1", "--json", str(out), "--workdir", str(workdir)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert agents_using(workdir) == []  # agents and http.server instances alike
    assert "PASS" in result.stdout, result.stdout
    rows = {row["path"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"passive", "active", "node"}
    for row in rows.values():
        assert (row["trials"], row["misses"]) == (1, 0), row
        assert 0 < row["median_s"] <= row["p90_s"] <= row["max_s"], row
    assert rows["passive"]["max_s"] <= CHECK_BOUND + SLACK
    active = rows["active"]
    assert active["max_s"] <= CHECK_BOUND + SLACK
    assert active["calls_after_kill"] > 0
    assert 1 <= active["retried_calls"] <= EJECT_AFTER  # ejected after that many
    assert active["failed_calls"] == 0
    assert active["max_attempts"] == 2
    assert 0 <= active["last_pick_max_s"] <= CHECK_BOUND + SLACK
    assert rows["node"]["max_s"] > 0
