"""Smoke test of scripts/bench_false_deaths.py: two short seeds, the JSON's shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_false_deaths.py"


def test_bench_false_deaths_smoke_counts_agent_hours_and_the_protocols_work(tmp_path: Path) -> None:
    out = tmp_path / "false_deaths.json"
    argv = [sys.executable, str(SCRIPT), "--seeds", "1-2", "--seconds", "60", "--json", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    result = json.loads(out.read_text())
    summary = result["summary"]
    assert done.returncode == (1 if summary["false_deaths"] else 0), done.stdout + done.stderr
    assert summary["agent_hours"] == round(8 * 60 * 2 / 3600, 2)
    assert [r["seed"] for r in result["rows"]] == [1, 2]
    assert summary["suspicions"] > 0, "30 % loss must make the protocol work"
