#!/usr/bin/env python3
"""Benchmark an agent's start-up: CPU to a healthy HTTP API, idle memory, a 50-agent start.

Usage:
    .venv/bin/python scripts/bench_startup.py [--runs 3] [--cluster 50]
        [--idle-seconds 3] [--smoke] [--json bench-results/bench_startup.json]

Figures (each the median of ``--runs`` runs, fresh processes and ports each
time; the floors are measured in the same run, so overhead is a ratio):

- ``floor_trio_msgpack``: a process that only runs ``import trio, msgpack``;
  ``floor_http``: the same plus ``hypercorn`` and ``starlette``. Each reports
  its own CPU time (``getrusage``: interpreter start included) and VmRSS.
- ``start_cpu_s``: ``python -m gossip_registry agent`` with gossip, HTTP and
  DNS configured; utime + stime from ``/proc/<pid>/stat`` the moment its
  ``GET /healthz`` first answers 200 (polled every 10 ms).
- ``idle_rss_mib``: VmRSS after ``--idle-seconds`` of idling, gossip + HTTP
  only (no DNS, no encryption); ``idle_rss_all_mib``: with DNS, gossip
  encryption and one ``GET /metrics`` scrape.
- ``cluster_s``: ``--cluster`` agents (one cluster.toml, all joining through
  n1) started at once; seconds from the first spawn until every agent's
  ``/v1/members`` lists all of them alive.

Targets (issue 17): start_cpu_s <= 0.5 s, idle_rss_mib <= 38 MiB,
cluster_s <= 12 s at 50 agents. ``--smoke`` (CI): one run, a 3-agent
cluster, no targets judged. Every agent is stopped by its PID.

Bytecode: the floors' packages were compiled when pip installed them, so
with ``--bytecode cached`` (the default) the package is compiled first
(``compileall``, into its ``__pycache__``) and ``PYTHONDONTWRITEBYTECODE``
is dropped for the children, as for an installed agent; ``--bytecode none``
keeps whatever the environment says (compiling from source at each start
costs this project's modules about 0.1 s of CPU and several MiB). Run it
with the project's interpreter (``.venv/bin/python``): the agents run under
``sys.executable``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import http.client  # noqa: E402

from bench_cluster import (  # noqa: E402
    HOST,
    LocalCluster,
    rss_mib,
)

from gossip_registry.chaos.processes import agent_argv, spawn, stop_processes  # noqa: E402
from tests.support.processes import cpu_seconds, free_ports  # noqa: E402

FLOORS = {
    "floor_trio_msgpack": "import trio, msgpack",
    "floor_http": "import trio, msgpack, hypercorn.trio, starlette.applications",
}
REPORT = (
    "import json, resource, sys\n"
    "u = resource.getrusage(resource.RUSAGE_SELF)\n"
    "rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1]\n"
    "json.dump({'cpu_s': u.ru_utime + u.ru_stime, 'rss_mib': int(rss) / 1024}, sys.stdout)\n"
)
HEALTH_POLL = 0.01
START_TIMEOUT = 30.0
STOP_GRACE = 5.0
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "start_cpu_s": ("<= 0.5 s", lambda v: v <= 0.5),
    "idle_rss_mib": ("<= 38 MiB", lambda v: v <= 38),
    "cluster_s": ("<= 12 s (50 agents)", lambda v: v <= 12),
}


class BenchError(Exception):
    """A run could not be carried out (an agent died or never answered)."""


def floor(code: str) -> dict[str, float]:
    """CPU seconds and RSS of a process that only imports, measured by itself."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{REPORT}"], capture_output=True, check=True, text=True
    )
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


def get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float) -> float:
    """Poll ``check`` until true; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return time.monotonic()
        except OSError:
            pass
        time.sleep(interval)
    raise BenchError(f"timed out waiting for {what}")


def one_agent(workdir: Path, *, dns: bool, everything: bool, idle: float) -> dict[str, float]:
    """Start one agent; CPU when /healthz first says 200, RSS after ``idle`` seconds."""
    gossip, http_port, dns_port = free_ports(3)
    args = ["--name", "n1", "--bind", f"{HOST}:{gossip}", "--http", f"{HOST}:{http_port}"]
    if dns or everything:
        args += ["--dns", f"{HOST}:{dns_port}"]
    if everything:
        args += ["--encrypt", base64.b64encode(secrets.token_bytes(32)).decode()]
    proc = spawn(agent_argv(*args), workdir / "agent.log", workdir)
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                raise BenchError(f"agent exited with {proc.returncode}")
            return get(http_port, "/healthz")[0] == 200

        wait_for(healthy, START_TIMEOUT, "/healthz", HEALTH_POLL)
        cpu = cpu_seconds(proc.pid)
        if everything:
            get(http_port, "/metrics")
        time.sleep(idle)  # idling is the measurement, not a synchronisation
        return {"cpu_s": cpu, "rss_mib": rss_mib(proc.pid)}
    finally:
        stop_processes([proc], STOP_GRACE)


def cluster_start(workdir: Path, n: int) -> float:
    """Seconds from the first spawn of ``n`` agents until each lists all of them alive."""
    cluster = LocalCluster(workdir, n)
    try:
        started = time.monotonic()
        for agent in cluster.agents:
            cluster.start(agent)
        waiting = list(cluster.agents)

        def everyone_sees_everyone() -> bool:
            cluster.check_alive()
            for agent in list(waiting):
                try:
                    status, body = get(agent.http_port, "/v1/members")
                except OSError:
                    continue
                if status != 200:
                    continue
                members = json.loads(body)
                alive = [m for m in members if m.get("state") == "alive"]
                if len(alive) == n:
                    waiting.remove(agent)
            return not waiting

        done = wait_for(everyone_sees_everyone, 30.0 + 2.0 * n, "the cluster to form", 0.1)
        return done - started
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cluster", type=int, default=50, help="agents started at once; 0: skip")
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--smoke", action="store_true", help="CI: one run, 3 agents, no targets")
    parser.add_argument("--json", type=Path, default=Path("bench-results/bench_startup.json"))
    parser.add_argument("--bytecode", choices=("cached", "none"), default="cached")
    args = parser.parse_args()
    if args.bytecode == "cached":
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        package = str(ROOT / "gossip_registry")
        subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)
    runs, n = (1, min(args.cluster, 3)) if args.smoke else (args.runs, args.cluster)

    samples: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            work = Path(tmp)
            for name, code in FLOORS.items():
                f = floor(code)
                add(f"{name}_cpu_s", f["cpu_s"])
                add(f"{name}_rss_mib", f["rss_mib"])
            full = one_agent(work, dns=True, everything=False, idle=0.0)
            add("start_cpu_s", full["cpu_s"])
            add(
                "idle_rss_mib",
                one_agent(work, dns=False, everything=False, idle=args.idle_seconds)["rss_mib"],
            )
            add(
                "idle_rss_all_mib",
                one_agent(work, dns=True, everything=True, idle=args.idle_seconds)["rss_mib"],
            )
            if n:
                (work / "cluster").mkdir()
                add("cluster_s", cluster_start(work / "cluster", n))
        print(f"run {run + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in samples.items()))

    medians = {k: statistics.median(v) for k, v in samples.items()}
    print(f"\nmedians of {runs} run(s); cluster of {n} agents; bytecode {args.bytecode}")
    for key, value in medians.items():
        line = f"  {key:28} {value:8.3f}"
        if key in ("start_cpu_s", "idle_rss_mib", "idle_rss_all_mib"):
            floor_key = "floor_http_cpu_s" if key.endswith("cpu_s") else "floor_http_rss_mib"
            line += f"   x{value / medians[floor_key]:.2f} of the trio+msgpack+HTTP floor"
        if key in TARGETS and not args.smoke:
            text, met = TARGETS[key]
            line += f"   target {text}: {'met' if met(value) else 'NOT met'}"
        print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "runs": runs,
        "cluster_agents": n,
        "bytecode": args.bytecode,
        "medians": medians,
        "samples": samples,
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
