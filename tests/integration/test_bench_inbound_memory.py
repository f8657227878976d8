"""Smoke test of scripts/bench_inbound_memory.py: a small flood, both with and without the budget.

The figures are the benchmark's business; this checks the run completes
(the script stops its victim process by PID before it exits) and that its
JSON has the documented shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_inbound_memory.py"


def test_a_small_flood_reports_idle_and_peak_rss_for_both_budgets(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, str(SCRIPT), "--connections", "4", "--frame-mib", "1"]
    argv += ["--max-frame-mib", "1", "--rounds", "1", "--sealed", "--contrast"]
    argv += ["--contrast-connections", "2", "--timeout", "60", "--json", str(out)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["mode"] == "sealed"
    assert [run["unbounded"] for run in record["runs"]] == [False, True]
    for run in record["runs"]:
        assert run["peak_rss_mib"] >= run["idle_rss_mib"] > 0
    assert "peak MiB" in result.stdout
