"""Smoke test of scripts/bench_discovery.py: a tiny table, one short run, every figure reported.

The figures themselves are the benchmark's business, not a pass/fail here;
this checks that each interface answered (no errors, a rate above zero)
and that the JSON has the documented shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_discovery.py"
TIMEOUT = 120.0
"""Seconds for the whole run (about 12 s: five load-generator processes, about 2 s each)."""


def test_a_tiny_run_measures_every_interface_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, str(SCRIPT), "--services", "3", "--instances", "5", "--runs", "1"]
    argv += ["--duration", "1", "--concurrency", "2", "--lookups", "500", "--json", str(out)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "DNS (UDP, A, EDNS0)" in result.stdout
    report = json.loads(out.read_text())
    median = report["median"]
    assert median["errors"] == 0
    for figure in ("embedded_per_s", "http_per_s", "constant_per_s", "dns_per_s"):
        assert median[figure] > 0, figure
    assert median["http_ratio"] > 0
    assert report["services"] == 3
    assert report["instances_per_service"] == 5
    assert len(report["per_run"]) == 1
    assert report["response_bytes"] > 100  # five instances rendered, not an error body
