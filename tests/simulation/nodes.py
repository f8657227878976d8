"""Typed access to a simulated node's protocol core, for tests that read its table or members.

``SimCluster.node`` returns the narrow ``SimNode`` interface the simulator
drives; tests on the default node factory may look further into the real
``Protocol`` (its table, members, clock), and say so through ``core``.
"""

from __future__ import annotations

from gossip_registry.core.protocol import Protocol
from gossip_registry.sim import SimCluster


def core(cluster: SimCluster, name: str) -> Protocol:
    """Node ``name``'s protocol core; the cluster must use the default node factory."""
    node = cluster.node(name)
    assert isinstance(node, Protocol), f"{name} is not a protocol core"
    return node
