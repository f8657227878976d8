#!/usr/bin/env python3
"""How long ``gossip-registry members --json`` takes against a running node, wall clock.

Each run is a fresh process, as a user or a script runs it: interpreter
start, imports, one HTTP request, JSON out. The figure is the median of
``--runs`` runs (after one warm-up run, so the page cache holds the modules),
next to the median of ``python -c pass`` measured the same way, so a slow
machine shows as a high floor rather than as a slow command. Target (issue
11): under 0.25 s.

Against ``--http HOST:PORT`` if given; otherwise the script starts one agent
on free loopback ports, and stops it by its PID at the end.

    scripts/bench_cli.py --runs 15 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
VENV = SCRIPTS.parent / ".venv"
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

TARGET = 0.25
"""Seconds, wall: the issue's target for one ``members --json``."""
READY_TIMEOUT = 20.0


def _use_project_venv() -> None:
    """Re-execute under the project's venv if there is one and this is another Python."""
    python = VENV / "bin" / "python"
    if python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(python, [str(python), __file__, *sys.argv[1:]])


if __name__ == "__main__":
    _use_project_venv()

from gossip_registry.chaos.processes import agent_argv, spawn, stop_processes  # noqa: E402
from tests.support.processes import free_ports  # noqa: E402


def command(tree: Path | None) -> list[str]:
    """The installed console script, as a user runs it; with ``tree``, that checkout's code
    (``python -m gossip_registry``, for a before/after comparison in one environment)."""
    if tree is not None:
        return [sys.executable, "-m", "gossip_registry", "members", "--json"]
    return [str(Path(sys.executable).with_name("gossip-registry")), "members", "--json"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    argv: list[str], env: dict[str, str]
) -> tuple[float, float, subprocess.CompletedProcess[bytes]]:
    """(wall seconds, CPU seconds, the finished process) of one run.

    CPU time is the figure that holds on a shared machine: wall time there
    includes waiting for a core, which no change to the command can remove.
    """
    cpu, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, check=False, timeout=30)
    return time.perf_counter() - start, _children_cpu() - cpu, done


def wait_ready(argv: list[str], env: dict[str, str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if timed(argv, env)[2].returncode == 0:
            return
        time.sleep(0.1)
    raise SystemExit(f"no answer from the node within {READY_TIMEOUT:g}s")


def measure(http: str, runs: int, tree: Path | None) -> dict[str, object]:
    env = {**os.environ, "GOSSIP_REGISTRY_HTTP": http}
    if tree is not None:
        env["PYTHONPATH"] = str(tree.resolve())
    argv = command(tree)
    wait_ready(argv, env)
    times, cpus = [], []
    for _ in range(runs):
        elapsed, cpu, done = timed(argv, env)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()[-300:]}")
        json.loads(done.stdout)  # the answer is JSON
        times.append(elapsed)
        cpus.append(cpu)
    floor = [timed([sys.executable, "-c", "pass"], env)[0] for _ in range(runs)]
    median = statistics.median(times)
    return {
        "command": " ".join(["gossip-registry", *argv[-2:]]),
        "tree": None if tree is None else str(tree),
        "runs": runs,
        "median_s": round(median, 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "cpu_median_s": round(statistics.median(cpus), 4),
        "python_startup_median_s": round(statistics.median(floor), 4),
        "target_s": TARGET,
        "meets_target": median < TARGET,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--http", help="HOST:PORT of a running node (default: start one)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs (median reported)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--tree", type=Path, help="run this checkout's gossip_registry instead of the installed one"
    )
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.http:
        report = measure(args.http, args.runs, args.tree)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
            gossip, http = free_ports(2)
            proc = spawn(
                agent_argv(
                    "--name",
                    "bench",
                    "--bind",
                    f"127.0.0.1:{gossip}",
                    "--http",
                    f"127.0.0.1:{http}",
                    "--log-level",
                    "warning",
                ),
                Path(tmp) / "agent.log",
                Path(tmp),
            )
            try:
                report = measure(f"127.0.0.1:{http}", args.runs, args.tree)
            finally:
                stop_processes([proc], grace=5.0)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
