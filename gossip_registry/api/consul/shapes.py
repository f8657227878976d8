"""Consul's JSON shapes, made from our entries and members.

Theory of operation: Consul's clients are mostly Go programs (Prometheus,
Traefik, consul-template) that decode into typed structs, where one value of
the wrong JSON type loses the whole answer. So every field here has Consul's
name and exact type: ``Port`` an integer, ``Tags`` a list, ``Meta`` and a
node's ``TaggedAddresses`` objects of strings, a service's
``TaggedAddresses`` an object (of Consul's ``{Address, Port}``; we have none),
``Weights`` ``{Passing, Warning}`` integers, a check's ``Status`` one of
``passing|warning|critical``. Fields a client may read but that we have no
value for are left out (Go decodes a missing field as its zero value) rather
than filled with something that looks meaningful.

Every node gets a ``Node.ID`` (Consul's node UUID) derived from the cluster
and node names: unique per node, and stable across restarts, which Traefik
needs (it keys instances by ``Node.ID + Service.ID``).

Each instance's checks are its own (``CheckState``, maintenance ones
included, named as Consul names them), after the node-level ``serfHealth``
check that Consul lists first: ours is always passing, because an instance
whose owner is gone is served as it was last seen during self-preservation
(``registry/preservation.py``) and excluded otherwise; its output says which.
An instance registered with a status but no checks gets one check carrying
that status, so that a client deciding health from ``Checks`` (as Consul's
clients do) agrees with our ``passing`` filter. Pure functions, no I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gossip_registry.core.messages import MemberState
from gossip_registry.registry.entry import CheckKind, CheckState, Entry, Health
from gossip_registry.runtime.maintenance import (
    NODE_CHECK_ID,
    SERVICE_CHECK_PREFIX,
    is_maintenance_check,
)

__all__ = [
    "DEFAULT_DATACENTER",
    "NodeInfo",
    "agent_service",
    "catalog_service",
    "datacenter",
    "health_entry",
    "member_json",
    "node_id",
    "node_json",
    "service_checks",
]

DEFAULT_DATACENTER = "dc1"
"""The datacenter of a cluster left with the default name ``default`` (Consul's default)."""
_NODE_NAMESPACE = uuid.UUID("6f0f5f3e-53c6-4f43-9d4a-0d2b1c6e8a11")
"""Fixed namespace of the name-based node UUIDs (any constant would do; never change it)."""
SERF_CHECK_ID = "serfHealth"
_SERF_STATUS = {MemberState.ALIVE: 1, MemberState.SUSPECT: 1, MemberState.LEFT: 3}
"""Serf's member status codes (alive 1, leaving 2, left 3, failed 4) by our member states."""
_SERF_FAILED = 4


def datacenter(cluster: str) -> str:
    """The datacenter Consul's clients see: the cluster's name, ``dc1`` for an unnamed cluster."""
    return DEFAULT_DATACENTER if cluster == "default" else cluster


def node_id(cluster: str, name: str) -> str:
    """The node's Consul ``ID``: a UUID of the cluster and node names, stable across restarts."""
    return str(uuid.uuid5(_NODE_NAMESPACE, f"{cluster}\x00{name}"))


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What Consul shows of a node."""

    name: str
    id: str
    address: str
    datacenter: str
    meta: Mapping[str, str] = field(default_factory=dict)


def node_json(node: NodeInfo) -> dict[str, Any]:
    """A catalog node (``/v1/catalog/nodes``, and ``Node`` of a health entry)."""
    return {
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": {"lan": node.address, "wan": node.address},
        "Meta": dict(node.meta),
    }


def _weights(entry: Entry) -> dict[str, int]:
    # One weight here; Consul's default Warning weight is 1.
    return {"Passing": entry.weight, "Warning": 1}


def agent_service(entry: Entry, dc: str) -> dict[str, Any]:
    """A service instance as ``/v1/agent/services`` and ``Service`` of a health entry show it."""
    return {
        "ID": entry.instance_id,
        "Service": entry.service,
        "Tags": list(entry.tags),
        "Address": entry.address,
        "TaggedAddresses": {},
        "Meta": dict(entry.meta),
        "Port": entry.port,
        "Weights": _weights(entry),
        "EnableTagOverride": False,
        "Datacenter": dc,
    }


def catalog_service(entry: Entry, node: NodeInfo) -> dict[str, Any]:
    """One element of ``/v1/catalog/service/{name}``: node and service fields flattened."""
    flat = node_json(node)
    flat["NodeMeta"] = flat.pop("Meta")
    return {
        **flat,
        "ServiceID": entry.instance_id,
        "ServiceName": entry.service,
        "ServiceTags": list(entry.tags),
        "ServiceAddress": entry.address,
        "ServiceTaggedAddresses": {},
        "ServiceWeights": _weights(entry),
        "ServiceMeta": dict(entry.meta),
        "ServicePort": entry.port,
        "ServiceEnableTagOverride": False,
    }


def _check_name(entry: Entry, check: CheckState) -> str:
    if check.check_id == NODE_CHECK_ID:
        return "Node Maintenance Mode"
    if check.check_id.startswith(SERVICE_CHECK_PREFIX):
        return "Service Maintenance Mode"
    return f"Service '{entry.service}' check"


def _check_type(check: CheckState) -> str:
    return "maintenance" if is_maintenance_check(check.check_id) else str(check.kind)


def _check_json(
    node: str, check_id: str, name: str, status: str, output: str, kind: str, entry: Entry | None
) -> dict[str, Any]:
    return {
        "Node": node,
        "CheckID": check_id,
        "Name": name,
        "Status": status,
        "Notes": "",
        "Output": output,
        "ServiceID": "" if entry is None else entry.instance_id,
        "ServiceName": "" if entry is None else entry.service,
        "ServiceTags": [] if entry is None else list(entry.tags),
        "Type": kind,
    }


def service_checks(entry: Entry) -> list[dict[str, Any]]:
    """The instance's own checks (``/v1/health/checks/{service}``, ``/v1/health/state/...``)."""
    checks = entry.checks
    if not checks and entry.status is not Health.PASSING:  # a status set without checks
        own = f"service:{entry.instance_id}"
        checks = (CheckState(own, CheckKind.TTL, entry.status, entry.output),)
    return [
        _check_json(
            entry.owner,
            c.check_id,
            _check_name(entry, c),
            str(c.status),
            c.output,
            _check_type(c),
            entry,
        )
        for c in checks
    ]


def health_entry(entry: Entry, node: NodeInfo, dc: str, stale: bool) -> dict[str, Any]:
    """One element of ``/v1/health/service/{name}``: ``{Node, Service, Checks}``."""
    output = (
        "Owner unreachable: served as last seen (self-preservation)"
        if stale
        else "Agent alive and reachable"
    )
    serf = _check_json(node.name, SERF_CHECK_ID, "Serf Health Status", "passing", output, "", None)
    return {
        "Node": node_json(node),
        "Service": agent_service(entry, dc),
        "Checks": [serf, *service_checks(entry)],
    }


def member_json(
    name: str, address: str, port: int, state: MemberState, tags: Mapping[str, str]
) -> dict[str, Any]:
    """One element of ``/v1/agent/members`` (Serf's member, ``Status`` an integer code)."""
    return {
        "Name": name,
        "Addr": address,
        "Port": port,
        "Tags": dict(tags),
        "Status": _SERF_STATUS.get(state, _SERF_FAILED),
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    }
