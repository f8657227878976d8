"""Smoke test of scripts/bench_integrations.py: one trial through HAProxy and nginx (about 20 s).

Beyond the shape of the output, the bounds the design promises, loosely
enough not to flake on a busy machine: a new instance is served, and a
deregistered or killed one gets its last request, within HAProxy's resolve
interval (1 s) and check (1 s) plus our check (0.8 s) and a few seconds of
slack, which also holds render's --wait maximum (1 s) and an nginx reload;
no client request fails during the kill (HAProxy's ``retry-on``, nginx's
``proxy_next_upstream``). Without haproxy or nginx the test skips, saying
so; in CI (``CI=true``) it fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_bench_cluster import agents_using
from tests.integration.test_haproxy import haproxy_binary
from tests.integration.test_nginx_render import nginx_binary

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_integrations.py"
TIMEOUT = 120.0
BOUND = 1.0 + 1.0 + 0.8 + 4.0
FIGURES = ("register", "deregister_last_request", "kill_last_request")


@pytest.mark.slow
def test_a_quick_run_prints_the_table_writes_json_and_stops_every_process(tmp_path: Path) -> None:
    haproxy_binary()
    nginx_binary()
    out = tmp_path / "bench.json"
    workdir = tmp_path / "work"
    argv = [sys.executable, str(SCRIPT), "--quick", "--json", str(out), "--workdir", str(workdir)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert agents_using(workdir) == []  # agents, instances, haproxy, nginx and render alike
    assert "kill_last_request_median_s" in result.stdout
    rows = json.loads(out.read_text())
    assert [(r["backend"], r["trials"], r["misses"]) for r in rows] == [
        ("haproxy", 1, 0),
        ("nginx", 1, 0),
    ], rows
    for row in rows:
        for figure in FIGURES:
            assert 0 <= row[f"{figure}_median_s"] == row[f"{figure}_max_s"] <= BOUND, row
        assert row["register_median_s"] > 0, row
        assert row["requests"] > 0, row
        assert row["failed_during_kill"] == 0, row
