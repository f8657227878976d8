#!/usr/bin/env python3
"""Benchmark real agent processes on loopback: join, spread, crash detection, idle cost.

Usage:
    .venv/bin/python scripts/bench_cluster.py [--nodes 5,20,50] [--runs 3]
        [--idle-seconds 60] [--quick] [--json bench-results/bench_cluster.json]
        [--workdir DIR] [--seed 1]

(``scripts/bench_cluster.py`` also works: run by another Python, it
re-executes itself with ``.venv/bin/python`` when that exists.)

Method. For each N in ``--nodes``, ``--runs`` times, with fresh ports, data
directories and processes each time:

1. A cluster.toml is written in a temporary directory: nodes n1..nN on
   127.0.0.1, gossip and HTTP ports found free at run time, LAN profile
   with no overrides (memberlist's DefaultLANConfig timings), no seeds
   listed, so every node joins through n1. Each node runs as
   ``sys.executable -m gossip_registry agent --config FILE --node nX`` in its
   own session (a Ctrl-C in the terminal reaches only this script) with
   ``--exit-with-parent`` (if this script is SIGKILLed, the agents leave
   within a second instead of running orphaned).
2. Join. n1 is started first and waited for (the others would otherwise
   find no seed and back off for seconds, which measures start order, not
   the protocol); the other N-1 follow ``--stagger`` seconds apart. Each
   node's ``GET /healthz`` is polled every 50 ms until it answers (it is
   then listening), then its ``GET /v1/members`` every 100 ms until it lists
   all N nodes alive. ``join_s`` is the last such moment minus the first
   process start; ``join_from_last_listening_s`` is the same moment minus
   the moment the last node started answering.
3. Idle. ``--settle-seconds`` (5 s) for queued gossip to drain, then a
   window of ``--idle-seconds`` with no requests at all. Bracketing it:
   ``GET /v1/status`` on every node (``stats.udp_out``,
   ``stats.udp_bytes_out``: datagrams and bytes the protocol sent) and
   utime+stime from ``/proc/<pid>/stat``. ``cpu_pct_per_node`` is the mean
   over nodes of CPU seconds / wall seconds x 100 (percent of one core);
   ``udp_pkts_per_node_s`` and ``udp_bytes_per_node_s`` are means over
   nodes; ``rss_mb_per_node`` is the median over nodes of VmRSS (MiB) at
   the end of the window. HTTP connections are closed before the window so
   the server's keep-alive timers do not run inside it.
4. Registrations. ``--registrations`` (20) services, one at a time, each
   ``PUT /v1/services`` on a random node; from the moment the PUT is sent,
   every node's ``GET /v1/services/{name}`` is polled in parallel (a trio
   task per node, ``--poll-interval`` 10 ms between a node's answer and its
   next request) until it returns the instance; that node's time is when
   that answer arrived (an upper bound on when the entry got there). The
   registration's time is the slowest node's; 0.3 s pass before the next.
   ``reg_p50_s`` and ``reg_p99_s`` are nearest-rank percentiles over the
   registrations (with 20, p99 is the slowest one).
5. Crash. One random node other than n1 gets SIGKILL. Every other node's
   ``GET /v1/members`` is polled every 100 ms until it shows the victim
   ``dead``: ``detect_first_s`` is the first node's time, ``detect_all_s``
   the last one's, both from the kill.
6. False positives: every ``/v1/members`` answer of the run (join, checks,
   crash phase) is scanned for a node other than the victim in state
   ``dead``; ``false_positives`` counts such nodes. Dead verdicts between
   samples cannot hide: the protocol counts each one (``members_failed``),
   and a total above the one verdict per survivor about the victim counts
   as at least one false positive even if no sample caught it.
7. Every process is stopped by PID in a ``finally`` (SIGTERM, a bounded
   wait for the graceful leave, then SIGKILL), on errors and Ctrl-C too.

Each figure in the table and the JSON (a list of rows with the keys in
``FIGURES`` plus ``nodes`` and ``runs``) is the median over runs; a phase
that did not finish within its bound counts as infinite (``null`` in JSON,
``timeout`` in the table). The targets (HashiCorp Serf 0.9.4, 50 agents on
this kind of machine) are checked against the largest N.

The HTTP client is a few lines of HTTP/1.1 over trio sockets with a
kept connection per node, not httpx: at 50 nodes httpx cost this process
about 2 ms of CPU per request, which made a sweep of all nodes take
~100 ms and inflated every propagation time by as much.

Caveats: the nodes and this script share the machine's cores, so polling
costs the nodes CPU while registrations and crashes are timed (the
progress lines give the median poll round trip). The idle window has no
such load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
sys.path.insert(0, str(ROOT))  # tests.support, when run as a script


def _use_project_venv() -> None:
    """Re-execute under the project's venv if there is one and this is another Python.

    The agents run under ``sys.executable`` and need the project's
    dependencies; a ``python3`` found on PATH (the shebang) may lack them.
    """
    python = VENV / "bin" / "python"
    if python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(python, [str(python), __file__, *sys.argv[1:]])


if __name__ == "__main__":
    _use_project_venv()

import trio  # noqa: E402  (after the re-execution: this Python may not have it)

from gossip_registry.chaos.http11 import HttpClient  # noqa: E402
from gossip_registry.chaos.processes import agent_argv, spawn, stop_processes  # noqa: E402
from gossip_registry.chaos.sigterm import interrupt_on_sigterm, run_interruptible  # noqa: E402
from tests.support.processes import cpu_seconds, free_ports  # noqa: E402

FIGURES = (
    "join_s",
    "join_from_last_listening_s",
    "reg_p50_s",
    "reg_p99_s",
    "detect_first_s",
    "detect_all_s",
    "false_positives",
    "cpu_pct_per_node",
    "rss_mb_per_node",
    "udp_pkts_per_node_s",
    "udp_bytes_per_node_s",
)
"""Per-run figures; a row holds the median of each over the runs."""

T = TypeVar("T")

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 2.0
"""Seconds per HTTP request; a node that does not answer in time counts as not (yet) there."""
HEALTH_POLL = 0.05
"""Seconds between /healthz polls of a starting node."""
MEMBERS_POLL = 0.1
"""Seconds between /v1/members polls while waiting for a join or a crash detection."""
SEED_TIMEOUT = 30.0
"""Seconds for n1 to start answering (imports take most of it)."""
REGISTRATION_TIMEOUT = 10.0
"""Seconds for one registration to reach every node."""
REGISTRATION_GAP = 0.3
"""Seconds between one registration reaching every node and the next PUT."""
SLOW_SPREAD = 1.0
"""Seconds: a registration slower than this to reach every node is reported as it happens."""
DETECT_TIMEOUT = 90.0
"""Seconds for every survivor to declare the victim dead (LAN, N=50: suspicion <= 41 s)."""
STOP_GRACE = 10.0
"""Seconds the agents get, after SIGTERM, to leave gracefully (leave_timeout is 3 s)."""


def join_timeout(n: int) -> float:
    """Seconds for n processes to start and converge: imports cost ~1 CPU-second each."""
    return 30.0 + 2.0 * n


@dataclass(frozen=True)
class Target:
    """One figure's target for the largest N (from the issue: Serf 0.9.4 at 50 agents)."""

    figure: str
    text: str
    met: Callable[[float], bool]


TARGETS = (
    Target("reg_p99_s", "<= 0.5 s", lambda v: v <= 0.5),
    Target("detect_all_s", "<= 8.5 s", lambda v: v <= 8.5),
    Target("false_positives", "== 0", lambda v: v == 0),
    Target("cpu_pct_per_node", "<= 0.5 %", lambda v: v <= 0.5),
    Target("rss_mb_per_node", "<= 48 MiB", lambda v: v <= 48),
    Target("udp_pkts_per_node_s", "<= 3 /s", lambda v: v <= 3),
)
FLATNESS = 1.25
"""UDP packets per node per second are "flat in N" if largest / smallest over N <= this."""


class BenchError(Exception):
    """A run cannot go on (a process died, an API call failed); the run is reported and skipped."""


# --- Processes ---------------------------------------------------------------------------


@dataclass
class Agent:
    """One node of the benchmark cluster and, once started, its process."""

    name: str
    gossip_port: int
    http_port: int
    process: subprocess.Popen[bytes] | None = None
    listening_at: float | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError(f"{self.name} was not started")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class LocalCluster:
    """N agents described by one cluster.toml in ``workdir``; ``stop`` ends every process."""

    def __init__(self, workdir: Path, n: int) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * n)
        self.agents = [Agent(f"n{i + 1}", ports[2 * i], ports[2 * i + 1]) for i in range(n)]
        self.config = workdir / "cluster.toml"
        self.config.write_text(self._toml())

    def _toml(self) -> str:
        lines = ['[cluster]\nname = "bench"\n', '[defaults]\nprofile = "lan"\ndata_root = "data"\n']
        for a in self.agents:
            lines.append(
                f'[[nodes]]\nname = "{a.name}"\ngossip_port = {a.gossip_port}\n'
                f"http_port = {a.http_port}\n"
            )
        return "\n".join(lines)

    def start(self, agent: Agent) -> None:
        """Start one agent, its output in logs/<name>.log; in its own session, tied to us."""
        argv = agent_argv("--config", str(self.config), "--node", agent.name, "--exit-with-parent")
        agent.process = spawn(argv, self.logs / f"{agent.name}.log", self.workdir)

    def check_alive(self, except_: str | None = None) -> None:
        """Raise if any started agent (other than ``except_``) has exited."""
        for a in self.agents:
            if a.name != except_ and a.process is not None and a.process.poll() is not None:
                raise BenchError(f"{a.name} exited unexpectedly (status {a.process.returncode})")

    def stop(self) -> None:
        """SIGTERM every running agent, wait up to STOP_GRACE, SIGKILL the rest (by PID)."""
        stop_processes([a.process for a in self.agents if a.process is not None], STOP_GRACE)

    def log_tails(self, lines: int = 8) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            if tail:
                parts.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


# --- HTTP ----------------------------------------------------------------------------------


@dataclass
class Verdicts:
    """What the run saw about wrong verdicts, from every /v1/members answer."""

    victim: str | None = None
    wrongly_dead: set[str] = field(default_factory=set)
    suspected: set[str] = field(default_factory=set)

    def note(self, states: dict[str, str]) -> None:
        for name, state in states.items():
            if name == self.victim:
                continue
            if state == "dead":
                self.wrongly_dead.add(name)
            elif state == "suspect":
                self.suspected.add(name)


class Api:
    """GETs and PUTs against the agents, one keep-alive connection per agent.

    A minimal HTTP/1.1 client rather than httpx: polling 50 nodes at once,
    httpx cost this process about 2 ms of CPU per request, so one sweep took
    ~100 ms and every propagation time measured was inflated by that much;
    this one costs a fifth of it (the nodes' own request handling is then
    most of a sweep). Every ``/v1/members`` answer is checked for wrong
    verdicts. Use as ``async with Api(verdicts) as api``.
    """

    def __init__(self, verdicts: Verdicts) -> None:
        self.verdicts = verdicts
        self.round_trips: list[float] = []
        self._http = HttpClient(REQUEST_TIMEOUT)
        self.failures = self._http.failures
        """Requests that got no answer, by exception type (refused, timed out, closed)."""

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.__aexit__(*exc_info)

    async def request(
        self, agent: Agent, method: str, path: str, body: Any = None
    ) -> tuple[int, Any] | None:
        """(status, JSON answer), or None if the node does not answer (yet, or any more)."""
        return await self._http.request(HOST, agent.http_port, method, path, body)

    async def get(self, agent: Agent, path: str) -> Any:
        """The JSON answer to a GET if it is a 200, else None."""
        sent = time.monotonic()
        result = await self.request(agent, "GET", path)
        if result is None or result[0] != 200:
            return None
        self.round_trips.append(time.monotonic() - sent)
        return result[1]

    async def states(self, agent: Agent) -> dict[str, str] | None:
        members = await self.get(agent, "/v1/members")
        if members is None:
            return None
        states = {m["name"]: m["state"] for m in members}
        self.verdicts.note(states)
        return states

    async def stats(self, agent: Agent) -> dict[str, int]:
        status = await self.get(agent, "/v1/status")
        if status is None:
            raise BenchError(f"{agent.name}: no answer to GET /v1/status")
        stats: dict[str, int] = status.get("stats", {})
        return stats

    async def all_stats(self, agents: list[Agent]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}

        async def one(agent: Agent) -> None:
            out[agent.name] = await self.stats(agent)

        async with trio.open_nursery() as nursery:
            for a in agents:
                nursery.start_soon(one, a)
        return out

    async def register(self, agent: Agent, service: str, instance: str, port: int) -> None:
        body = {"name": service, "id": instance, "port": port}
        result = await self.request(agent, "PUT", "/v1/services", body)
        if result is None or result[0] != 200:
            raise BenchError(f"{agent.name}: PUT /v1/services answered {result!r}")


async def poll_until(check: Callable[[], Awaitable[bool]], interval: float) -> float:
    """Await ``check`` until it is true, ``interval`` s apart; when (monotonic) it said so."""
    while not await check():
        await trio.sleep(interval)
    return time.monotonic()


async def first_times(
    agents: list[Agent],
    check: Callable[[Agent], Awaitable[bool]],
    interval: float,
    timeout: float,
) -> dict[str, float]:
    """Poll every agent in parallel; when each first passed ``check`` (those that did in time)."""
    times: dict[str, float] = {}

    async def watch(agent: Agent) -> None:
        times[agent.name] = await poll_until(lambda: check(agent), interval)

    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:
            for a in agents:
                nursery.start_soon(watch, a)
    return times


# --- Phases -------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q of the values at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def join_phase(
    cluster: LocalCluster, api: Api, stagger: float, say: Callable[[str], None]
) -> dict[str, float]:
    """Start every agent (n1 first); times until every node lists all N alive."""
    agents = cluster.agents
    n = len(agents)
    seed, rest = agents[0], agents[1:]

    async def listening(agent: Agent) -> bool:
        if not agent.running:
            raise BenchError(f"{agent.name} exited at start (see logs/{agent.name}.log)")
        if await api.get(agent, "/healthz") is None:
            return False
        agent.listening_at = time.monotonic()
        return True

    async def converged(agent: Agent) -> bool:
        if not agent.running:
            raise BenchError(f"{agent.name} exited while joining")
        states = await api.states(agent)
        return states is not None and len(states) == n and set(states.values()) == {"alive"}

    first_start = time.monotonic()
    cluster.start(seed)
    with trio.move_on_after(SEED_TIMEOUT):
        await poll_until(lambda: listening(seed), HEALTH_POLL)
    if seed.listening_at is None:
        raise BenchError(f"{seed.name} not listening within {SEED_TIMEOUT:.0f}s")
    say(f"{seed.name} listening after {seed.listening_at - first_start:.2f}s; starting the rest")

    done: dict[str, float] = {}
    deadline = first_start + join_timeout(n)

    async def watch(agent: Agent) -> None:
        while agent.listening_at is None:  # poll health faster than membership
            if await listening(agent):
                break
            await trio.sleep(HEALTH_POLL)
        done[agent.name] = await poll_until(lambda: converged(agent), MEMBERS_POLL)

    with trio.move_on_after(max(0.0, deadline - time.monotonic())):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, seed)
            for agent in rest:
                cluster.start(agent)
                nursery.start_soon(watch, agent)
                await trio.sleep(stagger)
    cluster.check_alive()
    if len(done) < n:
        missing = [a.name for a in agents if a.name not in done]
        raise BenchError(f"not converged within {join_timeout(n):.0f}s: {', '.join(missing)}")
    last_converged = max(done.values())
    last_listening = max(a.listening_at or math.inf for a in agents)
    return {
        "join_s": last_converged - first_start,
        "join_from_last_listening_s": last_converged - last_listening,
    }


async def idle_phase(
    cluster: LocalCluster, settle: float, seconds: float, verdicts: Verdicts
) -> tuple[dict[str, float], str]:
    """Figures over a window with no requests: CPU, RSS, UDP sent; and a diagnostic line."""
    agents = cluster.agents
    n = len(agents)
    await trio.sleep(settle)
    async with Api(verdicts) as api:  # closed before the window: no keep-alive timers in it
        before = await api.all_stats(agents)
    stats_start = time.monotonic()
    await trio.sleep(0.5)  # let the servers finish closing those connections
    cpu_start = {a.name: cpu_seconds(a.pid) for a in agents}
    wall_start = time.monotonic()
    await trio.sleep(seconds)
    cpu_end = {a.name: cpu_seconds(a.pid) for a in agents}
    wall = time.monotonic() - wall_start
    rss = [rss_mib(a.pid) for a in agents]
    async with Api(verdicts) as api:
        after = await api.all_stats(agents)
    stats_wall = time.monotonic() - stats_start
    cluster.check_alive()

    cpu = [100 * (cpu_end[a.name] - cpu_start[a.name]) / wall for a in agents]

    def rate(key: str) -> list[float]:
        deltas = [after[a.name].get(key, 0) - before[a.name].get(key, 0) for a in agents]
        return [d / stats_wall for d in deltas]

    pkts, udp_bytes = rate("udp_out"), rate("udp_bytes_out")
    probes = statistics.fmean(rate("probes"))
    suspicions = sum(after[a].get("suspicions", 0) - before[a].get("suspicions", 0) for a in after)
    figures = {
        "cpu_pct_per_node": statistics.fmean(cpu),
        "rss_mb_per_node": statistics.median(rss),
        "udp_pkts_per_node_s": statistics.fmean(pkts),
        "udp_bytes_per_node_s": statistics.fmean(udp_bytes),
    }
    busiest = max(range(n), key=lambda i: cpu[i])
    note = (
        f"idle {wall:.0f}s: cpu mean {figures['cpu_pct_per_node']:.2f}% "
        f"(max {cpu[busiest]:.2f}% on {agents[busiest].name}), "
        f"rss median {figures['rss_mb_per_node']:.1f} MiB (max {max(rss):.1f}), "
        f"udp {figures['udp_pkts_per_node_s']:.2f} pkt/s {figures['udp_bytes_per_node_s']:.0f} B/s "
        f"per node, probes {probes:.2f}/s per node, suspicions {suspicions}"
    )
    return figures, note


async def registration_phase(
    cluster: LocalCluster,
    api: Api,
    rng: random.Random,
    count: int,
    poll_interval: float,
    say: Callable[[str], None],
) -> dict[str, float]:
    """``count`` registrations one at a time; time until each is returned by every node."""
    agents = cluster.agents
    spreads: list[float] = []
    api.round_trips.clear()
    api.failures.clear()
    for i in range(count):
        origin = rng.choice(agents)
        service, instance = f"bench-{i}", f"bench-{i}-{origin.name}"

        async def has_it(agent: Agent, service: str = service) -> bool:
            found = await api.get(agent, f"/v1/services/{service}")
            return bool(found)

        sent = time.monotonic()
        await api.register(origin, service, instance, 20000 + i)
        times = await first_times(agents, has_it, poll_interval, REGISTRATION_TIMEOUT)
        spread = max(times.values()) - sent if len(times) == len(agents) else math.inf
        spreads.append(spread)
        if spread == math.inf:
            say(f"registration {i} on {origin.name}: not on every node in {REGISTRATION_TIMEOUT}s")
        elif spread > SLOW_SPREAD:
            last = max(times, key=times.__getitem__)
            say(f"registration {i} on {origin.name}: {ms(spread)}, last on {last}")
        await trio.sleep(REGISTRATION_GAP)
    cluster.check_alive()
    rtts = api.round_trips or [math.nan]
    say(
        f"{count} registrations: p50 {ms(statistics.median(spreads))}, "
        f"p99 {ms(percentile(spreads, 0.99))}, min {ms(min(spreads))}; "
        f"{len(api.round_trips)} polls, round trip median {ms(statistics.median(rtts))} "
        f"max {ms(max(rtts))}, unanswered {dict(api.failures) or 0}"
    )
    return {"reg_p50_s": statistics.median(spreads), "reg_p99_s": percentile(spreads, 0.99)}


async def crash_phase(
    cluster: LocalCluster, api: Api, rng: random.Random, say: Callable[[str], None]
) -> tuple[dict[str, float], int]:
    """SIGKILL a random non-seed node; times until the first and every survivor see it dead.

    Also returns how many dead verdicts the protocol counted beyond the
    expected one per survivor about the victim (``members_failed`` stats).
    """
    victim = rng.choice(cluster.agents[1:])
    survivors = [a for a in cluster.agents if a is not victim]
    # Until now no node should have declared anyone dead: this counts any that did.
    failed_before = (await api.stats(victim)).get("members_failed", 0)
    api.verdicts.victim = victim.name

    async def sees_dead(agent: Agent) -> bool:
        states = await api.states(agent)
        return states is not None and states.get(victim.name) == "dead"

    assert victim.process is not None
    victim.process.send_signal(signal.SIGKILL)  # by PID; never a reaped one
    killed = time.monotonic()
    times = await first_times(survivors, sees_dead, MEMBERS_POLL, DETECT_TIMEOUT)
    cluster.check_alive(except_=victim.name)
    for agent in survivors:  # one last look for wrong verdicts
        await api.states(agent)
    stats = await api.all_stats(survivors)
    failed_after = sum(s.get("members_failed", 0) for s in stats.values())
    refutes = sum(s.get("refutes", 0) for s in stats.values())
    excess = failed_before + failed_after - len(survivors)
    first = min(times.values()) - killed if times else math.inf
    last = max(times.values()) - killed if len(times) == len(survivors) else math.inf
    say(
        f"killed {victim.name}: first saw it dead after {first:.2f}s, all after {last:.2f}s "
        f"({len(times)}/{len(survivors)}); refutes so far {refutes}"
    )
    return {"detect_first_s": first, "detect_all_s": last}, excess


# --- Runs ---------------------------------------------------------------------------------


@dataclass
class RunOptions:
    """The knobs of one run, from the command line (seconds unless named otherwise)."""

    stagger: float
    settle: float
    idle_seconds: float
    registrations: int
    poll_interval: float


async def measure(
    cluster: LocalCluster, options: RunOptions, rng: random.Random, say: Callable[[str], None]
) -> dict[str, float]:
    """join -> idle window -> registrations -> crash, on a cluster whose processes we own."""
    verdicts = Verdicts()
    figures: dict[str, float] = {}
    async with Api(verdicts) as api:
        figures |= await join_phase(cluster, api, options.stagger, say)
    say(
        f"converged: join {figures['join_s']:.2f}s, "
        f"{figures['join_from_last_listening_s']:.2f}s after the last node listened"
    )
    idle, note = await idle_phase(cluster, options.settle, options.idle_seconds, verdicts)
    figures |= idle
    say(note)
    async with Api(verdicts) as api:
        figures |= await registration_phase(
            cluster, api, rng, options.registrations, options.poll_interval, say
        )
        detection, excess = await crash_phase(cluster, api, rng, say)
        figures |= detection
    figures["false_positives"] = len(verdicts.wrongly_dead)
    if excess > 0 and not verdicts.wrongly_dead:
        say(f"{excess} dead verdicts beyond the victim's, unseen by the samples")
        figures["false_positives"] = 1
    if verdicts.wrongly_dead or verdicts.suspected:
        say(
            f"wrongly dead: {sorted(verdicts.wrongly_dead) or 'none'}; "
            f"seen suspect: {sorted(verdicts.suspected) or 'none'}"
        )
    return figures


def run_once(
    n: int, run: int, runs: int, options: RunOptions, workdir: Path, seed: int
) -> dict[str, float] | None:
    """One run on a fresh cluster; its figures, or None if it failed (reported with log tails)."""
    label = f"[N={n} run {run}/{runs}]"

    def say(message: str) -> None:
        print(f"{label} {message}", flush=True)

    cluster = LocalCluster(workdir, n)
    say(f"starting {n} agents (config {cluster.config})")
    failure: BaseExceptionGroup[BenchError] | None = None
    try:
        rng = random.Random(f"{seed}-{n}-{run}")
        return trio.run(interrupt_on_sigterm, partial(measure, cluster, options, rng, say))
    except* BenchError as group:  # raised in a nursery's task, it arrives in a group
        failure = group
    finally:
        cluster.stop()
        say("stopped every agent")
    reasons = "; ".join(str(exc) for exc in _leaves(failure))
    say(f"FAILED: {reasons}\n{cluster.log_tails()}")
    return None


def _leaves(group: BaseExceptionGroup[BenchError] | None) -> Iterator[BaseException]:
    for exc in group.exceptions if group is not None else ():
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def median_row(n: int, results: list[dict[str, float]]) -> dict[str, Any]:
    """The JSON row: the median of each figure over the runs that measured it."""
    row: dict[str, Any] = {"nodes": n, "runs": len(results)}
    for name in FIGURES:
        values = [r[name] for r in results if name in r]
        row[name] = statistics.median(values) if values else None
    return row


@contextlib.contextmanager
def work_root(path: Path | None) -> Iterator[Path]:
    """The given directory (kept), or a temporary one (deleted at the end)."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        yield Path(tmp)


# --- Report ------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "timeout"
    if float(value).is_integer() and abs(value) < 1e6:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def print_report(rows: list[dict[str, Any]]) -> None:
    """Figures down, N across; then each target checked against the largest N."""
    largest = max(rows, key=lambda r: r["nodes"])
    targets = {t.figure: t for t in TARGETS}
    header = ["figure", *(f"N={r['nodes']}" for r in rows), f"target (N={largest['nodes']})", ""]
    table = [["runs", *(str(r["runs"]) for r in rows), "", ""]]
    for name in FIGURES:
        target = targets.get(name)
        verdict = ""
        if target is not None:
            value = largest[name]
            verdict = "PASS" if value is not None and target.met(value) else "MISS"
        table.append([name, *(fmt(r[name]) for r in rows), target.text if target else "", verdict])
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    print("\nmedian over runs (times in seconds):")
    for line in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    pkts = [r["udp_pkts_per_node_s"] for r in rows if r["udp_pkts_per_node_s"]]
    if len(pkts) >= 2:
        ratio = max(pkts) / min(pkts)
        verdict = "PASS" if ratio <= FLATNESS else "MISS"
        print(
            f"udp_pkts_per_node_s flat in N: max/min over N = {ratio:.2f} "
            f"(target <= {FLATNESS}) {verdict}"
        )
    print(flush=True)


def write_json(path: Path, rows: list[dict[str, Any]]) -> None:
    def clean(value: Any) -> Any:
        if isinstance(value, float):
            return None if math.isinf(value) or math.isnan(value) else round(value, 4)
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    data = [{k: clean(v) for k, v in row.items()} for row in rows]
    path.write_text(json.dumps(data, indent=2) + "\n")


# --- Command line ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", default="5,20,50", help="cluster sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="runs per size (median reported)")
    parser.add_argument(
        "--idle-seconds", type=float, help="idle window (default 60; 10 with --quick)"
    )
    parser.add_argument(
        "--settle-seconds", type=float, help="wait after join (default 5; 2 with --quick)"
    )
    parser.add_argument("--registrations", type=int, help="default 20; 10 with --quick")
    parser.add_argument("--poll-interval", type=float, default=0.01, help="seconds; default 0.01")
    parser.add_argument("--stagger", type=float, default=0.05, help="seconds between starts")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 10 s idle, 2 s settle, 10 registrations"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench-results" / "bench_cluster.json",
        help="where the rows go (default: bench-results/bench_cluster.json)",
    )
    parser.add_argument("--workdir", type=Path, help="keep configs, data and logs here")
    parser.add_argument(
        "--seed", type=int, default=1, help="seeds the choice of registering and killed nodes"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    if args.idle_seconds is None:
        args.idle_seconds = 10.0 if quick else 60.0
    if args.settle_seconds is None:
        args.settle_seconds = 2.0 if quick else 5.0
    if args.registrations is None:
        args.registrations = 10 if quick else 20
    args.sizes = [int(x) for x in args.nodes.split(",") if x.strip()]
    if not args.sizes or min(args.sizes) < 2 or args.runs < 1:
        parser.error("--nodes needs sizes >= 2 and --runs at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_interruptible(lambda: bench(args), "every agent was stopped")


def bench(args: argparse.Namespace) -> int:
    """Every run of every size, then the table and the JSON; 1 if any run failed."""
    options = RunOptions(
        stagger=args.stagger,
        settle=args.settle_seconds,
        idle_seconds=args.idle_seconds,
        registrations=args.registrations,
        poll_interval=args.poll_interval,
    )
    print(f"command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}", flush=True)
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}", flush=True)
    rows: list[dict[str, Any]] = []
    false_positives = 0
    failures = 0
    started = time.monotonic()
    with work_root(args.workdir) as root:
        for n in args.sizes:
            results = []
            for run in range(1, args.runs + 1):
                result = run_once(n, run, args.runs, options, root / f"n{n}-run{run}", args.seed)
                if result is None:
                    failures += 1
                else:
                    results.append(result)
                    false_positives += int(result["false_positives"])
            if results:
                rows.append(median_row(n, results))
    if rows:
        print_report(rows)
        print(f"false positives over every run of every size: {false_positives}")
        write_json(args.json, rows)
        print(f"wrote {args.json} ({time.monotonic() - started:.0f}s in all)", flush=True)
    if failures:
        print(f"{failures} run(s) failed; see above", flush=True)
    return 1 if failures or not rows else 0


if __name__ == "__main__":
    raise SystemExit(main())
