"""The chaos scenarios, all in one place: a name, what it tests, and its steps.

A scenario's steps inject faults through the ``ChaosCluster`` and return when
every fault is over; the runner churns registrations meanwhile and then waits
for the cluster to converge. Lengths come from the profile's timings
(``Timing``) so "shorter than the suspicion timeout" stays true whatever the
profile, and from ``duration`` (the ``--duration`` option) where a fault
simply lasts a while. To add a scenario, add one entry to ``SCENARIOS``.

Profiles: every scenario runs the ``local`` profile (memberlist's, for
loopback: short timeouts, so runs are short) unless ``--profile`` says
otherwise, except the loss scenarios, which run ``lan``. The local profile
assumes no loss: one indirect check, a 200 ms probe timeout and two
transmissions per update. Under 30 % loss a direct probe round trip fails
half the time, its single indirect path (four datagrams) three times in
four, and the TCP fallback fails whenever the SYN or its answer is lost
(half the time: the SYN is sent again only after 1 s, beyond the probe
interval); so live nodes are declared dead, which is the profile's stated
limit, not a protocol fault. The lan profile (three indirect checks,
500 ms, four transmissions) is the one meant for real networks, and it
declares no live node dead at 30 % loss (as Serf reports of the same
defaults).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from gossip_registry.chaos.cluster import ChaosCluster, Timing

__all__ = ["SCENARIOS", "Scenario", "Steps"]

Wait = Callable[[list[int]], Awaitable[None]]
Steps = Callable[[ChaosCluster, Timing, float, Wait], Awaitable[None]]
"""(cluster, timing, duration, wait until every survivor sees these dead) -> done."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    steps: Steps
    profile: str = "local"
    """The protocol profile it runs when ``--profile`` is not given."""


def cut_length(timing: Timing, duration: float) -> float:
    """A partition long enough for each side to declare the other dead."""
    return max(duration, timing.suspicion_max + 2 * timing.probe_interval)


def long_pause(timing: Timing) -> float:
    return timing.suspicion_max + 2 * timing.probe_interval + 2.0


def short_pause(timing: Timing) -> float:
    return 0.5 * timing.suspicion_min


def halves(cluster: ChaosCluster, among: list[int]) -> list[list[int]]:
    first = cluster.sample(0.5, among)
    return [first, [i for i in among if i not in first]]


async def kill(c: ChaosCluster, t: Timing, duration: float, wait: Wait) -> None:
    victims = c.sample(0.3)
    c.kill(victims)
    await wait(victims)


async def pause_short(c: ChaosCluster, t: Timing, duration: float, wait: Wait) -> None:
    await c.pause(c.sample(0)[0], short_pause(t))


async def pause_long(c: ChaosCluster, t: Timing, duration: float, wait: Wait) -> None:
    await c.pause(c.sample(0)[0], long_pause(t))


def loss(rate: float) -> Steps:
    async def steps(c: ChaosCluster, t: Timing, duration: float, wait: Wait) -> None:
        await c.loss(rate, duration)

    return steps


async def partition(c: ChaosCluster, t: Timing, duration: float, wait: Wait) -> None:
    await c.partition(halves(c, c.up()), cut_length(t, duration))


async def isolate(c: ChaosCluster, t: Timing, duration: float, wait: Wait) -> None:
    minority = c.sample(0.2)
    await c.partition([minority, [i for i in c.up() if i not in minority]], cut_length(t, duration))


async def one_way(c: ChaosCluster, t: Timing, duration: float, wait: Wait) -> None:
    await c.partition(halves(c, c.up()), cut_length(t, duration), one_way=True)


async def rolling_restart(c: ChaosCluster, t: Timing, duration: float, wait: Wait) -> None:
    for i in range(c.n):
        await c.restart([i])
        await trio.sleep(2 * t.probe_interval)


async def full_restart(c: ChaosCluster, t: Timing, duration: float, wait: Wait) -> None:
    await c.restart(list(range(c.n)))


ANY_WRITE = frozenset({"register", "deregister"})
ACK_WAIT = 10.0
"""Seconds a crash waits for an acknowledged write before striking at random instead."""
ACK_MARGIN = 0.04
"""A crash "right after an acknowledgement" comes within this many seconds of it (plus the
few milliseconds the signal takes)."""


def short_down(timing: Timing, rng: random.Random) -> float:
    """A crash-restart quicker than any peer can declare the node dead."""
    return rng.uniform(0.2, 0.5 * timing.suspicion_min)


def long_down(timing: Timing, rng: random.Random) -> float:
    """A crash-restart after every peer declared the node dead and fenced its entries."""
    return timing.detect_bound + rng.uniform(0.0, 3.0)


async def crash_after_ack(
    c: ChaosCluster, t: Timing, delay: float, ops: frozenset[str] = ANY_WRITE
) -> None:
    """SIGKILL the next node to acknowledge one of ``ops``, within ACK_MARGIN of its answer;
    restart it after ``delay``."""
    victim = await c.next_ack(ops, ACK_WAIT)
    if victim is None or victim in c.down:
        victim = c.sample(0)[0]
    await trio.sleep(c.rng.uniform(0.0, ACK_MARGIN))
    await c.crash_restart(victim, delay)


async def crash_restart(c: ChaosCluster, t: Timing, duration: float, wait: Wait) -> None:
    """Owners SIGKILLed during the churn and restarted from their data dir, for ``duration``.

    Half the crashes come within ACK_MARGIN of an acknowledged write of the
    victim's, half at a random moment (often with a request in flight). The
    first down time is shorter than detection, the second longer, the rest
    drawn (a quarter long); between crashes the restarted node gets a few
    probe intervals to rejoin.
    """
    end = trio.current_time() + duration
    for cycle in itertools.count():
        if trio.current_time() >= end:
            break
        long = cycle == 1 or (cycle > 1 and c.rng.random() < 0.25)
        delay = long_down(t, c.rng) if long else short_down(t, c.rng)
        if c.rng.random() < 0.5:
            await crash_after_ack(c, t, delay)
        else:
            await trio.sleep(c.rng.uniform(0.0, 1.0))
            await c.crash_restart(c.sample(0)[0], delay)
        await trio.sleep(3 * t.probe_interval)


async def smoke(c: ChaosCluster, t: Timing, duration: float, wait: Wait) -> None:
    """CI's short form: one kill -9 right after an acknowledged registration and a restart,
    one kill, one short pause, one partition and heal."""
    await crash_after_ack(c, t, short_down(t, c.rng), frozenset({"register"}))
    await trio.sleep(3 * t.probe_interval)
    victim = c.sample(0)
    c.kill(victim)
    await wait(victim)
    await c.pause(c.sample(0)[0], short_pause(t))
    await c.partition(halves(c, c.up()), cut_length(t, 0))


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("kill", "SIGKILL a random 30 % of the nodes, for good", kill),
        Scenario("pause-short", "SIGSTOP one node for half the minimum suspicion", pause_short),
        Scenario("pause-long", "SIGSTOP one node beyond the longest suspicion", pause_long),
        Scenario("loss-10", "10 % uniform packet loss for --duration", loss(0.10), "lan"),
        Scenario("loss-30", "30 % uniform packet loss for --duration", loss(0.30), "lan"),
        Scenario("partition", "two-way 50/50 partition, then heal", partition),
        Scenario("isolate", "a 20 % minority cut off, then healed", isolate),
        Scenario("one-way", "half the nodes cannot reach the other half", one_way),
        Scenario("rolling-restart", "SIGTERM and restart each node in turn", rolling_restart),
        Scenario("full-restart", "every node stopped at once, restarted from data", full_restart),
        Scenario(
            "crash-restart",
            "SIGKILL owners during the churn (some right after an ack), restart from data",
            crash_restart,
        ),
        Scenario("smoke", "kill -9 and restart, a kill, a pause, a partition and heal", smoke),
    )
}
# --- crash-fast (issue 17) -----------------------------------------------------------------


async def crash_fast(c: ChaosCluster, t: Timing, duration: float, wait: Wait) -> None:
    """SIGKILL agents one at a time while their hosts stay up.

    The host of a killed agent refuses its probes (ICMP port unreachable, TCP
    reset), which the protocol takes as evidence: invariant 5 reports the
    first and the all-node detection time of each victim.
    """
    for _ in range(max(1, round(0.2 * c.n))):
        victim = c.sample(0)
        c.kill(victim)
        await wait(victim)


CRASH_FAST = Scenario(
    "crash-fast",
    "SIGKILL ~20 % of the agents one at a time, hosts up: detection by refusal",
    crash_fast,
    "lan",
)
SCENARIOS[CRASH_FAST.name] = CRASH_FAST

# --- end crash-fast ------------------------------------------------------------------------

SUITE = [name for name in SCENARIOS if name != "smoke"]
"""What ``gossip-registry-chaos all`` runs."""
