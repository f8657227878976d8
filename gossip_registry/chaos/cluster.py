"""The chaos cluster: agent processes on a host set, and the faults a scenario asks for.

Every fault is written to the history when it starts and when it ends, before
or after the act itself as the checker needs: a kill is recorded before the
signal (a verdict can never precede its excuse), a heal after the rules are
gone. Processes are signalled by PID only (``Popen.send_signal``).
"""

from __future__ import annotations

import math
import random
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import trio

from gossip_registry.chaos.history import History
from gossip_registry.chaos.hosts import GOSSIP_PORT, HTTP_PORT, Faults, Hosts
from gossip_registry.chaos.processes import agent_argv, spawn, stop_processes
from gossip_registry.config.cluster_file import PROFILES

__all__ = ["ChaosCluster", "Timing"]

STOP_GRACE = 8.0
"""Seconds an agent gets after SIGTERM to leave and write its snapshot."""


@dataclass(frozen=True)
class Timing:
    """The profile's timings that scenarios and bounds are computed from (seconds)."""

    probe_interval: float
    suspicion_min: float
    suspicion_max: float
    reconnect_interval: float

    @classmethod
    def of(cls, profile: str, n: int) -> Timing:
        config = PROFILES[profile]()
        smin = config.suspicion_min(n)
        return cls(
            config.probe_interval, smin, smin * config.suspicion_max_mult, config.reconnect_interval
        )

    @property
    def detect_bound(self) -> float:
        """Kill to dead everywhere: first probe, the longest suspicion, the gossip, slack."""
        return self.suspicion_max + 3 * self.probe_interval + 5.0

    @property
    def converge_bound(self) -> float:
        """Heal to agreement: a dead verdict waits for a reconnect attempt (0.5-1.5 x interval)."""
        return 1.5 * self.reconnect_interval + self.suspicion_max + 10.0


class ChaosCluster:
    """n agents named n1..nN on ``hosts``; start, stop and the faults, each in the history."""

    def __init__(
        self, hosts: Hosts, workdir: Path, profile: str, history: History, rng: random.Random
    ) -> None:
        self.hosts = hosts
        self.workdir = workdir
        self.profile = profile
        self.history = history
        self.rng = rng
        self.names = [f"n{i + 1}" for i in range(len(hosts.addresses))]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(self.names)
        self.down: set[int] = set()
        """Indexes whose process is not running on purpose (killed, or stopped to restart)."""
        self.faults = Faults()
        self._ack_waiters: list[tuple[frozenset[str], trio.MemorySendChannel[int]]] = []
        (workdir / "logs").mkdir(parents=True, exist_ok=True)

    @property
    def n(self) -> int:
        return len(self.names)

    def up(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.down]

    def http(self, i: int) -> tuple[str, int]:
        return self.hosts.addresses[i], HTTP_PORT

    # --- processes ----------------------------------------------------------------------

    def start(self, i: int) -> None:
        """Start agent i from its data dir, joining through every other node's address."""
        host = self.hosts.addresses[i]
        argv = agent_argv(
            "--name",
            self.names[i],
            "--bind",
            f"{host}:{GOSSIP_PORT}",
            "--http",
            f"{host}:{HTTP_PORT}",
            "--data-dir",
            str(self.workdir / "data" / self.names[i]),
            "--profile",
            self.profile,
            "--exit-with-parent",
            *self.hosts.agent_args(),
        )
        for j, other in enumerate(self.hosts.addresses):
            if j != i:
                argv += ["--join", f"{other}:{GOSSIP_PORT}"]
        log = self.workdir / "logs" / f"{self.names[i]}.log"
        self.procs[i] = spawn(self.hosts.command(i, argv), log, self.workdir)
        self.down.discard(i)

    def exited(self) -> list[str]:
        """Agents that exited without being told to."""
        return [
            self.names[i]
            for i, p in enumerate(self.procs)
            if p is not None and i not in self.down and p.poll() is not None
        ]

    def stop_all(self) -> None:
        stop_processes([p for p in self.procs if p is not None], STOP_GRACE)

    # --- process faults -----------------------------------------------------------------

    def kill(self, victims: list[int]) -> None:
        """SIGKILL, for good: the victims stay down for the rest of the run."""
        self.history.fault_start("down", [self.names[i] for i in victims], how="sigkill")
        for i in victims:
            self.down.add(i)
            proc = self.procs[i]
            assert proc is not None
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    async def pause(self, i: int, seconds: float) -> None:
        """SIGSTOP for ``seconds``, then SIGCONT: a member too slow to answer, not gone."""
        proc = self.procs[i]
        assert proc is not None
        fault = self.history.fault_start("pause", [self.names[i]], seconds=seconds)
        proc.send_signal(signal.SIGSTOP)
        try:
            await trio.sleep(seconds)
        finally:
            proc.send_signal(signal.SIGCONT)
            self.history.fault_end(fault)

    async def restart(self, indexes: list[int]) -> None:
        """SIGTERM (leave, snapshot), wait for the exit, start again from the data dir."""
        fault = self.history.fault_start("down", [self.names[i] for i in indexes], how="restart")
        self.down.update(indexes)
        procs = [p for i in indexes if (p := self.procs[i]) is not None]
        await trio.to_thread.run_sync(stop_processes, procs, STOP_GRACE)
        for i in indexes:
            self.start(i)
        self.history.fault_end(fault)

    async def crash_restart(self, i: int, delay: float) -> None:
        """SIGKILL (no leave, no last snapshot), then start again from the data dir after
        ``delay`` seconds: whatever it acknowledged must have been on disk."""
        fault = self.history.fault_start(
            "down", [self.names[i]], how="sigkill-restart", delay=delay
        )
        self.down.add(i)
        proc = self.procs[i]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        await trio.to_thread.run_sync(proc.wait, 10)
        await trio.sleep(delay)
        self.start(i)
        self.history.fault_end(fault)

    # --- acknowledgements (from the churn) ----------------------------------------------

    def acknowledged(self, i: int, op: str) -> None:
        """Node i answered 200 to ``op`` (register or deregister): wake who waits for it."""
        waiting, self._ack_waiters = self._ack_waiters, []
        for ops, send in waiting:
            if op in ops:
                send.send_nowait(i)
            else:
                self._ack_waiters.append((ops, send))

    async def next_ack(self, ops: frozenset[str], timeout: float) -> int | None:
        """The node that acknowledges one of ``ops`` next; None after ``timeout`` seconds."""
        send, receive = trio.open_memory_channel[int](1)
        self._ack_waiters.append((ops, send))
        with trio.move_on_after(timeout):
            return await receive.receive()
        self._ack_waiters = [w for w in self._ack_waiters if w[1] is not send]
        return None

    # --- network faults -----------------------------------------------------------------

    async def loss(self, rate: float, seconds: float) -> None:
        fault = self.history.fault_start("loss", [self.names[i] for i in self.up()], rate=rate)
        await self._hold(Faults(loss=rate, blocked=self.faults.blocked), seconds, fault)

    async def partition(
        self, groups: list[list[int]], seconds: float, *, one_way: bool = False
    ) -> None:
        """Cut every link between groups (with ``one_way``, only from the first to the rest)."""
        blocked = {
            (a, b)
            for gi, ga in enumerate(groups)
            for gj, gb in enumerate(groups)
            if gi != gj and (not one_way or gi == 0)
            for a in ga
            for b in gb
        }
        named = [[self.names[i] for i in g] for g in groups]
        everyone = sorted(name for group in named for name in group)
        fault = self.history.fault_start("partition", everyone, groups=named, one_way=one_way)
        await self._hold(Faults(self.faults.loss, frozenset(blocked)), seconds, fault)

    async def _hold(self, faults: Faults, seconds: float, fault: int) -> None:
        before = self.faults
        self._apply(faults)
        try:
            await trio.sleep(seconds)
        finally:
            self._apply(before)
            self.history.fault_end(fault)

    def _apply(self, faults: Faults) -> None:
        self.faults = faults
        self.hosts.apply(faults)

    def sample(self, share: float, among: list[int] | None = None) -> list[int]:
        """A random ``share`` of the nodes (at least one), in index order."""
        pool = self.up() if among is None else among
        k = max(1, math.floor(share * len(pool) + 0.5))
        return sorted(self.rng.sample(pool, min(k, len(pool))))
