"""Smoke test of scripts/bench_cluster.py: one quick run of three real agents.

It checks the shape of the output (every figure measured, the JSON keys
exactly as documented) and that no agent outlives the script; the figures
themselves are the benchmark's business, not a pass/fail here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_cluster.py"
KEYS = {
    "nodes",
    "runs",
    "join_s",
    "join_from_last_listening_s",
    "reg_p50_s",
    "reg_p99_s",
    "detect_first_s",
    "detect_all_s",
    "false_positives",
    "cpu_pct_per_node",
    "rss_mb_per_node",
    "udp_pkts_per_node_s",
    "udp_bytes_per_node_s",
}
TIMEOUT = 120.0
"""Seconds for the whole quick run (about 25 s: start, 10 s idle, 10 registrations, a crash)."""


def agents_using(workdir: Path) -> list[int]:
    """PIDs of live processes whose command line names a file under ``workdir``."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
            state = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(workdir) in text and state != "Z":
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.slow
def test_quick_run_of_three_agents_reports_every_figure_and_stops_every_agent(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    workdir = tmp_path / "work"
    argv = [sys.executable, str(SCRIPT), "--nodes", "3", "--runs", "1", "--quick"]
    argv += ["--json", str(out), "--workdir", str(workdir)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert agents_using(workdir) == []
    assert "reg_p99_s" in result.stdout
    assert "PASS" in result.stdout or "MISS" in result.stdout
    rows = json.loads(out.read_text())
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == KEYS
    assert (row["nodes"], row["runs"]) == (3, 1)
    for key in KEYS - {"nodes", "runs", "false_positives"}:
        value = row[key]
        assert isinstance(value, int | float), f"{key} = {value!r}"
        assert math.isfinite(value), f"{key} = {value!r}"
        assert value >= 0, f"{key} = {value!r}"
    assert row["detect_first_s"] <= row["detect_all_s"]
    assert row["reg_p50_s"] <= row["reg_p99_s"]
    assert isinstance(row["false_positives"], int)
