"""Deterministic discrete-event simulation of a gossip_registry cluster.

One thread, one seeded random generator, one heap of (time, seq, event):
many protocol cores talk through a modelled network (lognormal delays,
loss, partitions, TCP streams with retransmission) under injected faults
(crash, pause, restart, graceful leave), in virtual time; each node's health
checks run on its own check scheduler against a probe-outcome model. Same seed, same
calls, same run. Start with ``SimCluster``; ``engine`` explains the event
loop and ``network`` the link model.
"""

from gossip_registry.sim.checks import ProbeModel, ProbeOutcome
from gossip_registry.sim.cluster import (
    PORT,
    SimCluster,
    SimulationError,
    default_node_factory,
    node_address,
    node_name,
)
from gossip_registry.sim.engine import NotifyCallback, TraceRecord
from gossip_registry.sim.network import LinkModel, Network
from gossip_registry.sim.process import NodeFactory, NodeStatus, SimNode, Snapshot, Traffic

__all__ = [
    "PORT",
    "LinkModel",
    "Network",
    "NodeFactory",
    "NodeStatus",
    "NotifyCallback",
    "ProbeModel",
    "ProbeOutcome",
    "SimCluster",
    "SimNode",
    "SimulationError",
    "Snapshot",
    "TraceRecord",
    "Traffic",
    "default_node_factory",
    "node_address",
    "node_name",
]
