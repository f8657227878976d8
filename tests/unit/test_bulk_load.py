"""A bulk load is not piggybacked entry by entry: push-pull carries what gossip cannot send in time.

Every update is sent ``retransmit_limit(N)`` times by every node that holds
it, a few dozen per packet, a few packets per gossip round. What the queue
holds beyond what those rounds send within one push-pull period arrives
sooner by push-pull; queued, it kept every node's gossip busy for minutes
after a node registered 20,000 instances (scripts/bench_steady.py).
"""

from __future__ import annotations

import math
import random

import pytest

from gossip_registry.core.codec import encode_update
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.members import MemberSeed
from gossip_registry.core.messages import Address, EntryUpdate, MemberRecord, MemberState
from gossip_registry.core.protocol import Protocol


def node_among(config: ProtocolConfig, n: int) -> Protocol:
    """Node "m0" of a formed cluster of ``n`` alive members."""
    addrs: list[Address] = [(f"198.18.0.{i + 1}", 7946) for i in range(n)]
    node = Protocol(config, "m0", addrs[0], rng=random.Random(3), now=0.0)
    records = (MemberRecord(f"m{i}", a, 0, MemberState.ALIVE, {}) for i, a in enumerate(addrs))
    node.seed_members(MemberSeed.build(records))
    node.start(0.0)
    return node


@pytest.mark.parametrize("n", [5, 20, 1000])
def test_the_queue_holds_what_gossip_sends_within_one_push_pull_period(n: int) -> None:
    config = ProtocolConfig()
    rounds = math.ceil(config.push_pull_period(n) / config.gossip_interval)
    sends = rounds * config.gossip_nodes * (config.payload_size // 64)
    assert config.queue_limit(n) == min(
        config.broadcast_queue_limit, sends // config.retransmit_limit(n)
    )
    assert config.queue_limit(n) < config.broadcast_queue_limit
    assert config.queue_limit(1) >= 1


def test_a_bulk_registration_leaves_to_push_pull_what_gossip_could_not_send_in_time() -> None:
    config = ProtocolConfig()
    node = node_among(config, 5)
    limit = config.queue_limit(5)
    count = limit + 3000
    first = node.register(0.0, "bulk", "b0", "10.0.0.1", 80)[0]
    for i in range(1, count):
        node.register(0.0, "bulk", f"b{i}", "10.0.0.1", 80)
    assert node.table.live_count == count  # every one is held, and push-pull serves it
    assert len(node.queue) == limit
    assert node.stats["broadcasts_dropped"] == count - limit
    last = node.register(0.0, "bulk", "last", "10.0.0.1", 80)[0]
    assert node.stats["broadcasts_dropped"] == count - limit + 1
    queued = node.queue.take(10**9, config.retransmit_limit(5), most=count)
    assert len(queued) == limit
    assert encode_update(EntryUpdate(last)) in queued  # fresh news stays; the oldest went
    assert encode_update(EntryUpdate(first)) not in queued


def test_the_queue_limit_follows_the_cluster_size() -> None:
    config = ProtocolConfig().with_(broadcast_queue_limit=10**6)
    small, large = node_among(config, 5), node_among(config, 20)
    for node in (small, large):
        for i in range(3 * config.queue_limit(5)):
            node.register(0.0, "bulk", f"b{i}", "10.0.0.1", 80)
    assert len(small.queue) == config.queue_limit(5)
    assert len(large.queue) == config.queue_limit(20) < config.queue_limit(5)
