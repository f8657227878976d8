"""What the chaos runner does through each node's HTTP API: observe, and churn registrations.

Both only talk to nodes and write the history; neither judges anything (that
is ``checker.py``'s job, from the history). Requests to a paused or partitioned
node time out after ``REQUEST_TIMEOUT`` and are recorded as unanswered.
"""

from __future__ import annotations

import random

import trio

from gossip_registry.chaos.cluster import ChaosCluster
from gossip_registry.chaos.history import Event
from gossip_registry.chaos.http11 import HttpClient

__all__ = ["SERVICE", "Churn", "Observer"]

SERVICE = "chaos"
"""The one service name the churn uses: one GET per node lists every churned instance."""
REQUEST_TIMEOUT = 1.0
REGISTER_SHARE = 0.65
"""Share of churn operations that register (the rest deregister an acknowledged one)."""


class Observer:
    """Sweeps every node every ``interval`` s: members, digest and the churned instances."""

    def __init__(self, cluster: ChaosCluster, interval: float) -> None:
        self.cluster = cluster
        self.interval = interval
        self.round = 0
        self.last: dict[str, Event] = {}

    async def run(self) -> None:
        async with HttpClient(REQUEST_TIMEOUT) as http:
            while True:
                started = trio.current_time()
                await self.sweep(http)
                await trio.sleep_until(started + self.interval)

    async def sweep(self, http: HttpClient) -> None:
        self.round += 1
        async with trio.open_nursery() as nursery:
            for i in range(self.cluster.n):
                nursery.start_soon(self._look, http, i, self.round)

    async def _look(self, http: HttpClient, i: int, round_: int) -> None:
        host, port = self.cluster.http(i)
        event: Event = {"type": "obs", "round": round_, "node": self.cluster.names[i]}
        event |= {"members": None, "digest": None, "ids": None}
        members = await http.request(host, port, "GET", "/v1/members")
        if members is not None and members[0] == 200:
            event["members"] = {m["name"]: m["state"] for m in members[1]}
            status = await http.request(host, port, "GET", "/v1/status")
            if status is not None and status[0] == 200:
                event["digest"] = status[1]["digest"]
            found = await http.request(host, port, "GET", f"/v1/services/{SERVICE}?passing=false")
            if found is not None and found[0] == 200:
                # Stale answers (self-preservation) carry a flag that tells the client the
                # owner may be gone: recorded apart, and judged apart by the checker.
                event["ids"] = sorted(x["id"] for x in found[1] if not x.get("stale"))
                event["stale_ids"] = sorted(x["id"] for x in found[1] if x.get("stale"))
        self.cluster.history.write(event)
        self.last[event["node"]] = event


class Churn:
    """Registers and deregisters instances of ``SERVICE`` on random up nodes, each an ``op``."""

    def __init__(self, cluster: ChaosCluster, interval: float, rng: random.Random) -> None:
        self.cluster = cluster
        self.interval = interval
        self.rng = rng
        self.acked: dict[str, int] = {}
        """Acknowledged, not deregistered: instance id -> owner index."""
        self.seq = 0

    async def run(self) -> None:
        async with HttpClient(REQUEST_TIMEOUT) as http:
            while True:
                await self.step(http)
                await trio.sleep(self.interval)

    async def step(self, http: HttpClient) -> None:
        up = self.cluster.up()
        if not up:
            return
        history = self.cluster.history
        mine = [e for e, owner in self.acked.items() if owner in up]
        if mine and self.rng.random() > REGISTER_SHARE:
            entry = self.rng.choice(sorted(mine))
            i, op = self.acked[entry], "deregister"
            method, path, body = "DELETE", f"/v1/services/{entry}", None
        else:
            self.seq += 1
            i, op, entry = self.rng.choice(up), "register", f"c{self.seq}"
            method, path = "PUT", "/v1/services"
            body = {"name": SERVICE, "id": entry, "port": 10000 + self.seq % 50000}
        start = history.now()
        answer = await http.request(*self.cluster.http(i), method, path, body)
        ok = answer is not None and answer[0] == 200
        history.write(
            {"type": "op", "op": op, "node": self.cluster.names[i], "id": entry}
            | {"start": start, "end": history.now(), "ok": ok}
            | {"status": None if answer is None else answer[0]}
        )
        if ok and op == "register":
            self.acked[entry] = i
        elif ok:
            del self.acked[entry]
        if ok:
            self.cluster.acknowledged(i, op)
