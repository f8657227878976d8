"""Smoke test of scripts/bench_render.py: one trial of each figure through a real nginx.

Loose bounds only (a loaded machine must not flake it): every figure
measured, none missed, no failed request through nginx during the kill,
and every process the bench started gone afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_bench_cluster import agents_using
from tests.integration.test_nginx_render import nginx_binary

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_render.py"
TIMEOUT = 120.0
"""Seconds for the whole run (about 10 s: an agent, nginx, render, two QUIET waits)."""
BOUND = 15.0
"""Seconds any figure may take here: a check (0.8 s), --wait's maximum (1 s), a reload."""


@pytest.mark.slow
def test_one_quick_run_measures_every_figure_and_stops_every_process(tmp_path: Path) -> None:
    nginx_binary()  # skip (or fail in CI) without nginx
    out = tmp_path / "bench.json"
    workdir = tmp_path / "work"
    argv = [sys.executable, str(SCRIPT), "--quick", "--json", str(out), "--workdir", str(workdir)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert agents_using(workdir) == []  # render and the nginx master name files in workdir
    assert "median and max over trials" in result.stdout
    [row] = json.loads(out.read_text())
    assert (row["backend"], row["trials"], row["misses"]) == ("nginx", 1, 0), row
    assert row["failed_during_kill"] == 0, row
    assert row["requests"] > 0
    for key in ("register", "kill_last_request", "deregister_last_request"):
        assert 0 <= row[f"{key}_median_s"] == row[f"{key}_max_s"] <= BOUND, row
