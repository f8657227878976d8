#!/usr/bin/env python3
"""Replay issue 10's nine attacks against 3 real agents on loopback; a pass/fail table and JSON.

Usage:
    .venv/bin/python scripts/attack.py [--encrypt] [--only 1,3,9] [--quick]
        [--json bench-results/attack.json] [--workdir DIR]

Everything stays on 127.0.0.1 and is bounded in count and time; every agent
is started here and stopped by PID at the end (SIGTERM, then SIGKILL).

Method. A cluster.toml for n1, n2, n3 (LAN profile, data dirs, DNS on;
``--encrypt``: a fresh gossip key) with ``dns_trusted_networks = []``, so
that the attacker on loopback counts as the unknown client it stands for.
The attacked node, n3, runs with a hard limit of 1,024 open files (the
issue's set-up for finding 3). Once all three list each other alive, n3's
RSS is sampled every 0.1 s throughout; its idle RSS is the median over 3 s
before the first attack. Then, in this order (``--only`` picks some):

5. unusable input: ids with a newline or '/', an address with a NUL, a
   check every 1 ms, port 0, a service 'bad name!': each must be a 400 that
   names the field.
7. key change without a write token: ``POST /v1/keyring/install`` and
   ``use`` must be 403 (and, with a key, the keyring unchanged).
9. DNS amplification: 60 instances of ``amp``; an EDNS0 ``ANY`` query must
   be answered in at most 3x its size, an ``SRV`` in at most 512 bytes; a
   burst of queries from one source must be partly dropped and counted
   (``gossip_registry_dns_total{outcome="rate_limited"}``).
4. aborted uploads: requests that declare 60,000 bytes, send 70 and go
   away: no traceback in n3's log, under 20 bytes of log per request.
3. stalled bodies: 1,100 connections (``--quick``: 60) each sending a
   ``PUT`` head with ``Content-Length: 60000`` and one byte. Meanwhile n3
   must answer DNS over TCP and stay alive in n1's view, and never fail an
   ``accept`` (``gossip_registry_http_dropped_total{reason="accept_errors"}``);
   within its body timeout + 5 s every connection must be closed by n3, and
   then n3 answers HTTP again.
8. foreign state: entries of 200 owners that never were members (20 with
   ``--quick``), gossiped to n3 (sealed with the key when there is one: any
   key holder can), must be gone from n3 within ``--ghost-grace`` seconds.
2. memory before authentication: 128 TCP connections (8 with ``--quick``)
   to n3's gossip port, each a frame header declaring the largest frame n3
   accepts (``max_stream_bytes``, 8 MiB; a larger one is refused at its
   header) followed by the strongest content it can send unauthenticated
   (``bench_inbound_memory``'s) as fast as n3 reads it, for at most 20 s (4 s): n3's RSS must stay
   under 2x idle (the attack stops early once it does not).
1. incarnation overflow: one plaintext (or, with a key, sealed) ``dead``
   datagram about n3 at incarnation 2^63-1 to n1 and n2; after 8 s n3 must
   be alive in every view and a registration on n3 must reach n1.
6. special files: n3 restarted with ``snapshot.msgpack`` a FIFO, then a
   symbolic link to /dev/zero (each time it must listen within 30 s, RSS
   under 2x idle), then with ``keyring.json`` a link to /etc/passwd (it
   must refuse to start, saying it is a symbolic link and advising no
   chmod); then n3 is restarted clean.

Each row passes or fails on its own; the run passes if every row does and
n3's RSS never reached 2x idle. The table is printed and the JSON written
(``--json``, default ``bench-results/attack[-encrypt].json``). Exit status
0 if everything passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

import dns.message  # noqa: E402
import trio  # noqa: E402
from bench_cluster import (  # noqa: E402  (scripts/ is not a package)
    HOST,
    Agent,
    Api,
    BenchError,
    LocalCluster,
    Verdicts,
    join_phase,
    rss_mib,
    work_root,
)
from bench_inbound_memory import attack_filler, attack_frame_start  # noqa: E402

from gossip_registry.chaos.processes import spawn, stop_processes  # noqa: E402
from gossip_registry.chaos.sigterm import interrupt_on_sigterm, sigterm_as_ctrl_c  # noqa: E402
from gossip_registry.core.codec import MAX_INCARNATION, encode_packet  # noqa: E402
from gossip_registry.core.config import ProtocolConfig  # noqa: E402
from gossip_registry.core.messages import Dead, EntryUpdate, Packet  # noqa: E402
from gossip_registry.crypto.keyring import UDP, Keyring  # noqa: E402
from gossip_registry.registry.clock import make_stamp  # noqa: E402
from gossip_registry.registry.entry import Entry, Health  # noqa: E402
from gossip_registry.runtime.fdlimit import raise_open_files_limit  # noqa: E402
from tests.support.processes import free_ports  # noqa: E402

ORDER = (5, 7, 9, 4, 3, 8, 2, 1, 6)
"""Attacks in the order run: those that restart or may disable n3 last."""
VICTIM_NOFILE = 1024
RSS_FACTOR = 2.0
RSS_SAMPLE = 0.1
IDLE_SECONDS = 3.0
STOP_GRACE = 10.0
START_TIMEOUT = 30.0
LAUNCH_LIMITED = (
    "import os, resource, sys; "
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({VICTIM_NOFILE}, {VICTIM_NOFILE})); "
    "os.execv(sys.executable, [sys.executable, '-m', 'gossip_registry', 'agent', *sys.argv[1:]])"
)
"""n3's launcher: the agent under a hard open-files limit (it raises its soft one to it)."""


@dataclass
class Sizes:
    """How hard each attack pushes; ``--quick`` shrinks them for the CI smoke test."""

    slow_connections: int = 1100
    aborted: int = 200
    tcp_connections: int = 128
    tcp_seconds: float = 20.0
    ghosts: int = 200
    ghost_grace: float = 30.0
    dns_burst: int = 500
    observe_dead: float = 8.0


QUICK = Sizes(
    slow_connections=60,
    aborted=20,
    tcp_connections=8,
    tcp_seconds=4.0,
    ghosts=20,
    ghost_grace=5.0,
    dns_burst=300,
    observe_dead=4.0,
)


@dataclass
class Row:
    number: int
    name: str
    passed: bool = False
    detail: str = ""
    max_rss_mib: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)


class AttackCluster(LocalCluster):
    """bench_cluster's 3 agents, with DNS, an optional key, and n3 under 1,024 files."""

    def __init__(self, workdir: Path, key: str | None) -> None:
        self.key = key
        self.dns_ports: list[int] = []
        super().__init__(workdir, 3)
        taken = {p for a in self.agents for p in (a.gossip_port, a.http_port)}
        self.dns_ports = [p for p in free_ports(10) if p not in taken][:3]
        self.config.write_text(self._toml())

    @property
    def victim(self) -> Agent:
        return self.agents[2]

    def dns_port(self, agent: Agent) -> int:
        return self.dns_ports[self.agents.index(agent)]

    def _toml(self) -> str:
        lines = ['[cluster]\nname = "attack"\n']
        defaults = '[defaults]\nprofile = "lan"\ndata_root = "data"\ndns_trusted_networks = []\n'
        # Finding 8's fix expires non-members' entries after orphan_entry_grace (300 s by
        # default); shorten it so the row can observe it within --ghost-grace.
        lines.append('[limits]\norphan_entry_grace = "5s"\n')
        if self.key is not None:
            defaults += f'encrypt = "{self.key}"\n'
        lines.append(defaults)
        for i, a in enumerate(self.agents):
            dns = f"dns_port = {self.dns_ports[i]}\n" if self.dns_ports else ""
            lines.append(
                f'[[nodes]]\nname = "{a.name}"\ngossip_port = {a.gossip_port}\n'
                f"http_port = {a.http_port}\n{dns}"
            )
        return "\n".join(lines)

    def start(self, agent: Agent) -> None:
        if agent is not self.victim:
            super().start(agent)
            return
        args = ["--config", str(self.config), "--node", agent.name, "--exit-with-parent"]
        argv = [sys.executable, "-c", LAUNCH_LIMITED, *args]
        agent.process = spawn(argv, self.logs / f"{agent.name}.log", self.workdir)

    def data_dir(self, agent: Agent) -> Path:
        return self.workdir / "data" / agent.name

    def log(self, agent: Agent) -> Path:
        return self.logs / f"{agent.name}.log"


class RssMonitor:
    """Samples n3's RSS every RSS_SAMPLE s; the maximum per attack and overall."""

    def __init__(self, cluster: AttackCluster) -> None:
        self.cluster = cluster
        self.current: Row | None = None
        self.samples: list[float] = []
        self.idle = 0.0

    def sample(self) -> float | None:
        victim = self.cluster.victim
        if not victim.running:
            return None
        try:
            return rss_mib(victim.pid)
        except (OSError, BenchError):
            return None

    async def run(self) -> None:
        while True:
            value = self.sample()
            if value is not None:
                self.samples.append(value)
                if self.current is not None:
                    self.current.max_rss_mib = max(self.current.max_rss_mib, value)
            await trio.sleep(RSS_SAMPLE)

    async def measure_idle(self) -> None:
        start = len(self.samples)
        await trio.sleep(IDLE_SECONDS)
        self.idle = statistics.median(self.samples[start:] or [self.sample() or 0.0])

    def over(self) -> bool:
        return bool(self.samples) and self.samples[-1] >= RSS_FACTOR * self.idle


class Attacker:
    def __init__(self, cluster: AttackCluster, api: Api, sizes: Sizes, rss: RssMonitor) -> None:
        self.cluster = cluster
        self.api = api
        self.sizes = sizes
        self.rss = rss
        self.keyring = None if cluster.key is None else Keyring([base64.b64decode(cluster.key)])

    @property
    def victim(self) -> Agent:
        return self.cluster.victim

    def seal(self, datagram: bytes) -> bytes:
        return datagram if self.keyring is None else self.keyring.seal(datagram, UDP)

    async def send_udp(self, port: int, datagrams: list[bytes]) -> None:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for datagram in datagrams:
                await sock.sendto(datagram, (HOST, port))

    async def metric(self, agent: Agent, name: str, label: str) -> float:
        """One counter of n3's /metrics (0 when absent)."""
        async with await trio.open_tcp_stream(HOST, agent.http_port) as stream:
            head = f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
            await stream.send_all(head.encode())
            data = bytearray()
            with trio.move_on_after(5):
                while chunk := await stream.receive_some(65536):
                    data += chunk
        pattern = re.escape(name) + r"\{[^}]*" + re.escape(label) + r"[^}]*\} ([0-9.e+]+)"
        found = re.search(pattern, data.decode(errors="replace"))
        return float(found.group(1)) if found else 0.0

    async def state_of_victim(self, observer: Agent) -> str | None:
        states = await self.api.states(observer)
        return None if states is None else states.get(self.victim.name)

    # --- 5 ----------------------------------------------------------------------------

    async def unusable_input(self, row: Row) -> None:
        cases = [
            ({"name": "web", "id": "a\nb", "port": 80}, "id:"),
            ({"name": "web", "id": "rack/1", "port": 80}, "id:"),
            ({"name": "web", "address": "bad host\x00name", "port": 80}, "address:"),
            (
                {
                    "name": "web",
                    "port": 80,
                    "checks": [{"http": "http://127.0.0.1:1/", "interval": "1ms"}],
                },
                "checks[0].interval:",
            ),
            ({"name": "web", "port": 0}, "port:"),
            ({"name": "bad name!", "port": 80}, "name:"),
        ]
        wrong = []
        for body, field_name in cases:
            result = await self.api.request(self.victim, "PUT", "/v1/services", body)
            error = (result[1] or {}).get("error", "") if result else ""
            if result is None or result[0] != 400 or not error.startswith(field_name):
                wrong.append(f"{field_name} -> {result!r}")
        row.passed = not wrong
        row.detail = "all refused with 400 naming the field" if not wrong else "; ".join(wrong)
        row.figures["cases"] = len(cases)

    # --- 7 ----------------------------------------------------------------------------

    async def key_change(self, row: Row) -> None:
        fresh = base64.b64encode(os.urandom(32)).decode()
        before = await self.api.request(self.victim, "GET", "/v1/keyring")
        statuses = {}
        for op in ("install", "use"):
            result = await self.api.request(
                self.victim, "POST", f"/v1/keyring/{op}", {"key": fresh}
            )
            statuses[op] = None if result is None else result[0]
        after = await self.api.request(self.victim, "GET", "/v1/keyring")
        unchanged = before == after
        row.passed = set(statuses.values()) == {403} and unchanged
        row.detail = (
            f"install/use answered {statuses}; keyring {'unchanged' if unchanged else 'CHANGED'}"
        )

    # --- 9 ----------------------------------------------------------------------------

    async def dns_amplification(self, row: Row) -> None:
        n1 = self.cluster.agents[0]
        for i in range(60):
            body = {"name": "amp", "id": f"amp-{i}", "address": f"10.7.0.{i + 1}", "port": 1000 + i}
            await self.api.request(n1, "PUT", "/v1/services", body)

        async def replicated() -> bool:
            got = await self.api.get(self.victim, "/v1/services/amp")
            return got is not None and len(got) == 60

        with trio.move_on_after(15):
            while not await replicated():
                await trio.sleep(0.1)
        port = self.cluster.dns_port(self.victim)
        ratios = {}
        sizes = {}
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.bind((HOST, 0))
            for qtype in ("ANY", "SRV"):
                query = dns.message.make_query(
                    "amp.service.registry.", qtype, use_edns=0, payload=4096
                ).to_wire()
                await sock.sendto(query, (HOST, port))
                with trio.move_on_after(3):
                    answer = await sock.recv(65535)
                    sizes[qtype] = len(answer)
                    ratios[qtype] = round(len(answer) / len(query), 1)
            # A burst from one source: part of it must be dropped, and counted.
            query = dns.message.make_query("amp.service.registry.", "A").to_wire()
            for _ in range(self.sizes.dns_burst):
                await sock.sendto(query, (HOST, port))
            answered = 0
            with trio.move_on_after(1.0):
                while True:
                    await sock.recv(65535)
                    answered += 1
        limited = await self.metric(
            self.victim, "gossip_registry_dns_total", 'outcome="rate_limited"'
        )
        row.figures.update(
            {
                "any_ratio": ratios.get("ANY"),
                "srv_bytes": sizes.get("SRV"),
                "burst": self.sizes.dns_burst,
            }
        )
        row.figures.update({"burst_answered": answered, "rate_limited_counted": limited})
        row.passed = (
            ratios.get("ANY", 99) <= 3
            and sizes.get("SRV", 99999) <= 512
            and answered < self.sizes.dns_burst
            and limited > 0
        )
        row.detail = (
            f"ANY {ratios.get('ANY')}x, SRV {sizes.get('SRV')} B ({ratios.get('SRV')}x); "
            f"burst of {self.sizes.dns_burst}: {answered} answered, "
            f"{limited:.0f} counted rate-limited"
        )

    # --- 4 ----------------------------------------------------------------------------

    async def aborted_uploads(self, row: Row) -> None:
        log = self.cluster.log(self.victim)
        before = log.stat().st_size
        counted = await self.metric(
            self.victim, "gossip_registry_http_dropped_total", 'reason="client_disconnects"'
        )
        head = (
            f"PUT /v1/services HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            "Content-Length: 60000\r\n\r\n"
        ).encode()
        for _ in range(self.sizes.aborted):
            async with await trio.open_tcp_stream(HOST, self.victim.http_port) as stream:
                await stream.send_all(head + b"{" + b" " * 69)
        expected = counted + self.sizes.aborted
        with trio.move_on_after(10):
            while (
                await self.metric(
                    self.victim, "gossip_registry_http_dropped_total", 'reason="client_disconnects"'
                )
                < expected
            ):
                await trio.sleep(0.2)
        grown = log.stat().st_size - before
        with log.open("rb") as f:
            f.seek(before)
            new = f.read().decode(errors="replace")
        per_request = grown / self.sizes.aborted
        row.figures.update({"log_bytes_per_request": round(per_request, 1)})
        row.passed = "Traceback" not in new and " 500" not in new and per_request < 20
        row.detail = (
            f"{self.sizes.aborted} uploads abandoned: {per_request:.1f} B of log each, "
            f"{'a traceback' if 'Traceback' in new else 'no traceback'}"
        )

    # --- 3 ----------------------------------------------------------------------------

    async def stalled_bodies(self, row: Row) -> None:
        raise_open_files_limit()  # this process holds the connections
        head = (
            f"PUT /v1/services HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            "Content-Length: 60000\r\n\r\n{"
        ).encode()
        held: list[trio.SocketStream] = []
        refused_at_connect = 0
        for _ in range(self.sizes.slow_connections):
            try:
                stream = await trio.open_tcp_stream(HOST, self.victim.http_port)
                await stream.send_all(head)
            except (OSError, trio.BrokenResourceError):
                refused_at_connect += 1
                continue
            held.append(stream)
        opened = time.monotonic()
        # While they are held: DNS over TCP answers, n1 still sees n3 alive.
        dns_ok = await self.dns_tcp_answers()
        alive = await self.state_of_victim(self.cluster.agents[0]) == "alive"
        closed = 0

        async def wait_closed(stream: trio.SocketStream) -> None:
            nonlocal closed
            try:
                while await stream.receive_some(65536):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            closed += 1

        with trio.move_on_after(15):  # body timeout (10 s) + 5 s
            async with trio.open_nursery() as nursery:
                for stream in held:
                    nursery.start_soon(wait_closed, stream)
        all_closed_after = time.monotonic() - opened
        for stream in held:
            await stream.aclose()
        healthy = await self.api.get(self.victim, "/healthz") is not None
        accept_errors = await self.metric(
            self.victim, "gossip_registry_http_dropped_total", 'reason="accept_errors"'
        )
        refused = await self.metric(
            self.victim, "gossip_registry_http_dropped_total", 'reason="connections_refused"'
        )
        row.figures.update(
            {
                "connections": self.sizes.slow_connections,
                "closed_by_node": closed + refused_at_connect,
                "closed_within_s": round(all_closed_after, 1),
                "refused_at_limit": refused,
                "accept_errors": accept_errors,
            }
        )
        row.passed = closed == len(held) and dns_ok and alive and healthy and accept_errors == 0
        row.detail = (
            f"{len(held)} held ({refused:.0f} refused at the limit): {closed} closed by n3 within "
            f"{all_closed_after:.1f}s; DNS/TCP {'answered' if dns_ok else 'FAILED'}, n3 "
            f"{'alive' if alive else 'NOT alive'} for n1, HTTP {'back' if healthy else 'DOWN'}, "
            f"{accept_errors:.0f} accept errors"
        )

    async def dns_tcp_answers(self) -> bool:
        query = dns.message.make_query("amp.service.registry.", "A").to_wire()
        try:
            with trio.fail_after(3):
                async with await trio.open_tcp_stream(
                    HOST, self.cluster.dns_port(self.victim)
                ) as s:
                    await s.send_all(len(query).to_bytes(2, "big") + query)
                    return bool(await s.receive_some(65535))
        except (OSError, trio.TooSlowError, trio.BrokenResourceError):
            return False

    # --- 8 ----------------------------------------------------------------------------

    async def foreign_owners(self, row: Row) -> None:
        stamp = make_stamp(time.time())
        datagrams = []
        for i in range(self.sizes.ghosts):
            entry = Entry(
                service="ghost",
                instance_id=f"g{i}",
                address="10.9.0.1",
                port=1,
                tags=(),
                meta={},
                weight=1,
                status=Health.PASSING,
                output="",
                owner=f"ghost-{i}",
                owner_incarnation=1,
                stamp=stamp,
                deleted=False,
            )
            datagrams.append(self.seal(encode_packet(Packet(None, (EntryUpdate(entry),)))))
        await self.send_udp(self.victim.gossip_port, datagrams)

        async def ghosts() -> int:
            got = await self.api.get(self.victim, "/v1/services/ghost?passing=false")
            return len(got) if got is not None else -1

        first = 0
        with trio.move_on_after(2):
            while (first := await ghosts()) < self.sizes.ghosts:
                await trio.sleep(0.1)
        remaining = first
        with trio.move_on_after(self.sizes.ghost_grace):
            while (remaining := await ghosts()) != 0:
                await trio.sleep(0.5)
        row.figures.update({"owners": self.sizes.ghosts, "accepted": first, "left": remaining})
        row.passed = remaining == 0
        row.detail = (
            f"{first} of {self.sizes.ghosts} non-member entries accepted, {remaining} left after "
            f"{self.sizes.ghost_grace:.0f}s"
        )

    # --- 2 ----------------------------------------------------------------------------

    async def unauthenticated_memory(self, row: Row) -> None:
        declared = ProtocolConfig().max_stream_bytes  # the agents' limit: the most n3 reads
        chunk = attack_filler(sealed=self.keyring is not None) * 65536
        sent = 0
        cut = 0

        async def one() -> None:
            nonlocal sent, cut
            try:
                async with await trio.open_tcp_stream(HOST, self.victim.gossip_port) as stream:
                    await stream.send_all(declared.to_bytes(4, "big"))
                    left = declared
                    # The most it can do: without the key, a well-formed chunked header;
                    # without a keyring, a well-formed envelope (bench_inbound_memory's).
                    head = attack_frame_start(sealed=self.keyring is not None)
                    await stream.send_all(head)
                    left -= len(head)
                    while left > 0:
                        piece = chunk[: min(left, len(chunk))]
                        await stream.send_all(piece)
                        sent += len(piece)
                        left -= len(piece)
                    await stream.receive_some(1)  # hold until n3 answers or closes
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                cut += 1

        async def stop_when_over(cancel: trio.CancelScope) -> None:
            while not self.rss.over():
                await trio.sleep(RSS_SAMPLE)
            cancel.cancel()

        started = time.monotonic()
        with trio.move_on_after(self.sizes.tcp_seconds) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop_when_over, scope)
                for _ in range(self.sizes.tcp_connections):
                    nursery.start_soon(one)
        row.figures.update(
            {
                "connections": self.sizes.tcp_connections,
                "mib_sent": round(sent / 2**20),
                "closed_by_node": cut,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        await trio.sleep(1.0)  # one more second of samples after the attack
        row.passed = row.max_rss_mib < RSS_FACTOR * self.rss.idle
        row.detail = (
            f"{self.sizes.tcp_connections} frames of {declared / 2**20:.0f} MiB declared, "
            f"{sent / 2**20:.0f} MiB sent, "
            f"{cut} connections cut by n3; RSS max {row.max_rss_mib:.0f} MiB "
            f"(idle {self.rss.idle:.0f})"
        )

    # --- 1 ----------------------------------------------------------------------------

    async def incarnation_overflow(self, row: Row) -> None:
        n1, n2 = self.cluster.agents[:2]
        datagram = self.seal(
            encode_packet(Packet(None, (Dead(self.victim.name, MAX_INCARNATION, n2.name),)))
        )
        for observer in (n1, n2):
            await self.send_udp(observer.gossip_port, [datagram])
        seen_dead = False
        deadline = trio.current_time() + self.sizes.observe_dead
        while trio.current_time() < deadline:
            for observer in (n1, n2):
                if await self.state_of_victim(observer) == "dead":
                    seen_dead = True
            await trio.sleep(0.5)
        states = [await self.state_of_victim(o) for o in (n1, n2)]
        probe = {"name": "overflow-probe", "id": "overflow-probe-1", "port": 1}
        put = await self.api.request(self.victim, "PUT", "/v1/services", probe)
        reached = False
        with trio.move_on_after(5):
            while not reached:
                got = await self.api.get(n1, "/v1/services/overflow-probe")
                reached = bool(got)
                await trio.sleep(0.2)
        row.figures.update({"datagram_bytes": len(datagram), "seen_dead": seen_dead})
        row.passed = states == ["alive", "alive"] and put is not None and put[0] == 200 and reached
        row.detail = (
            f"{len(datagram)}-byte dead at 2^63-1: n3 {states} for n1/n2"
            f"{' (dead meanwhile)' if seen_dead else ''}; its registration "
            f"{'answered ' + str(put[0]) if put else 'got no answer'}, "
            f"{'reached' if reached else 'did NOT reach'} n1"
        )

    # --- 6 ----------------------------------------------------------------------------

    async def special_files(self, row: Row) -> None:
        data = self.cluster.data_dir(self.victim)
        snapshot = data / "snapshot.msgpack"
        keyring_file = data / "keyring.json"
        saved_keyring = keyring_file.read_bytes() if keyring_file.exists() else None
        results = {}
        for kind in ("fifo", "/dev/zero"):
            await self.restart_victim(partial(self.replace, snapshot, kind))
            results[kind] = await self.listening(self.victim)
        log = self.cluster.log(self.victim)
        before = log.stat().st_size
        await self.restart_victim(lambda: self.replace(keyring_file, "/etc/passwd"))
        with trio.move_on_after(START_TIMEOUT):
            while self.victim.running:
                await trio.sleep(0.1)
        with log.open("rb") as f:
            f.seek(before)
            said = f.read().decode(errors="replace")
        refused = not self.victim.running and "symbolic link" in said and "chmod" not in said
        keyring_file.unlink()
        if saved_keyring is not None:
            keyring_file.write_bytes(saved_keyring)
            keyring_file.chmod(0o600)
        await self.restart_victim(lambda: None)
        back = await self.listening(self.victim)
        row.passed = results["fifo"] and results["/dev/zero"] and refused and back
        row.figures.update({**results, "keyring_link_refused": refused, "restarted_clean": back})
        row.detail = (
            f"snapshot FIFO: {'started' if results['fifo'] else 'HUNG'}, link to /dev/zero: "
            f"{'started' if results['/dev/zero'] else 'FAILED'}, keyring.json link to /etc/passwd: "
            f"{'refused without chmod advice' if refused else 'NOT refused cleanly'}"
        )

    @staticmethod
    def replace(path: Path, kind: str) -> None:
        if path.exists() or path.is_symlink():
            path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to(kind)

    async def restart_victim(self, prepare: Callable[[], None]) -> None:
        victim = self.victim
        if victim.process is not None:
            await trio.to_thread.run_sync(stop_processes, [victim.process], STOP_GRACE)
        prepare()
        victim.listening_at = None
        self.cluster.start(victim)

    async def listening(self, agent: Agent) -> bool:
        with trio.move_on_after(START_TIMEOUT):
            while agent.running:
                if await self.api.get(agent, "/healthz") is not None:
                    return True
                await trio.sleep(0.1)
        return False


ATTACKS: dict[int, tuple[str, Callable[[Attacker], Callable[[Row], Awaitable[None]]]]] = {
    1: ("incarnation overflow (dead at 2^63-1)", lambda a: a.incarnation_overflow),
    2: ("memory before authentication (frames at the limit)", lambda a: a.unauthenticated_memory),
    3: ("stalled HTTP bodies", lambda a: a.stalled_bodies),
    4: ("aborted uploads flood the log", lambda a: a.aborted_uploads),
    5: ("input accepted that cannot be used", lambda a: a.unusable_input),
    6: ("special files in the data dir", lambda a: a.special_files),
    7: ("keyring change without a write token", lambda a: a.key_change),
    8: ("entries of non-member owners", lambda a: a.foreign_owners),
    9: ("DNS amplification", lambda a: a.dns_amplification),
}


async def run(
    cluster: AttackCluster, sizes: Sizes, only: list[int]
) -> tuple[list[Row], RssMonitor]:
    rows: list[Row] = []
    rss = RssMonitor(cluster)
    async with Api(Verdicts()) as api:
        await join_phase(cluster, api, 0.2, say)
        attacker = Attacker(cluster, api, sizes, rss)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rss.run)
            await rss.measure_idle()
            say(f"n3 idle RSS {rss.idle:.1f} MiB (pid {cluster.victim.pid})")
            for number in [n for n in ORDER if n in only]:
                name, method = ATTACKS[number]
                row = Row(number, name, max_rss_mib=rss.sample() or 0.0)
                rss.current = row
                say(f"attack {number}: {name} ...")
                started = time.monotonic()
                try:
                    await method(attacker)(row)
                except (OSError, BenchError, trio.TooSlowError, ValueError) as exc:
                    row.passed, row.detail = False, f"attack could not complete: {exc!r}"
                row.figures["seconds"] = round(time.monotonic() - started, 1)
                say(f"  {'PASS' if row.passed else 'FAIL'}: {row.detail}")
                rows.append(row)
            rss.current = None
            nursery.cancel_scope.cancel()
    return rows, rss


def say(message: str) -> None:
    print(message, flush=True)


def report(rows: list[Row], rss: RssMonitor, encrypt: bool) -> dict[str, Any]:
    peak = max(rss.samples, default=0.0)
    rss_ok = peak < RSS_FACTOR * rss.idle
    print(f"\nattacks on n3 ({'encrypted' if encrypt else 'plaintext'} gossip):")
    table = [["#", "attack", "result", "RSS max MiB", "detail"]]
    for r in sorted(rows, key=lambda r: r.number):
        table.append(
            [
                str(r.number),
                r.name,
                "PASS" if r.passed else "FAIL",
                f"{r.max_rss_mib:.0f}",
                r.detail,
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line[:4], widths, strict=True)), line[4])
    print(
        f"n3 RSS: idle {rss.idle:.1f} MiB, max {peak:.1f} MiB "
        f"({'PASS' if rss_ok else 'FAIL'}: must stay under {RSS_FACTOR:g}x idle)"
    )
    passed = rss_ok and all(r.passed for r in rows)
    print("ALL PASSED" if passed else "SOME FAILED", flush=True)
    return {
        "encrypt": encrypt,
        "idle_rss_mib": round(rss.idle, 1),
        "max_rss_mib": round(peak, 1),
        "rss_ok": rss_ok,
        "passed": passed,
        "attacks": [
            {
                "number": r.number,
                "name": r.name,
                "passed": r.passed,
                "detail": r.detail,
                "max_rss_mib": round(r.max_rss_mib, 1),
                **r.figures,
            }
            for r in sorted(rows, key=lambda r: r.number)
        ],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--encrypt", action="store_true", help="gossip sealed under a fresh key")
    parser.add_argument(
        "--only", default=",".join(map(str, sorted(ATTACKS))), help="attacks to run, e.g. 3,9"
    )
    parser.add_argument("--quick", action="store_true", help="small counts (the CI smoke test)")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here")
    args = parser.parse_args(argv)
    try:
        args.only = sorted({int(n) for n in args.only.split(",")})
    except ValueError:
        parser.error("--only: numbers 1..9 separated by commas")
    if not set(args.only) <= set(ATTACKS):
        parser.error("--only: numbers 1..9 separated by commas")
    if args.json is None:
        suffix = "-encrypt" if args.encrypt else ""
        args.json = SCRIPTS.parent / "bench-results" / f"attack{suffix}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sigterm_as_ctrl_c()
    print(f"command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}", flush=True)
    key = base64.b64encode(os.urandom(32)).decode() if args.encrypt else None
    sizes = QUICK if args.quick else Sizes()
    with work_root(args.workdir) as root:
        cluster = AttackCluster(root, key)
        result: tuple[list[Row], RssMonitor] | None = None
        status = 1
        try:
            result = trio.run(interrupt_on_sigterm, lambda: run(cluster, sizes, args.only))
        except* KeyboardInterrupt:
            print("interrupted", flush=True)
            status = 130
        except* BenchError as group:
            print(f"FAILED: {group.exceptions}\n{cluster.log_tails()}", flush=True)
        finally:
            cluster.stop()
            print("stopped every agent", flush=True)
    if result is None:
        return status
    rows, rss = result
    summary = report(rows, rss, args.encrypt)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.json}", flush=True)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    # SIGPIPE stays ignored: with SIG_DFL a send on a connection n3 reset kills attack.py.
    raise SystemExit(main())
