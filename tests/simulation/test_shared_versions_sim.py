"""The simulator's nodes share every version's one Entry object (issue 15).

Entries are immutable, yet each simulated node decoded and kept its own copy
of every entry it held: about 1.4 KiB per node per entry, so 1,000 nodes with
a large table did not fit in memory. The real ``Protocol`` cores of one
``SimCluster`` keep the first copy of each version any of them stored.
"""

from __future__ import annotations

import random

from gossip_registry.core.codec import encode_packet
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.messages import Address, EntryUpdate, Packet
from gossip_registry.core.protocol import Protocol
from gossip_registry.registry.entry import Entry
from gossip_registry.sim import SimCluster

A: Address = ("198.18.0.1", 7946)
B: Address = ("198.18.0.2", 7946)


def test_every_node_of_a_simulated_cluster_holds_the_same_entry_objects() -> None:
    cluster = SimCluster(4, seed=11, bootstrap=True)
    for k in range(20):
        cluster.register(cluster.names[k % 4], "web", f"w{k}", port=80)
    cores = [cluster.node(name) for name in cluster.names]
    assert all(isinstance(core, Protocol) for core in cores)
    tables = [core.table for core in cores if isinstance(core, Protocol)]
    assert cluster.run_until(lambda: all(t.live_count == 20 for t in tables), timeout=30)
    for k in range(20):
        held = {id(t.get(("web", f"w{k}"))) for t in tables}
        assert len(held) == 1, f"w{k} is held as {len(held)} objects"


def test_a_core_given_shared_versions_stores_the_copy_already_there() -> None:
    versions: dict[Entry, Entry] = {}
    owner = Protocol(ProtocolConfig(), "a", A, rng=random.Random(1), now=0.0, versions=versions)
    entry, _ = owner.register(0.0, "web", "w1", "10.0.0.1", 80)
    assert versions[entry] is entry
    peer = Protocol(ProtocolConfig(), "b", B, rng=random.Random(2), now=0.0, versions=versions)
    peer.start(0.0)
    peer.handle_packet(1.0, A, encode_packet(Packet(None, (EntryUpdate(entry),))))
    assert peer.table.get(entry.key) is entry, "the decoded copy was dropped for the shared one"
    assert len(versions) == 1
