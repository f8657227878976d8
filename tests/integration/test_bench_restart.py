"""Smoke test of scripts/bench_restart.py: one small cluster, one seed, both rows reported.

The figures are the benchmark's business; this checks the run finishes, the
capped restart asks rejoin_limit members and the uncapped one every other
member, and the JSON has the documented shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_restart.py"
TIMEOUT = 120.0
"""Seconds for the whole run (a few seconds: 30 simulated nodes, two restarts)."""


def test_a_tiny_run_restarts_with_and_without_the_cap_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, str(SCRIPT), "--nodes", "30", "--seeds", "1", "--json", str(out)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    capped, uncapped = json.loads(out.read_text())
    assert (capped["rejoin_limit"], capped["push_pulls"]) == (8, 8)
    assert (uncapped["rejoin_limit"], uncapped["push_pulls"]) == (30, 29)
    assert 0 < capped["tcp_bytes_sent"] < uncapped["tcp_bytes_sent"]
    assert capped["rejoin_s"] > 0
