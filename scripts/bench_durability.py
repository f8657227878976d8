#!/usr/bin/env python3
"""Benchmark: registrations per second through HTTP on one node, durability on and off.

Usage:
    .venv/bin/python scripts/bench_durability.py [--writers 32] [--runs 7] [--seconds 2]
        [--json bench-results/bench_durability.json] [--workdir DIR]

Method: two agent processes on 127.0.0.1 (``python -m gossip_registry
agent``, stopped by PID), one with ``--data-dir`` on the work directory's
file system (durable: every registration is in the fsynced journal before
its 200), one without (nothing durable). A run measures one, then the other
(the order alternates run by run): ``--writers`` closed-loop writers in this
process, one kept-alive HTTP/1.1 connection each, send ``PUT /v1/services``
with a new instance id every time; answers in the first 0.5 s are a warm-up
and not counted, then ``--seconds`` are measured. Back-to-back windows see
the same load from the rest of the (shared) machine, so ``ratio``, the
median over runs of each run's durable / non-durable throughput, is the
figure to trust; the target is at least 0.5. Figures per mode are medians
over runs:
``per_s`` (200 answers per second), ``p50_ms``/``p99_ms`` (latency),
``errors`` (non-200 or no answer), ``cpu_ms_per_reg`` (the agent's CPU time,
user + system, over the window, per registration answered); with durability also ``fsync_share``
(share of the measured wall time the node's journal writer spent in write +
fsync, from ``/v1/status``) and ``writes_per_fsync`` (group commit: commits
per append). The work directory must not be a tmpfs (fsync would cost
nothing there); the default is under the repo.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

from bench_cluster import HOST  # noqa: E402  (scripts/ is not a package)

from gossip_registry.chaos.http11 import HttpClient  # noqa: E402
from gossip_registry.chaos.processes import agent_argv, spawn, stop_processes  # noqa: E402
from tests.support.processes import cpu_seconds, free_ports  # noqa: E402

WARMUP = 0.5
REQUEST_TIMEOUT = 5.0
START_TIMEOUT = 30.0
STOP_GRACE = 5.0


class BenchError(Exception):
    """The run could not be measured (the agent did not start)."""


async def wait_healthy(http: HttpClient, port: int, proc: subprocess.Popen[bytes]) -> None:
    with trio.move_on_after(START_TIMEOUT):
        while proc.poll() is None:
            answer = await http.request(HOST, port, "GET", "/healthz")
            if answer is not None and answer[0] == 200:
                return
            await trio.sleep(0.05)
    raise BenchError(f"the agent on port {port} did not start (status {proc.poll()})")


async def status(http: HttpClient, port: int) -> dict[str, Any]:
    answer = await http.request(HOST, port, "GET", "/v1/status")
    if answer is None or answer[0] != 200:
        raise BenchError("no /v1/status answer")
    result: dict[str, Any] = answer[1]
    return result


async def load(port: int, pid: int, writers: int, seconds: float, run: int) -> dict[str, Any]:
    """Closed-loop registrations from ``writers`` connections; counts those in the window."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + WARMUP
    end = start + seconds
    seq = 0
    probe = HttpClient(REQUEST_TIMEOUT)
    before: dict[str, Any] = {}

    async def writer(w: int) -> None:
        nonlocal errors, seq
        async with HttpClient(REQUEST_TIMEOUT) as http:
            while time.perf_counter() < end:
                seq += 1
                body = {"name": "bench", "id": f"r{run}-{w}-{seq}", "port": 1 + seq % 60000}
                began = time.perf_counter()
                answer = await http.request(HOST, port, "PUT", "/v1/services", body)
                done = time.perf_counter()
                if began >= start and done <= end:
                    latencies.append(done - began)
                    errors += answer is None or answer[0] != 200

    async def mark() -> None:
        await trio.sleep(max(0.0, start - time.perf_counter()))
        before.update(await status(probe, port))
        before["cpu"] = cpu_seconds(pid)

    async with probe, trio.open_nursery() as nursery:
        nursery.start_soon(mark)
        for w in range(writers):
            nursery.start_soon(writer, w)
    cpu = cpu_seconds(pid) - before["cpu"]
    async with HttpClient(REQUEST_TIMEOUT) as http:
        after = await status(http, port)
    lat = sorted(latencies)
    result: dict[str, Any] = {
        "per_s": (len(lat) - errors) / seconds,
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
        "errors": errors,
        "cpu_ms_per_reg": 1000 * cpu / max(1, len(lat) - errors),
    }
    if after.get("durability") and before.get("durability"):
        a, b = after["durability"], before["durability"]
        result["fsync_share"] = (a["append_seconds"] - b["append_seconds"]) / seconds
        appends = a["appends"] - b["appends"]
        result["writes_per_fsync"] = (a["commits"] - b["commits"]) / appends if appends else None
    return result


def start_agent(workdir: Path, durable: bool) -> tuple[subprocess.Popen[bytes], int]:
    [port, gossip] = free_ports(2)
    name = "on" if durable else "off"
    argv = ["--name", name, "--bind", f"{HOST}:{gossip}", "--http", f"{HOST}:{port}"]
    if durable:
        argv += ["--data-dir", str(workdir / name)]
    argv += ["--log-level", "warning", "--exit-with-parent"]
    return spawn(agent_argv(*argv), workdir / f"{name}.log", workdir), port


def bench(workdir: Path, args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Every run's figures per mode; both agents are stopped when this returns."""
    agents = {mode: start_agent(workdir, mode == "on") for mode in ("on", "off")}
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    try:

        async def measure() -> None:
            async with HttpClient(REQUEST_TIMEOUT) as http:
                for proc, port in agents.values():
                    await wait_healthy(http, port, proc)
            for run in range(args.runs):
                for mode in ("on", "off") if run % 2 == 0 else ("off", "on"):
                    proc, port = agents[mode]
                    result = await load(port, proc.pid, args.writers, args.seconds, run)
                    runs[mode].append(result)
                    print(f"run {run + 1} durability {mode}: {result}", flush=True)

        trio.run(measure)
    finally:
        stop_processes([proc for proc, _ in agents.values()], STOP_GRACE)
    return runs


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=Path("bench-results/bench_durability.json"))
    parser.add_argument("--workdir", type=Path, default=SCRIPTS.parent / "bench-results")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="durability-", dir=args.workdir) as tmp:
        runs = bench(Path(tmp), args)
    figures = (
        *("per_s", "p50_ms", "p99_ms", "errors"),
        *("cpu_ms_per_reg", "fsync_share", "writes_per_fsync"),
    )
    table = {mode: {f: median(rows, f) for f in figures} for mode, rows in runs.items()}
    pairs = list(zip(runs["on"], runs["off"], strict=True))
    ratios = [on["per_s"] / off["per_s"] for on, off in pairs if off["per_s"]]
    ratio = statistics.median(ratios) if ratios else None
    print(f"\n{args.writers} writers, medians of {args.runs} runs of {args.seconds:g} s each")
    print(
        "| durability | registrations/s | p50 ms | p99 ms | errors | agent CPU ms/reg "
        "| fsync share | writes/fsync |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode, row in table.items():
        cells = [
            "n/a" if row[f] is None else f"{row[f]:.3g}" if f != "per_s" else f"{row[f]:.0f}"
            for f in figures
        ]
        print(f"| {mode} | {' | '.join(cells)} |")
    if ratio is not None:
        each = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"ratio on/off, median of runs: {ratio:.2f} (target >= 0.5; runs: {each})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"writers": args.writers, "runs": runs, "medians": table, "ratio": ratio}
            | {"ratios": ratios}
            | {"seconds": args.seconds},
            indent=2,
        )
    )
    print(f"wrote {args.json}")
    errors = sum(r["errors"] for rows in runs.values() for r in rows)
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
