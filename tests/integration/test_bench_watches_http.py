"""Smoke test of scripts/bench_watches_http.py: 200 watchers on one real agent, one trial.

The figures are the benchmark's business; this checks what the run must
get right at any size: every watcher answered with the new index, the
other service's watchers stayed parked, the JSON has its documented shape,
no process outlives the script, and both the agent and the load process
raised a lowered soft open-files limit to the hard one.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

from tests.integration.test_bench_cluster import agents_using

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_watches_http.py"
TIMEOUT = 120.0
"""Seconds for the whole run (about 5 s: an agent, a load process, 220 connections)."""
LOW_SOFT_LIMIT = 1024


def _lower_soft_open_files() -> None:
    """In the child: a soft limit below the hard one, as systemd gives services."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(LOW_SOFT_LIMIT, hard), hard))


def test_two_hundred_watchers_all_get_the_new_index_and_other_watchers_stay_parked(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    workdir = tmp_path / "work"
    argv = [sys.executable, str(SCRIPT), "--watchers", "200", "--other", "20", "--trials", "1"]
    argv += ["--json", str(out), "--workdir", str(workdir)]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        preexec_fn=_lower_soft_open_files,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert agents_using(workdir) == []
    report = json.loads(out.read_text())
    assert (report["watchers"], report["other"], report["failed_trials"]) == (200, 20, 0)
    assert report["problems"] == []
    (trial,) = report["trials"]
    assert (trial["answered"], trial["stale_answers"], trial["errors"]) == (200, 0, 0)
    assert (trial["other_woken"], trial["other_parked"]) == (0, 20)
    assert 0 < trial["p50_ms"] <= trial["p99_ms"] <= trial["max_ms"]
    assert trial["rss_parked_mib"] > 0
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard > LOW_SOFT_LIMIT:
        assert trial["agent_open_files"] == hard
        assert trial["load_open_files"] == hard
