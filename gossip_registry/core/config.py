"""Protocol settings, with memberlist's LAN/WAN/local profiles as presets.

Durations are seconds (float). Each field says what it trades off; the
defaults are memberlist's ``DefaultLANConfig`` (hashicorp/memberlist
``config.go``) unless noted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from gossip_registry.core.limits import Limits
from gossip_registry.registry.schema import FieldError

DRIVER_FIELDS = frozenset({"seal_overhead"})
"""Fields the node sets from its other settings, not the operator: cluster.toml refuses them."""
UPDATE_BYTES = 64
"""A typical piggybacked registry update, encoded (53 bytes for a plain instance), for sizing
the queue (``ProtocolConfig.queue_limit``)."""


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    probe_interval: float = 1.0
    """Base time between probes. Shorter detects faster, costs 2 packets per node per interval."""
    probe_timeout: float = 0.5
    """Wait for a direct ack before going indirect; about the 99th percentile RTT."""
    indirect_checks: int = 3
    """Helpers asked to probe for us (SWIM's k). More helpers, fewer false suspicions."""
    tcp_fallback: bool = True
    """Also probe over TCP when UDP fails (memberlist; rescues probes on lossy UDP paths)."""
    suspicion_mult: int = 4
    """Minimum suspicion = mult x max(1, log10 N) x probe_interval."""
    suspicion_max_mult: int = 6
    """Maximum suspicion = max_mult x minimum; Lifeguard shrinks it with confirmations."""
    refused_suspicion: float = 1.0
    """Suspicion timeout, once confirmed, of a member whose host refused our probe (ICMP port
    unreachable, TCP connection refused): its process is gone while its host answers. A lone
    refusal waits the ordinary minimum; indirect probers that also see it shrink the wait
    towards this, as Lifeguard's confirmations do. Shorter detects a crashed process sooner;
    it must leave a restarted process on the same address time to refute (one probe interval).
    Silent failures (loss, partition, pause, host gone) never draw a refusal."""
    awareness_max: int = 8
    """Lifeguard: probe interval and timeout stretch up to this factor when we are unhealthy."""
    retransmit_mult: int = 4
    """Each update is sent mult x ceil(log10(N+1)) times."""
    gossip_interval: float = 0.2
    """Periodic piggyback gossip; only runs while updates are queued."""
    gossip_nodes: int = 3
    """Peers per gossip round."""
    gossip_to_dead: float = 30.0
    """Keep gossiping to a member this long after it died, so it can hear it and refute."""
    fast_gossip_nodes: int = 3
    """Peers a fresh update is pushed to at once, without waiting for a gossip round."""
    fast_gossip_interval: float = 0.2
    """Rate limit on immediate pushes: at most one burst per interval (ours, not memberlist's)."""
    fanout_nodes: int = 32
    """Members a node sends its own fresh registry writes to directly, in one burst per
    ``fanout_interval`` (ours): every member in clusters up to this size, so a write
    reaches every node whatever the re-gossip backlog. More: churn capacity up to a
    larger size, at a packet or a few per member per burst."""
    fanout_interval: float = 1.0
    """At most one burst of our own writes to the members per interval; the first write
    after a quiet spell goes at once. Gossip brings most writes everywhere sooner, so the
    burst bounds the worst case (one interval) rather than the typical one. Shorter
    costs a packet per member per interval under steady writes: at 200 ms it was two
    thirds of a 20-node cluster's CPU under churn (docs/benchmarks.md)."""
    push_pull_interval: float = 30.0
    """Anti-entropy period at <= 32 nodes; scaled up with N as memberlist does."""
    reconnect_interval: float = 30.0
    """Push-pull with a random failed member this often, to heal partitions (Serf)."""
    tombstone_horizon: float = 24 * 3600.0
    """Keep deletions and dead members this long; must exceed the longest partition to heal."""
    reap_interval: float = 15.0
    """How often tombstones past the horizon are collected (Serf's ReapInterval)."""
    packet_size: int = 1400
    """Largest UDP payload we send; safe under common MTUs."""
    max_stream_bytes: int = 8 * 1024 * 1024
    """Largest TCP frame accepted (push-pull state), and the budget for what peers make us
    buffer over all connections at once. Push-pull is paged both ways, entries and member
    lists alike (``protocol.SYNC_PAGE_ENTRIES``, ``MEMBER_PAGE_SHARE``), so an honest frame
    stays far below it. A plaintext peer can make a node buffer this much before anything
    is authenticated: at 32 MiB, 128 connections of well-formed frames took a node to 3.2x
    its idle RSS, at 8 MiB to 1.5x (issue 10, finding 2). memberlist accepts push-pull
    state up to 20 MiB (``maxPushStateBytes``) but sends it whole. Sealed frames are
    authenticated per 64 KiB chunk, so with a keyring it costs memory only for frames from
    key holders. Every node should use the same value: a page is sized from the sender's."""
    registry_buckets: int = 256
    """Digest buckets for anti-entropy; a differing bucket costs its entries on the wire.
    The same on every node: push-pull with a node configured otherwise carries members only."""
    broadcast_queue_limit: int = 16384
    """Most updates queued for piggybacking; the most-sent are dropped first beyond it.
    The limit in force is the smaller of this and ``queue_limit(N)``."""
    join_attempts: int = 256
    """Most joins tried at start while no seed answers: a cap on a long retry_join_timeout."""
    retry_join_timeout: float = 31.0
    """Seconds a join at start goes on retrying while no seed answers (Consul's retry_join):
    no attempt starts later than this after the first. The default spans the backoff
    1+2+4+8+16 s, six quick attempts; on Kubernetes, where a StatefulSet's pods start one
    by one and a headless service lists them as they come, give it minutes."""
    join_backoff: float = 1.0
    """Seconds before the second join attempt; doubles each time up to join_backoff_max."""
    join_backoff_max: float = 16.0
    """Longest wait between two join attempts."""
    rejoin_limit: int = 8
    """A node restarted from a snapshot joins through every seed plus at most this many
    (random) members it last knew: each is a full push-pull, which adds up at 10,000 nodes."""
    limits: Limits = field(default_factory=Limits)
    """Bounds on what peers can make us hold (``core/limits.py``); cluster.toml's [limits]."""
    seal_overhead: int = 0
    """Bytes the driver adds to every datagram after the core built it (29 when gossip is
    sealed, see ``crypto/keyring.py``); set by the node, not in cluster.toml. Packets are filled
    to ``packet_size - seal_overhead`` so that they leave at most ``packet_size``."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool | Limits) or f.name in DRIVER_FIELDS:
                continue
            if not isinstance(value, int | float) or value <= 0 or not math.isfinite(value):
                problem = f"must be a positive number, got {value!r}"
                raise FieldError(problem, f.name, message=f"{f.name} {problem}")
        if self.probe_timeout > self.probe_interval:
            problem = "must not exceed probe_interval"
            raise FieldError(
                problem, "probe_timeout", "probe_interval", message=f"probe_timeout {problem}"
            )
        if self.packet_size < 512:
            problem = "must be at least 512 bytes"
            raise FieldError(problem, "packet_size", message=f"packet_size {problem}")
        if type(self.seal_overhead) is not int or not 0 <= self.seal_overhead <= 256:
            problem = f"must be 0..256 bytes, got {self.seal_overhead!r}"
            raise FieldError(problem, "seal_overhead", message=f"seal_overhead {problem}")

    @property
    def payload_size(self) -> int:
        """Bytes the core may put in one datagram: what is left once the driver has sealed it."""
        return self.packet_size - self.seal_overhead

    @classmethod
    def lan(cls) -> ProtocolConfig:
        return cls()

    @classmethod
    def wan(cls) -> ProtocolConfig:
        return cls(
            probe_interval=5.0,
            probe_timeout=3.0,
            refused_suspicion=5.0,
            suspicion_mult=6,
            gossip_interval=0.5,
            gossip_nodes=4,
            gossip_to_dead=60.0,
            push_pull_interval=60.0,
        )

    @classmethod
    def local(cls) -> ProtocolConfig:
        return cls(
            probe_timeout=0.2,
            indirect_checks=1,
            suspicion_mult=3,
            retransmit_mult=2,
            gossip_interval=0.1,
            gossip_to_dead=15.0,
            push_pull_interval=15.0,
        )

    def with_(self, **changes: object) -> ProtocolConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    # Scaling formulas (memberlist util.go), in one place.

    def retransmit_limit(self, n: int) -> int:
        return self.retransmit_mult * math.ceil(math.log10(n + 1))

    def suspicion_min(self, n: int) -> float:
        return self.suspicion_mult * max(1.0, math.log10(max(n, 1))) * self.probe_interval

    def queue_limit(self, n: int) -> int:
        """Updates worth queueing for piggybacking among ``n`` members.

        As many as the gossip rounds of one push-pull period send their
        ``retransmit_limit(n)`` times, at ``UPDATE_BYTES`` each: what the queue
        holds beyond that would arrive sooner by push-pull, which carries the
        whole table anyway. Queued, a bulk load (20,000 registrations on one
        node) kept every node gossiping full packets for minutes. 1,181 at
        20 LAN nodes, 2,362 at 5; never above ``broadcast_queue_limit``.
        """
        rounds = math.ceil(self.push_pull_period(n) / self.gossip_interval)
        sends = rounds * self.gossip_nodes * (self.payload_size // UPDATE_BYTES)
        fit = sends // max(1, self.retransmit_limit(n))
        return max(1, min(self.broadcast_queue_limit, fit))

    def push_pull_period(self, n: int) -> float:
        """memberlist's pushPullScale: unchanged to 32 nodes, then grows with log2 N."""
        if n <= 32:
            return self.push_pull_interval
        return self.push_pull_interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)
