"""Prometheus metrics of one node, read from the node at scrape time.

Theory of operation: nothing here counts anything. The protocol core keeps
its counters (``Protocol.stats``), the transport its own (``Transport.stats``),
the node its own (``Node.stats``: keyring frames refused), its wire census
(``runtime/traffic.py``) and event bus (``events.py``); a custom collector turns their
current values into metric families when Prometheus scrapes, so there is no
second set of books to drift from the first. Each node gets its own
``CollectorRegistry`` (``node_registry``): several nodes in one process (tests,
an embedding service) never share a series, and the process-wide default
registry is left to the application.

A family is one function ``(node) -> Iterable[Metric]`` in ``FAMILIES``;
adding a metric is adding such a function (or, for a plain counter of
``Protocol.stats``, one row in ``PROTOCOL_COUNTERS``). Names start with
``gossip_registry_``, counters end in ``_total`` (prometheus-client adds it),
units are in names, and no label carries a member or service name: a
cluster of 1,000 nodes must not make 1,000 series per node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from gossip_registry.core.messages import MemberState
from gossip_registry.runtime.traffic import CHANNEL_TYPES, DIRECTIONS, Channel, Direction

if TYPE_CHECKING:  # node.py imports nothing from here; the API passes the node in
    from gossip_registry.runtime.node import Node

__all__ = [
    "FAMILIES",
    "PROTOCOL_COUNTERS",
    "Family",
    "NodeCollector",
    "exposition",
    "node_registry",
]

PREFIX = "gossip_registry_"

Family = Callable[["Node"], Iterable[Metric]]

PROTOCOL_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("probes", "probes", "Direct probes (UDP pings) started by this node."),
    ("probe_failures", "probe_failures", "Probes that got no ack of any kind in their window."),
    ("indirect_probes", "indirect_probes", "Ping-req messages sent to helpers after a timeout."),
    ("tcp_fallback_probes", "tcp_pings", "TCP pings sent after a direct probe timed out."),
    ("tcp_fallback_rescues", "tcp_rescues", "Probes answered only over TCP."),
    ("suspicions_raised", "suspicions", "Members this node started to suspect."),
    ("suspicion_confirmations", "suspicion_confirmations", "Independent confirmations heard."),
    ("suspicions_refuted", "suspicions_refuted", "Suspected members heard alive again."),
    ("refutations", "refutes", "Accusations against this node that it refuted."),
    ("members_declared_dead", "members_failed", "Members this node marked dead."),
    ("members_left", "members_left", "Members this node marked left (graceful leave)."),
    ("members_reaped", "members_reaped", "Dead or left members forgotten after the horizon."),
    ("anti_entropy_started", "syncs_started", "Push-pull exchanges this node opened."),
    ("anti_entropy_completed", "syncs_completed", "Push-pull exchanges that got a reply."),
    ("anti_entropy_failed", "syncs_failed", "Push-pull exchanges that got no valid reply."),
    ("anti_entropy_answered", "syncs_answered", "Push-pull exchanges opened by peers."),
    ("anti_entropy_entries_repaired", "entries_repaired", "Entries push-pull brought in."),
    ("entries_fenced", "entries_fenced", "Entries removed because their owner died or left."),
    ("tombstones_collected", "tombstones_collected", "Tombstones collected past the horizon."),
    (
        "orphan_entries_expired",
        "orphan_entries_expired",
        "Entries removed because their owner was not a member for the grace period.",
    ),
    ("broadcasts_too_large", "broadcasts_too_large", "Updates too large to piggyback."),
    (
        "broadcasts_dropped",
        "broadcasts_dropped",
        "Updates dropped from a full piggyback queue (push-pull carries them).",
    ),
    ("fanout_writes", "fanout_writes", "Own writes sent straight to the members."),
    (
        "fanout_overflow",
        "fanout_overflow",
        "Own writes beyond the fan-out buffer, left to gossip alone.",
    ),
    (
        "entry_updates_repeated",
        "entry_updates_repeated",
        "Byte-identical repeats of registry updates skipped before decoding.",
    ),
)
"""(metric name without prefix and _total, ``Protocol.stats`` key, help)."""

DROP_REASONS: tuple[tuple[str, str, str], ...] = (
    ("malformed_packet", "protocol", "malformed_packets"),
    ("malformed_stream", "protocol", "malformed_streams"),
    ("misdirected_ping", "protocol", "misdirected_pings"),
    ("unexpected_stream_message", "protocol", "unexpected_stream_messages"),
    ("oversized_frame", "transport", "stream_oversized"),
    ("truncated_frame", "transport", "stream_truncated"),
    ("not_a_frame", "transport", "stream_malformed"),
    ("auth_failed", "transport", "auth_failed"),
    ("test_fault", "transport", "test_fault_drops"),
    ("keyring_refused", "node", "keyring_refused"),
    ("member_limit", "protocol", "members_refused"),
    ("entry_limit", "protocol", "entries_over_limit"),
    ("clock_skew", "protocol", "entries_from_future"),
    ("incarnation_step", "protocol", "incarnations_refused"),
    ("foreign_entry_limit", "protocol", "entries_over_total"),
    ("stream_buffer_budget", "transport", "stream_over_budget"),
    ("relay_limit", "protocol", "ping_reqs_refused"),
)
"""Input dropped: (reason label, whose stats, stats key)."""

TRANSPORT_ERRORS: tuple[tuple[str, str], ...] = (
    ("stream_timeout", "stream_timeouts"),
    ("stream_error", "stream_errors"),
    ("stream_no_reply", "stream_no_reply"),
    ("stream_rejected_busy", "stream_rejected_busy"),
    ("stream_oversized_out", "stream_oversized_out"),
    ("udp_send_queue_full", "udp_send_dropped"),
    ("udp_send_error", "udp_send_errors"),
    ("udp_receive_error", "udp_receive_errors"),
)
"""(kind label, ``Transport.stats`` key)."""


def _name(name: str) -> str:
    return PREFIX + name


def _version() -> str:
    try:
        return metadata.version("gossip-registry")
    except metadata.PackageNotFoundError:
        return "unknown"


def node_info(node: Node) -> Iterator[Metric]:
    yield InfoMetricFamily(
        _name("node"),
        "This node: name, cluster and software version (value 1).",
        value={"name": node.name, "cluster": node.config.cluster, "version": _version()},
    )


def members_by_state(node: Node) -> Iterator[Metric]:
    counts = dict.fromkeys(MemberState, 0)
    for record in node.protocol.members:
        counts[record.state] += 1
    family = GaugeMetricFamily(
        _name("members"), "Members this node knows, itself included, by state.", labels=["state"]
    )
    for state, count in counts.items():
        family.add_metric([state.label], count)
    yield family


def protocol_counters(node: Node) -> Iterator[Metric]:
    stats = node.protocol.stats
    for name, key, doc in PROTOCOL_COUNTERS:
        yield CounterMetricFamily(_name(name), doc, value=stats[key])


def dropped_input(node: Node) -> Iterator[Metric]:
    sources = {
        "protocol": node.protocol.stats,
        "transport": node.transport.stats,
        "node": node.stats,
    }
    family = CounterMetricFamily(
        _name("dropped_input"),
        "Datagrams, frames and messages from peers dropped as invalid, by reason.",
        labels=["reason"],
    )
    for reason, source, key in DROP_REASONS:
        family.add_metric([reason], sources[source][key])
    yield family


def transport_errors(node: Node) -> Iterator[Metric]:
    stats = node.transport.stats
    family = CounterMetricFamily(
        _name("transport_errors"), "Socket-level failures, by kind.", labels=["kind"]
    )
    for kind, key in TRANSPORT_ERRORS:
        family.add_metric([kind], stats[key])
    yield family


def wire_traffic(node: Node) -> Iterator[Metric]:
    labels = ["direction", "channel", "type"]
    messages = CounterMetricFamily(
        _name("messages"),
        "Protocol messages sent and received, piggybacked updates included, by type.",
        labels=labels,
    )
    sizes = CounterMetricFamily(
        _name("message_bytes"),
        "Encoded size of those messages (packet envelopes excluded), by type.",
        labels=labels,
    )
    traffic = node.traffic
    known: list[tuple[Direction, Channel, str]] = [
        (d, c, t) for d in DIRECTIONS for c, types in CHANNEL_TYPES.items() for t in types
    ]
    for key in dict.fromkeys([*known, *sorted(traffic.messages)]):
        messages.add_metric(list(key), traffic.messages[key])
        sizes.add_metric(list(key), traffic.bytes[key])
    yield messages
    yield sizes


def udp_totals(node: Node) -> Iterator[Metric]:
    stats = node.protocol.stats
    packets = CounterMetricFamily(
        _name("udp_packets"), "UDP datagrams handled by the protocol.", labels=["direction"]
    )
    sizes = CounterMetricFamily(
        _name("udp_bytes"), "UDP payload bytes, envelopes included.", labels=["direction"]
    )
    for direction in DIRECTIONS:
        packets.add_metric([direction], stats[f"udp_{direction}"])
        sizes.add_metric([direction], stats[f"udp_bytes_{direction}"])
    yield packets
    yield sizes


def protocol_gauges(node: Node) -> Iterator[Metric]:
    protocol = node.protocol
    yield GaugeMetricFamily(
        _name("broadcast_queue_depth"),
        "Updates waiting in the piggyback queue.",
        value=len(protocol.queue),
    )
    yield GaugeMetricFamily(
        _name("local_health_score"),
        "Lifeguard local health: 0 is healthy; probe timing stretches by score + 1.",
        value=protocol.awareness.score,
    )
    yield GaugeMetricFamily(_name("incarnation"), "This node's incarnation.", protocol.incarnation)
    yield GaugeMetricFamily(
        _name("stream_buffered_bytes"),
        "Bytes of TCP frames being read from peers, over all connections (bounded).",
        value=node.transport.buffered,
    )


def registry_size(node: Node) -> Iterator[Metric]:
    table = node.protocol.table
    yield GaugeMetricFamily(
        _name("registry_entries"), "Live service instances in the table.", value=table.live_count
    )
    yield GaugeMetricFamily(
        _name("registry_tombstones"),
        "Deregistration tombstones not yet collected.",
        value=table.tombstone_count,
    )
    yield GaugeMetricFamily(
        _name("registry_foreign_entries"),
        "Versions (live and tombstones) of other owners held; limits.max_foreign_entries caps it.",
        value=table.foreign_count(node.name),
    )


def event_loop(node: Node) -> Iterator[Metric]:
    stalls = node.stalls
    yield GaugeMetricFamily(
        _name("event_loop_longest_stall_seconds"),
        "Longest time one task step blocked the node's event loop since it started.",
        value=stalls.longest,
    )
    yield CounterMetricFamily(
        _name("event_loop_stalls"),
        "Task steps that blocked the event loop longer than 50 ms.",
        value=stalls.stalls,
    )
    yield GaugeMetricFamily(
        _name("event_loop_longest_cpu_step_seconds"),
        "Most CPU time one task step used since the node started.",
        value=stalls.longest_cpu,
    )
    yield CounterMetricFamily(
        _name("event_loop_cpu_stalls"),
        "Task steps that used more than 50 ms of CPU time: stalls of our own making, "
        "not the host's (the rest of event_loop_stalls waited for a core).",
        value=stalls.cpu_stalls,
    )


def event_stream(node: Node) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        _name("event_subscribers"), "Open event streams (monitors).", value=node.events.subscribers
    )
    yield CounterMetricFamily(
        _name("events_dropped"),
        "Events dropped for subscribers that fell behind.",
        value=node.events.dropped_total,
    )


def health_checks(node: Node) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        _name("checks"), "Health checks this node runs, by last status.", labels=["status"]
    )
    for status, count in sorted(node.check_counts().items()):
        family.add_metric([status], count)
    yield family


def dns_queries(node: Node) -> Iterator[Metric]:
    family = CounterMetricFamily(
        _name("dns"), "DNS queries this node answered or dropped, by outcome.", labels=["outcome"]
    )
    for outcome, count in sorted(node.dns_stats.items()):
        family.add_metric([outcome], count)
    yield family


def http_limits(node: Node) -> Iterator[Metric]:
    family = CounterMetricFamily(
        _name("http_dropped"),
        "HTTP connections and requests cut by this node's limits, by reason "
        "(connections_refused, body_timeouts, client_disconnects, accept_errors).",
        labels=["reason"],
    )
    for reason, count in sorted(node.http_stats.items()):
        family.add_metric([reason], count)
    yield family


def discovery_state(node: Node) -> Iterator[Metric]:
    """Blocking queries and self-preservation: both read from the node's status in one call."""
    status = node.status()
    yield GaugeMetricFamily(
        _name("blocking_queries_waiting"),
        "Blocking queries and watches waiting for a change.",
        value=status["waiters"],
    )
    yield GaugeMetricFamily(
        _name("self_preservation_active"),
        "1 while this node doubts a mass death and serves the dead members' entries as stale.",
        value=int(status["self_preservation"]["active"]),
    )
    yield GaugeMetricFamily(
        _name("stale_entries"),
        "Entries of members declared dead that self-preservation still serves, flagged stale.",
        value=len(node.stale_keys()),
    )


FAMILIES: tuple[Family, ...] = (
    node_info,
    members_by_state,
    protocol_counters,
    dropped_input,
    transport_errors,
    wire_traffic,
    udp_totals,
    protocol_gauges,
    registry_size,
    event_loop,
    event_stream,
    health_checks,
    discovery_state,
    dns_queries,
    http_limits,
)


class NodeCollector(Collector):
    """Every family of ``families`` for ``node``, computed when scraped."""

    def __init__(self, node: Node, families: Sequence[Family] = FAMILIES) -> None:
        self.node = node
        self.families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        if self.node.running:
            for family in self.families:
                yield from family(self.node)


def node_registry(node: Node, extra: Sequence[Family] = ()) -> CollectorRegistry:
    """A registry holding ``node``'s collector only (FAMILIES plus ``extra``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node, (*FAMILIES, *extra)))
    return registry


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """``registry`` in the format the scraper's Accept header asks for, and its content type.

    Prometheus' text format 0.0.4 unless OpenMetrics (or text 1.0.0) is
    asked for: every Prometheus version reads it, and a scraper that sends
    no Accept header (curl) gets it too.
    """
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type
