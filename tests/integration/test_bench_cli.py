"""Smoke test of scripts/bench_cli.py: one timed run against the agent it starts, the JSON's shape.

The target (under 0.25 s) is the benchmark's verdict, not this test's: a loaded
CI machine may miss it; this checks that the figures are measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_cli.py"


def test_bench_cli_smoke_times_members_json_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "cli.json"
    argv = [sys.executable, str(SCRIPT), "--runs", "1", "--json", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["command"] == "gossip-registry members --json"
    assert result["runs"] == 1
    assert 0 < result["min_s"] <= result["median_s"] <= result["max_s"] < 30
    assert 0 < result["python_startup_median_s"] < result["median_s"]
    assert isinstance(result["meets_target"], bool)
