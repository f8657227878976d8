"""Smoke test of scripts/bench_durability.py: one short run per mode, every figure reported.

The figures are the benchmark's business, not a pass/fail here: this checks
that both agents answered every registration, that the durable one shared
fsyncs among writers, and that the JSON has the documented shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_durability.py"
TIMEOUT = 120.0
"""Seconds for the whole run (about 6 s: two agents start, two 1 s windows)."""


def test_a_tiny_run_measures_both_modes_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, str(SCRIPT), "--runs", "1", "--seconds", "1", "--writers", "8"]
    argv += ["--json", str(out), "--workdir", str(tmp_path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ratio on/off" in result.stdout
    report = json.loads(out.read_text())
    on, off = report["medians"]["on"], report["medians"]["off"]
    assert on["errors"] == off["errors"] == 0
    assert on["per_s"] > 0
    assert off["per_s"] > 0
    assert 0 < on["fsync_share"] <= 1.5  # thread time over wall time; a little slack for jitter
    assert on["writes_per_fsync"] > 1  # 8 writers: group commit shares fsyncs
    assert on["cpu_ms_per_reg"] > 0
    assert off["fsync_share"] is None
    assert report["ratio"] > 0
    assert report["writers"] == 8
