"""Limits on what a peer may make a node hold or accept: the one place they are configured.

Theory of operation: a node must survive hostile or buggy peers, so every
path by which data enters has a bound, and exceeding it is a counted drop
(peers are never answered with an error: SWIM has no error channel, and a
peer that floods us gains nothing from one) or, for local calls, a
``ValueError``. Each limit is enforced where the data enters:

- ``max_packet_bytes``: UDP datagrams longer than this are dropped before
  msgpack sees them (``stats["malformed_packets"]``).
- ``max_members``: a new member beyond this is ignored, whether it arrives
  in an alive message or a push-pull member list (``members_refused``).
  Without it a flood of fake alive messages grows the member table, and
  every probe ring and push-pull with it, until the 24 h reap.
- ``max_entries_per_owner``: registry versions one owner may hold, live
  entries and deletions (tombstones, kept for the tombstone horizon) alike:
  a flood of deletions costs as much memory as one of registrations. A
  peer's version beyond it is dropped (``entries_over_limit``); a local
  registration beyond it raises ``ValueError`` (HTTP 400). Replacing a
  version of a key the owner already holds always succeeds.
- ``max_foreign_entries``: versions of other owners this node holds in
  total; a new key beyond it is dropped (``entries_over_total``). The
  number of owners is not otherwise limited, so this is what bounds the
  foreign state (gauge ``registry_foreign_entries``).
- ``orphan_entry_grace``: entries whose owner is not a member (never was,
  was refused by ``max_members``, or was reaped) are removed this long
  after a reap first finds them, and refused while the owner stays a
  stranger (``orphan_entries_expired``).
- ``max_incarnation_step``: news about a member (alive, suspect, dead,
  left, a push-pull record, an entry's owner incarnation) more than this
  above the incarnation we know is dropped (``incarnations_refused``).
- ``max_clock_skew``: seconds an entry's HLC stamp may run ahead of our
  wall clock. Further ahead, it is dropped (``entries_from_future``) and
  our clock does not observe it (see ``core/protocol.py``).

Every node of a cluster should use the same values: an entry that one node
drops and another keeps makes their digests differ, and anti-entropy then
ships that bucket on every exchange.

Limits set elsewhere, because changing them is a protocol change (peers
reject what they do not allow): name, tag and metadata sizes
(``core/codec.py``: 128-character names, 64 tags, 64 metadata pairs of
512-character values), updates per packet (1,024). The TCP frame limit is
``ProtocolConfig.max_stream_bytes`` and the HTTP body limit
``api.requests.MAX_BODY_BYTES`` (64 KiB).

This module is pure: it may import nothing but the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from gossip_registry.registry.schema import FieldError

__all__ = ["Limits"]

MAX_IPV4_UDP_PAYLOAD = 65507


@dataclass(frozen=True, slots=True)
class Limits:
    max_packet_bytes: int = MAX_IPV4_UDP_PAYLOAD
    """Largest UDP datagram decoded. We send at most ``packet_size`` (1,400 B); the
    default accepts any peer's setting. Lower it to ``packet_size`` to shed
    oversized garbage before parsing."""
    max_members: int = 50_000
    """Members (alive, suspect, dead or left) this node keeps: 5x the largest cluster
    simulated (10,000). A member record costs well under 1 KB, so this bounds the
    member table to tens of MB."""
    max_entries_per_owner: int = 50_000
    """Live registry entries one node may own. Generous: a node hosting more
    instances than this is almost surely a runaway loop or a hostile peer."""
    max_foreign_entries: int = 1_000_000
    """Versions (live and tombstones) of other owners held in total: ten times the
    100,000-entry registry the table is sized for, a few hundred MB at most."""
    orphan_entry_grace: float = 300.0
    """Seconds a non-member's entries are kept. Gossip may deliver an entry before
    its owner's alive message; five minutes is far beyond any propagation delay,
    and short enough that a stranger's flood does not outlive the attack by much."""
    max_clock_skew: float = 60.0
    """Seconds an entry's stamp may run ahead of our wall clock. NTP keeps hosts
    within milliseconds; an unsynchronised quartz clock drifts about 1-4 s a day
    (10-50 ppm), so 60 s tolerates weeks without NTP while keeping what a wrong
    clock can pin small. For scale, Kerberos (MIT krb5 ``clockskew``) tolerates
    300 s and CockroachDB's ``--max-offset`` is 500 ms."""
    max_incarnation_step: int = 2**20
    """How far above the incarnation we know of a member (0 for one we never knew,
    our own for news about us) news about it may claim; further is refused and
    counted (``incarnations_refused``). Incarnations rise by one per refutation, so
    an honest member gets 2**20 above what we last heard only after a million
    refutations; one forged datagram no longer moves anyone to the edge of the
    encodable range, and ratcheting there takes 2**42 of them. The price: a node
    restarted without its data dir after more than this many refutations in one
    life stays refused until peers reap its old record (the tombstone horizon)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            valid = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and value > 0
                and math.isfinite(value)
            )
            if not valid:
                problem = f"must be a positive number, got {value!r}"
                raise FieldError(problem, f.name, message=f"limits.{f.name} {problem}")
        if self.max_packet_bytes < 512:
            problem = "must be at least 512 bytes"
            raise FieldError(
                problem, "max_packet_bytes", message=f"limits.max_packet_bytes {problem}"
            )
