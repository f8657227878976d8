"""CI's chaos smoke: gossip-registry-chaos smoke on 5 real agents (a kill -9 right after an
acknowledged registration and a restart, one kill, one pause, one partition).

Network namespaces and nftables when running as root with ``ip`` and ``nft``,
loopback with in-transport faults otherwise; the record says which ran. The
invariants must all hold, the artifacts must exist, and nothing may be left
behind: no agent process, no namespace or link with the run's prefix.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gossip_registry.chaos.hosts import netns_available
from tests.integration.test_bench_cluster import agents_using

COMMAND = Path(sys.executable).with_name("gossip-registry-chaos")
"""The console script, installed with the package (scripts/test installs it)."""
TIMEOUT = 170.0
"""Seconds for the whole run (about 60 s: start, crash-restart, kill, pause, a 20 s partition)."""
ACK_TO_KILL = 0.05
"""The kill -9 comes at most this many seconds after the registration's answer."""
TERM_GRACE = 30.0
"""Seconds the script gets after SIGTERM to stop its agents and remove its namespaces."""


def run_script(argv: list[str]) -> tuple[int, str]:
    """Run to the end, or SIGTERM it on timeout (so it still cleans up) and fail."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=TERM_GRACE)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        pytest.fail(f"chaos smoke did not finish within {TIMEOUT:.0f}s:\n{out}")
    return proc.returncode, out


def names_with(prefix: str) -> list[str]:
    listing = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    listing += subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return [word for word in listing.split() if prefix in word]


@pytest.mark.slow
def test_chaos_smoke_passes_every_invariant_and_leaves_nothing_behind(tmp_path: Path) -> None:
    argv = [str(COMMAND), "smoke", "--nodes", "5", "--out", str(tmp_path)]
    status, out = run_script(argv)

    assert status == 0, out + "".join(
        log.read_text(errors="replace")[-2000:] for log in tmp_path.glob("*/logs/*.log")
    )
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1, out
    run = runs[0]
    assert agents_using(run) == []
    for artifact in ("history.jsonl", "record.json", "report.md", "timeline.png"):
        assert (run / artifact).stat().st_size > 0, artifact
    record = json.loads((run / "record.json").read_text())
    assert record["ok"], out
    assert [c["ok"] for c in record["checks"]] == [True] * 5
    meta = record["meta"]
    assert meta["mode"] == ("netns" if netns_available() else "loopback")
    assert record["leftovers"] == []
    if meta["mode"] == "netns":
        assert names_with(meta["prefix"]) == []
    kinds = sorted(f["kind"] for f in record["faults"])
    assert kinds == ["down", "down", "partition", "pause"]
    [crash] = [f for f in record["faults"] if f["params"].get("how") == "sigkill-restart"]
    assert crash["ended"], "the crashed node was not restarted"
    events = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    acked = [
        e["end"]
        for e in events
        if e["type"] == "op" and e["op"] == "register" and e["ok"] and e["node"] in crash["nodes"]
    ]
    assert any(0 <= crash["t"] - end <= ACK_TO_KILL for end in acked), (crash, acked)
    assert record["figures"]["detection"], "the kill was not timed"
    assert record["operations"]["acknowledged"] > 0
    assert "PASS" in (run / "report.md").read_text()


@pytest.mark.skipif(not netns_available(), reason="needs root, ip and nft")
def test_a_run_whose_runner_died_is_swept_by_the_next_one() -> None:
    from gossip_registry.chaos.hosts import NetnsHosts, sweep_stale

    dead = NetnsHosts(2)
    try:
        dead._marker.write_text("999999999")  # above pid_max: that runner is surely gone
        assert names_with(dead.prefix)
        removed = sweep_stale()
        assert f"{dead.prefix}-0" in removed
        assert names_with(dead.prefix) == []
        assert not dead._marker.exists()
    finally:
        dead.teardown()
