#!/usr/bin/env python3
"""Benchmark: registrations per second through HTTP on one node, durability on and off.

Usage:
    .venv/bin/python scripts/bench_durability.py [--writers 32] [--runs 5] [--seconds 3]
        [--json bench-results/bench_durability.json] [--workdir DIR]

Method: per run and mode, a fresh agent process on 127.0.0.1 (``python -m
gossip_registry agent``, stopped by PID), with ``--data-dir`` on the work
directory's file system (durable: every registration is in the fsynced
journal before its 200) or without one (nothing durable). ``--writers``
closed-loop writers in this process, one kept-alive HTTP/1.1 connection
each, send ``PUT /v1/services`` with a new instance id every time; answers
in the first 0.5 s are a warm-up and not counted, then ``--seconds`` are
measured. Modes alternate run by run (on, off, on, off ...), so drift of the
shared machine hits both alike. Figures per mode are medians over runs:
``per_s`` (200 answers per second), ``p50_ms``/``p99_ms`` (latency),
``errors`` (non-200 or no answer); with durability also ``fsync_share``
(share of the measured wall time the node's journal writer spent in write +
fsync, from ``/v1/status``) and ``writes_per_fsync`` (group commit: commits
per append). ``ratio`` is the median durable throughput over the median
non-durable one; the target is at least 0.5. The work directory must not be
a tmpfs (fsync would cost nothing there); the default is under the repo.
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

from gossip_registry.harness.http11 import HttpClient  # noqa: E402
from gossip_registry.harness.processes import (  # noqa: E402
    agent_argv,
    free_ports,
    spawn,
    stop_processes,
)

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


async def load(port: int, writers: int, seconds: float, run: int) -> dict[str, Any]:
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

    async with probe, trio.open_nursery() as nursery:
        nursery.start_soon(mark)
        for w in range(writers):
            nursery.start_soon(writer, w)
    async with HttpClient(REQUEST_TIMEOUT) as http:
        after = await status(http, port)
    lat = sorted(latencies)
    result: dict[str, Any] = {
        "per_s": (len(lat) - errors) / seconds,
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
        "errors": errors,
    }
    if after.get("durability") and before.get("durability"):
        a, b = after["durability"], before["durability"]
        result["fsync_share"] = (a["append_seconds"] - b["append_seconds"]) / seconds
        appends = a["appends"] - b["appends"]
        result["writes_per_fsync"] = (a["commits"] - b["commits"]) / appends if appends else None
    return result


def one_run(workdir: Path, durable: bool, args: argparse.Namespace, run: int) -> dict[str, Any]:
    [port] = free_ports(1)
    [gossip] = free_ports(1)
    name = f"{'on' if durable else 'off'}{run}"
    argv = ["--name", name, "--bind", f"{HOST}:{gossip}", "--http", f"{HOST}:{port}"]
    if durable:
        argv += ["--data-dir", str(workdir / name)]
    argv += ["--log-level", "warning", "--exit-with-parent"]
    proc = spawn(agent_argv(*argv), workdir / f"{name}.log", workdir)
    try:

        async def measure() -> dict[str, Any]:
            async with HttpClient(REQUEST_TIMEOUT) as http:
                await wait_healthy(http, port, proc)
            return await load(port, args.writers, args.seconds, run)

        return trio.run(measure)
    finally:
        stop_processes([proc], STOP_GRACE)


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", type=Path, default=Path("bench-results/bench_durability.json"))
    parser.add_argument("--workdir", type=Path, default=SCRIPTS.parent / "bench-results")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="durability-", dir=args.workdir) as tmp:
        for run in range(args.runs):
            for mode in ("on", "off"):
                result = one_run(Path(tmp), mode == "on", args, run)
                runs[mode].append(result)
                print(f"run {run + 1} durability {mode}: {result}", flush=True)
    figures = ("per_s", "p50_ms", "p99_ms", "errors", "fsync_share", "writes_per_fsync")
    table = {mode: {f: median(rows, f) for f in figures} for mode, rows in runs.items()}
    on, off = table["on"]["per_s"], table["off"]["per_s"]
    ratio = on / off if on is not None and off else None
    print(f"\n{args.writers} writers, medians of {args.runs} runs of {args.seconds:g} s each")
    print(
        "| durability | registrations/s | p50 ms | p99 ms | errors | fsync share | writes/fsync |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, row in table.items():
        cells = [
            "n/a" if row[f] is None else f"{row[f]:.3g}" if f != "per_s" else f"{row[f]:.0f}"
            for f in figures
        ]
        print(f"| {mode} | {' | '.join(cells)} |")
    print(f"ratio on/off: {ratio:.2f} (target >= 0.5)" if ratio is not None else "ratio: n/a")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"writers": args.writers, "runs": runs, "medians": table, "ratio": ratio}
            | {"seconds": args.seconds},
            indent=2,
        )
    )
    print(f"wrote {args.json}")
    errors = sum(r["errors"] for rows in runs.values() for r in rows)
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
