"""Prometheus HTTP service discovery: ``GET /v1/prometheus/targets``.

Theory of operation: Prometheus' ``http_sd_configs`` polls a URL (every
``refresh_interval``, 1 minute by default) for ``[{"targets": ["host:port"],
"labels": {...}}]`` and scrapes every target, with the ``__meta_*`` labels
available to relabelling and dropped afterwards. Debian's Prometheus is
built without Consul discovery, so this is how it finds what the registry
knows. One group per instance, since each instance's labels differ:

- ``__meta_registry_service``, ``__meta_registry_service_id``,
  ``__meta_registry_node`` (the owner), ``__meta_registry_address``,
  ``__meta_registry_service_port``;
- ``__meta_registry_tags``: the tags joined Prometheus' Consul way,
  ``,a,b,`` (``,,`` for none), so ``regex: .*,prod,.*`` selects a tag;
- ``__meta_registry_health``: ``passing``, ``warning`` or ``critical``;
- ``__meta_registry_service_meta_<key>``: each meta pair, the key made a
  valid label name (characters outside ``[a-zA-Z0-9_]`` become ``_``).

The answer is built from ``Node.discover`` (filters ``service``, ``tag``,
``passing``: every instance whatever its health unless ``passing=true``,
so that relabelling can decide) and kept while no entry changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gossip_registry.registry.entry import Entry

if TYPE_CHECKING:
    from gossip_registry.runtime.node import Node

__all__ = ["PREFIX", "label_name", "sd_targets", "target_group"]

PREFIX = "__meta_registry_"
_NOT_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def label_name(key: str) -> str:
    """``key`` as a valid Prometheus label name suffix (Prometheus' own sanitising rule)."""
    return _NOT_LABEL.sub("_", key)


def _target(entry: Entry) -> str:
    host = f"[{entry.address}]" if ":" in entry.address else entry.address
    return f"{host}:{entry.port}"


def target_group(entry: Entry) -> dict[str, Any]:
    """One instance as an HTTP SD target group."""
    labels = {
        PREFIX + "service": entry.service,
        PREFIX + "service_id": entry.instance_id,
        PREFIX + "node": entry.owner,
        PREFIX + "address": entry.address,
        PREFIX + "service_port": str(entry.port),
        PREFIX + "tags": "," + ",".join(entry.tags) + ",",
        PREFIX + "health": str(entry.status),
    }
    for key, value in sorted(entry.meta.items()):
        labels[PREFIX + "service_meta_" + label_name(key)] = value
    return {"targets": [_target(entry)], "labels": labels}


def sd_targets(
    node: Node, service: str | None, tags: Sequence[str], passing_only: bool
) -> list[dict[str, Any]]:
    """Target groups of every instance (of ``service`` if given) with all of ``tags``."""
    names = [service] if service is not None else sorted(node.services())
    return [
        target_group(entry)
        for name in names
        for entry in node.discover(name, tags=tags, passing_only=passing_only)
    ]
