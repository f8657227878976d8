#!/usr/bin/env python3
"""Benchmark blocking queries over HTTP: N watchers held by one agent process, one change.

Usage:
    .venv/bin/python scripts/bench_watches_http.py [--watchers 10000] [--other 100]
        [--trials 3] [--json bench-results/bench_watches_http.json] [--workdir DIR]

(scripts/bench_watches.py measures waiters inside one process; this one
measures the same through the HTTP API, with connections.)

Method, per trial, on loopback, with a fresh agent each time:

1. One real agent process (``LocalCluster`` and ``join_phase`` of
   scripts/bench_cluster.py: ``python -m gossip_registry agent``, its own
   session, stopped by PID), ``max_waiters`` set to fit. One instance each
   of services ``web`` and ``other`` is registered through its HTTP API.
   ``rss_before_mib``: the agent's VmRSS then.
2. A separate load process, scripts/watchgen.py (raw HTTP/1.1 over trio
   sockets; it opens a connection only while fewer than 64 opened ones
   are not yet parked, since a burst overflows the agent's listen backlog
   of 100 and costs SYN retransmissions of 1 s and more), opens ``--watchers``
   connections, each holding ``GET /v1/services/web?index=N&wait=60s`` at
   web's current index, and ``--other`` more on ``other``. ``park_s``: from
   starting that process (its imports included) until the agent's
   ``/v1/status`` shows every one of them waiting; ``rss_parked_mib`` is
   the agent's VmRSS then, ``kib_per_watcher`` the growth over all
   watchers.
3. ``PUT /v1/services`` registers a second web instance. Each web watcher's
   latency is from the moment just before that PUT is sent to the moment
   its whole answer arrived in the load process (both read
   ``time.monotonic()``, CLOCK_MONOTONIC, one clock for all processes on
   the machine): ``p50_ms``, ``p99_ms`` (nearest rank), ``max_ms`` (the
   time until every watcher had its answer). ``put_ms``: the PUT's own
   round trip, answered amid the wake-up. ``wake_cpu_s``: the agent's CPU
   time (user + system, /proc, sampled every 20 ms) from the PUT until the
   last answer arrived.
4. Checks, reported as counts and failing the run if wrong: every web
   watcher answered 200 with the index a plain GET returns afterwards, a
   higher one than it waited on (``stale_answers``: the others); no
   ``other`` watcher answered within 1 s after the last web answer
   (``other_woken``), and the agent then still counted exactly ``--other``
   blocking queries (``other_parked``).

Both processes raise their soft RLIMIT_NOFILE to the hard limit (the agent
does so at every start); if the hard limit is too low for the watchers
asked for, or the ephemeral port range too small, the count is scaled down
with a message, and the JSON records the count used. Each figure in the
table is the median over trials; the JSON has every trial too. The agent
and the load process share the machine's cores: the load process's own
reading of 10,000 answers is inside the figures, as a client's would be.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

from bench_cluster import (  # noqa: E402  (scripts/ is not a package)
    HOST,
    Agent,
    Api,
    BenchError,
    LocalCluster,
    Verdicts,
    join_phase,
    percentile,
    rss_mib,
    work_root,
)
from watchgen import SPARE_FILES, current_index  # noqa: E402

from gossip_registry.chaos.http11 import HttpClient  # noqa: E402
from gossip_registry.chaos.processes import spawn, stop_processes  # noqa: E402
from gossip_registry.chaos.sigterm import interrupt_on_sigterm, run_interruptible  # noqa: E402
from tests.support.processes import cpu_seconds  # noqa: E402

WATCHGEN = SCRIPTS / "watchgen.py"
SERVICE = "web"
OTHER = "other"
WAIT = 60.0
"""Seconds each blocking query asks to be held (``wait=60s``); parking must end well before."""
PARK_TIMEOUT = 40.0
"""Seconds for every watcher to be parked; past it, the first ones would soon time out."""
WAKE_TIMEOUT = 60.0
"""Seconds from the registration for every answer and the load process's exit."""
HOLD = 1.0
"""Seconds the load process keeps the other service's watchers after the last answer."""
POLL = 0.02
"""Seconds between /v1/status reads while the watchers are parked."""
AGENT_SPARE_FILES = 256
"""Descriptors the agent needs besides its watchers' connections (sockets, logs, imports)."""
MAX_WAITERS = 20_000
"""The agent's default ``max_waiters``; raised when more watchers are asked for."""
STOP_GRACE = 10.0
"""Seconds, after SIGTERM, for the agent's graceful leave and the load process's exit."""
PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
FIGURES = (
    "park_s",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "put_ms",
    "wake_cpu_s",
    "rss_before_mib",
    "rss_parked_mib",
    "kib_per_watcher",
)
"""Per-trial figures; the table and the JSON's ``median`` hold the median of each."""
CHECKS = ("answered", "stale_answers", "other_woken", "other_parked", "errors")
"""Per-trial counts that say whether the run was right, not how fast."""


class WatchCluster(LocalCluster):
    """bench_cluster's cluster of one agent whose ``max_waiters`` fits every watcher."""

    def __init__(self, workdir: Path, max_waiters: int) -> None:
        self.max_waiters = max_waiters
        super().__init__(workdir, 1)

    def _toml(self) -> str:
        limit = f"[defaults]\nmax_waiters = {self.max_waiters}\n"
        return super()._toml().replace("[defaults]\n", limit, 1)


def usable_watchers(asked: int, other: int, say: Callable[[str], None]) -> int:
    """The web watchers this machine allows beside ``other``: the descriptor and port limits.

    The agent and the load process each hold one descriptor per watcher;
    the load process also needs one local port per watcher.
    """
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limits = []
    if hard != resource.RLIM_INFINITY:
        spare = max(AGENT_SPARE_FILES, SPARE_FILES)
        why = f"the open files hard limit (RLIMIT_NOFILE) is {hard}"
        limits.append((hard - other - spare, why))
    try:
        low, high = (int(x) for x in PORT_RANGE.read_text().split())
        limits.append((high - low + 1 - other, f"the ephemeral port range is {low}-{high}"))
    except (OSError, ValueError):
        pass
    usable = asked
    for limit, why in limits:
        if limit < usable:
            usable = limit
            say(f"NOTE: {why}: scaling down from {asked} to {max(limit, 0)} web watchers")
    if usable < 1:
        raise BenchError("no room for any watcher: raise the open files hard limit")
    return usable


def open_files_soft(pid: int) -> int | None:
    """The soft open-files limit of ``pid`` (/proc/<pid>/limits), None if unlimited or unknown."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return int(soft) if soft.isdigit() else None
    return None


class Trial:
    """One agent, one load process, one registration; ``run`` gives the trial's figures."""

    def __init__(self, workdir: Path, watchers: int, other: int, say: Callable[[str], None]):
        self.cluster = WatchCluster(workdir, max(MAX_WAITERS, watchers + other))
        self.workdir = workdir
        self.watchers = watchers
        self.other = other
        self.say = say
        self.load: subprocess.Popen[bytes] | None = None
        self.result = workdir / "watchgen.json"

    @property
    def agent(self) -> Agent:
        return self.cluster.agents[0]

    def stop(self) -> None:
        """Stop the load process and the agent by PID (SIGTERM, grace, SIGKILL)."""
        stop_processes([p for p in (self.load, self.agent.process) if p is not None], STOP_GRACE)

    async def run(self) -> dict[str, Any]:
        async with Api(Verdicts()) as api:
            await join_phase(self.cluster, api, 0.0, self.say)
        async with HttpClient(WAKE_TIMEOUT) as http:
            await self._register(http, SERVICE, "web-1")
            await self._register(http, OTHER, "other-1")
            figures: dict[str, Any] = {"rss_before_mib": rss_mib(self.agent.pid)}
            waited_index = await current_index(HOST, self.agent.http_port, SERVICE)
            figures["park_s"] = await self._park(http)
            figures["rss_parked_mib"] = rss_mib(self.agent.pid)
            growth = figures["rss_parked_mib"] - figures["rss_before_mib"]
            figures["kib_per_watcher"] = growth * 1024 / (self.watchers + self.other)
            figures["agent_open_files"] = open_files_soft(self.agent.pid)
            self.say(f"parked {self.watchers} + {self.other} in {figures['park_s']:.2f}s")
            cpu = [(time.monotonic(), cpu_seconds(self.agent.pid))]
            registered = time.monotonic()
            await self._register(http, SERVICE, "web-2")
            figures["put_ms"] = (time.monotonic() - registered) * 1000
            report = await self._load_report(cpu)
            new_index = await current_index(HOST, self.agent.http_port, SERVICE)
        if new_index <= waited_index:
            raise BenchError(f"the registration did not move web's index ({new_index})")
        latencies = sorted(arrival - registered for arrival in report["arrivals"])
        if not latencies:
            raise BenchError(f"no watcher answered: {report['errors']}")
        last = registered + latencies[-1]
        woken = [used for when, used in cpu if when <= last + POLL]
        figures |= {
            "wake_cpu_s": woken[-1] - cpu[0][1],
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "max_ms": latencies[-1] * 1000,
            "answered": len(latencies),
            "stale_answers": self.watchers - report["indexes"].get(str(new_index), 0),
            "other_woken": report["other_answers"],
            "other_parked": report["waiters_at_end"],
            "errors": sum(report["errors"].values()),
            "load_open_files": report["open_files"],
        }
        return figures

    async def _register(self, http: HttpClient, service: str, instance: str) -> None:
        body = {"name": service, "id": instance, "port": 8000}
        answer = await http.request(HOST, self.agent.http_port, "PUT", "/v1/services", body)
        if answer is None or answer[0] != 200:
            raise BenchError(f"PUT /v1/services ({instance}) answered {answer!r}")

    async def _park(self, http: HttpClient) -> float:
        """Start the load process; seconds until the agent counts every watcher waiting."""
        argv = [sys.executable, str(WATCHGEN), f"{HOST}:{self.agent.http_port}"]
        argv += ["--service", SERVICE, "--count", str(self.watchers)]
        argv += ["--other-service", OTHER, "--other-count", str(self.other)]
        argv += ["--wait", f"{WAIT:.0f}s", "--hold", str(HOLD), "--out", str(self.result)]
        argv += ["--deadline", str(PARK_TIMEOUT + WAKE_TIMEOUT)]
        started = time.monotonic()
        self.load = spawn(argv, self.cluster.logs / "watchgen.log", self.workdir)
        total = self.watchers + self.other
        waiting = 0
        with trio.move_on_after(PARK_TIMEOUT):
            while waiting < total:
                if self.load.poll() is not None:
                    raise BenchError(f"the load process exited ({self.load.returncode}) early")
                answer = await http.request(HOST, self.agent.http_port, "GET", "/v1/status")
                if answer is not None and answer[0] == 200:
                    waiting = answer[1]["waiters"]
                await trio.sleep(POLL)
            return time.monotonic() - started
        raise BenchError(f"only {waiting} of {total} watchers parked in {PARK_TIMEOUT:.0f}s")

    async def _load_report(self, cpu: list[tuple[float, float]]) -> dict[str, Any]:
        """The load process's JSON, once it has exited (every answer in, then the hold).

        Meanwhile the agent's CPU time is sampled every POLL seconds into
        ``cpu`` as (monotonic time, CPU seconds).
        """
        assert self.load is not None
        with trio.move_on_after(WAKE_TIMEOUT):
            while self.load.poll() is None:
                cpu.append((time.monotonic(), cpu_seconds(self.agent.pid)))
                await trio.sleep(POLL)
        if self.load.poll() is None or not self.result.exists():
            raise BenchError(f"the load process gave no result in {WAKE_TIMEOUT:.0f}s")
        report: dict[str, Any] = json.loads(self.result.read_text())
        return report


def run_trials(args: argparse.Namespace, watchers: int, root: Path) -> list[dict[str, Any]]:
    """Every trial, each on a fresh agent; a failed trial is reported and left out."""
    rows = []
    for number in range(1, args.trials + 1):

        def say(message: str, number: int = number) -> None:
            print(f"[trial {number}/{args.trials}] {message}", flush=True)

        trial = Trial(root / f"trial{number}", watchers, args.other, say)
        row = None
        try:
            row = trio.run(interrupt_on_sigterm, trial.run)
        except* BenchError as group:  # raised in a nursery's task, it arrives in a group
            say(f"FAILED: {'; '.join(map(str, group.exceptions))}\n{trial.cluster.log_tails()}")
        finally:
            trial.stop()
        if row is not None:
            say(", ".join(f"{k} {_fmt(row[k])}" for k in (*FIGURES, *CHECKS)))
            rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def wrong(row: dict[str, Any], watchers: int, other: int) -> list[str]:
    """What a trial got wrong: a missing or stale answer, a woken other watcher, an error."""
    problems = []
    if row["answered"] != watchers:
        problems.append(f"{watchers - row['answered']} watchers unanswered")
    if row["stale_answers"]:
        problems.append(f"{row['stale_answers']} answers without the new index")
    if row["other_woken"] or row["other_parked"] != other:
        problems.append(f"other service: {row['other_woken']} woken, {row['other_parked']} parked")
    if row["errors"]:
        problems.append(f"{row['errors']} connection errors")
    return problems


def print_table(rows: list[dict[str, Any]], median: dict[str, float]) -> None:
    header = ["figure", *(f"trial {i}" for i in range(1, len(rows) + 1)), "median"]
    table = [[name, *(_fmt(r[name]) for r in rows), _fmt(median[name])] for name in FIGURES]
    table += [[name, *(_fmt(r[name]) for r in rows), ""] for name in CHECKS]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--watchers", type=int, default=10_000, help="on the changed service")
    parser.add_argument("--other", type=int, default=100, help="on a service left unchanged")
    parser.add_argument("--trials", type=int, default=3, help="each on a fresh agent")
    parser.add_argument(
        "--json", type=Path, default=SCRIPTS.parent / "bench-results" / "bench_watches_http.json"
    )
    parser.add_argument("--workdir", type=Path, help="keep configs, data and logs here")
    args = parser.parse_args(argv)
    if args.watchers < 1 or args.other < 0 or args.trials < 1:
        parser.error("need --watchers >= 1, --other >= 0, --trials >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_interruptible(lambda: bench(args), "every process was stopped")


def bench(args: argparse.Namespace) -> int:
    """Every trial, then the table and the JSON; 1 if a trial failed or got something wrong."""
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    print(f"command: {command}", flush=True)
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}", flush=True)
    try:
        watchers = usable_watchers(args.watchers, args.other, print)
    except BenchError as exc:
        print(f"FAILED: {exc}", flush=True)
        return 1
    with work_root(args.workdir) as root:
        rows = run_trials(args, watchers, root)
    if not rows:
        print("every trial failed", flush=True)
        return 1
    median = {name: statistics.median(r[name] for r in rows) for name in FIGURES}
    print(f"\n{watchers} watchers on '{SERVICE}', {args.other} on '{OTHER}', {len(rows)} trials:")
    print_table(rows, median)
    problems = [p for row in rows for p in wrong(row, watchers, args.other)]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": command,
        "watchers": watchers,
        "watchers_asked": args.watchers,
        "other": args.other,
        "wait_s": WAIT,
        "trials": rows,
        "failed_trials": args.trials - len(rows),
        "median": {k: round(v, 3) for k, v in median.items()},
        "problems": problems,
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    for problem in problems:
        print(f"WRONG: {problem}")
    return 1 if problems or len(rows) < args.trials else 0


if __name__ == "__main__":
    raise SystemExit(main())
