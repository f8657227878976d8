"""Smoke test of scripts/bench_startup.py: one run, a 3-agent cluster, the JSON's shape.

The figures are the benchmark's business; this checks that each is measured
(positive and finite) and that the floors come from the same run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_startup.py"
FIGURES = {
    "floor_trio_msgpack_cpu_s",
    "floor_trio_msgpack_rss_mib",
    "floor_http_cpu_s",
    "floor_http_rss_mib",
    "start_cpu_s",
    "idle_rss_mib",
    "idle_rss_all_mib",
    "cluster_s",
}


def test_bench_startup_smoke_measures_every_figure_and_its_floors(tmp_path: Path) -> None:
    out = tmp_path / "startup.json"
    argv = [sys.executable, str(SCRIPT), "--smoke", "--idle-seconds", "0.5", "--json", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["runs"] == 1
    assert result["cluster_agents"] == 3
    assert result["bytecode"] == "cached"
    assert set(result["medians"]) == FIGURES
    assert all(v > 0 and math.isfinite(v) for v in result["medians"].values())
    floor = result["medians"]["floor_http_rss_mib"]
    assert result["medians"]["floor_trio_msgpack_rss_mib"] < floor
    assert "of the trio+msgpack+HTTP floor" in done.stdout
