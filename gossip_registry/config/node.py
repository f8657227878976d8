"""NodeConfig: every setting of one node, with its unit, safe range and trade-off.

Built by hand when embedding or by the cluster.toml loader (``cluster_file.py``),
which derives the keys it accepts from these fields. Standard library and the
pure layers only: loading a config file or parsing the agent's flags must not
import the runtime, trio or the web stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.messages import Address
from gossip_registry.registry.preservation import PreservationConfig

if TYPE_CHECKING:
    from gossip_registry.crypto.keyring import Keyring

__all__ = ["DEFAULT_TCP_TIMEOUT", "NodeConfig"]

DEFAULT_TCP_TIMEOUT = 10.0
"""Seconds for one whole stream exchange (memberlist's LAN ``TCPTimeout``)."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything one node process needs. Built by hand when embedding, or from cluster.toml.

    ``bind`` is where the UDP socket and the TCP listener (same port) bind;
    port 0 picks a free port. ``advertise`` is what peers are told to use
    (NAT, containers); it defaults to the bound address, and an advertised
    port of 0 means the bound port. ``http`` binds the HTTP API when set.
    ``data_dir`` holds the snapshot and the journal of acknowledged writes;
    None keeps nothing (nothing survives a restart).
    """

    name: str
    bind: Address = ("127.0.0.1", 0)
    advertise: Address | None = None
    http: Address | None = None
    data_dir: Path | None = None
    seeds: tuple[Address, ...] = ()
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    meta: Mapping[str, str] = field(default_factory=dict)
    cluster: str = "default"
    leave_timeout: float = 3.0
    """Bounded wait for a graceful leave to spread before the node stops."""
    sync_timeout: float = 5.0
    """Seconds ``async with Node(...)`` (and ``ThreadedNode.start``) wait for the first
    push-pull with a seed, so that the node holds the cluster's table when the block
    starts; 0 does not wait. Longer tolerates seeds that start later; shorter starts
    sooner with a table that may still be empty."""
    sync_required: bool = False
    """Whether a first sync that does not happen within ``sync_timeout`` is an error
    (``NotSynced``) rather than a warning in the log (the node then runs alone and
    keeps trying its seeds in the background)."""
    tcp_timeout: float = DEFAULT_TCP_TIMEOUT
    """Seconds for one whole TCP exchange (connect, request, reply); memberlist's TCPTimeout."""
    # --- watches and self-preservation
    max_waiters: int = 20_000
    """Most concurrent blocking waits (watches, blocking queries); the next is refused (429)."""
    self_preservation: PreservationConfig = field(default_factory=PreservationConfig)
    """When a mass death is doubted and the dead members' entries are kept, flagged stale."""
    max_checks_per_node: int = 1000
    """Health checks this node runs at most, over all its instances (each is a task and,
    every interval, a probe); registrations beyond it are refused."""
    # --- HTTP API access (api/auth.py); repr=False keeps tokens out of logs and tracebacks.
    read_token: str | None = field(default=None, repr=False)
    """Bearer token for reads of the HTTP API; None leaves reads open."""
    write_token: str | None = field(default=None, repr=False)
    """Bearer token for writes (and key and check operations); None leaves writes open."""
    tls_cert: Path | None = None
    """PEM certificate (chain) for HTTPS on the HTTP API; set together with ``tls_key``."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert``."""
    dns: Address | None = None
    """Binds the DNS interface (UDP and TCP, same port) when set; see ``api/dns_answer.py``."""
    dns_domain: str = "registry."
    """The zone DNS answers for: NAME.service.DOMAIN, NODE.node.DOMAIN."""
    dns_ttl: float = 5.0
    """Seconds resolvers may cache DNS answers (0..86400): staleness traded for query load."""
    # --- what one client can hold on the interfaces (issue 10: api/http_limits.py, api/dns.py)
    max_http_connections: int = 25_000
    """HTTP connections open at once; one more is closed at accept, counted. Capped further
    by the open-files limit, with a reserve for gossip (``fdlimit.connection_budget``)."""
    http_body_timeout: float = 10.0
    """Seconds a request's body may take to arrive in full; then 408 and the connection closes."""
    max_dns_tcp_connections: int = 256
    """DNS-over-TCP connections open at once (same rule as max_http_connections)."""
    dns_rate_limit: int = field(default=200, metadata={"minimum": 0})
    """DNS queries per second answered per untrusted source address (bursts of as many); the
    rest are dropped and counted as ``rate_limited``. 0: no limit."""
    dns_trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """DNS sources neither rate-limited nor size-capped: their UDP answers may use the EDNS0
    size they offer (up to 4,096 bytes). Others get at most 512 bytes over UDP (the rest
    truncated: the resolver asks again over TCP), so a spoofed source gets little amplified."""
    unsafe_test_faults: Path | None = None
    """Chaos testing only: drop packets by the rules in this file (``runtime/faultinject.py``).
    Set only by the agent's ``--unsafe-test-faults`` flag, never from cluster.toml."""
    # --- gossip encryption (keyring.py)
    keyring: Keyring | None = None
    """Gossip keys (AES-256-GCM); None gossips in plaintext. ``<data_dir>/keyring.json``,
    when it exists, wins: it holds the keys as rotated since."""
    gossip_allow_plaintext: bool = False
    """Also accept unsealed gossip (only while moving a cluster to encryption)."""
    gossip_encrypt_outgoing: bool = True
    """Seal what we send; off only in the first step of a migration (needs allow_plaintext)."""
