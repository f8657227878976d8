"""Service instances as the HTTP API returns them, checked at the boundary.

A node's answer is input from the network: a proxy error page or a node of
another version must become a ``BadResponse`` (and a fail-over), never a
``KeyError`` deep inside a balancer. Unknown fields (``checks``, and
whatever later versions add) are ignored so older clients keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from gossip_registry.client.errors import BadResponse

__all__ = ["Instance", "InstanceKey", "ServiceQuery", "parse_instances"]

InstanceKey = tuple[str, str]
"""(service, instance id): what ejection and outstanding counts are kept by."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One registered instance of a service."""

    id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1
    status: str = "passing"
    node: str = ""
    stale: bool = False
    """True when the node answers from self-preservation: the entry may be gone."""

    @property
    def key(self) -> InstanceKey:
        return (self.name, self.id)

    def url(self, path: str = "", scheme: str = "http") -> str:
        """``scheme://address:port`` + path, IPv6 literals bracketed."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{scheme}://{host}:{self.port}{path}"


@dataclass(frozen=True, slots=True)
class ServiceQuery:
    """What a cached list answers: one watcher and one cache slot per distinct query."""

    name: str
    tags: tuple[str, ...] = ()
    passing: bool = True

    @classmethod
    def of(cls, name: str, tag: str | None = None, passing: bool = True) -> ServiceQuery:
        if not name:
            raise ValueError("service name must not be empty")
        return cls(name, () if tag is None else (tag,), passing)

    @property
    def path(self) -> str:
        return "/v1/services/" + quote(self.name, safe="")

    def params(self) -> list[tuple[str, str]]:
        return [("tag", t) for t in self.tags] + [("passing", "true" if self.passing else "false")]


def _field(item: Mapping[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = item.get(name, default)
    # type() for int: JSON true is a bool, and a bool is an int.
    if value is None or (type(value) is not kind if kind is int else not isinstance(value, kind)):
        raise BadResponse(f"instance field {name!r}: expected {kind.__name__}, got {value!r:.60}")
    return value


def _instance(item: Any) -> Instance:
    if not isinstance(item, dict):
        raise BadResponse(f"instance: expected an object, got {item!r:.60}")
    tags = _field(item, "tags", list, [])
    meta = _field(item, "meta", dict, {})
    if not all(isinstance(t, str) for t in tags):
        raise BadResponse("instance field 'tags': expected strings")
    if not all(isinstance(v, str) for v in meta.values()):
        raise BadResponse("instance field 'meta': expected string values")
    port = _field(item, "port", int)
    weight = _field(item, "weight", int, 1)
    if not 0 <= port <= 65535 or weight < 0:
        raise BadResponse(f"instance: port {port} or weight {weight} out of range")
    return Instance(
        id=_field(item, "id", str),
        name=_field(item, "name", str),
        address=_field(item, "address", str),
        port=port,
        tags=tuple(tags),
        meta=dict(meta),
        weight=weight,
        status=_field(item, "status", str, "passing"),
        node=_field(item, "node", str, ""),
        stale=_field(item, "stale", bool, False),
    )


def parse_instances(data: Any) -> list[Instance]:
    """The instances of a ``GET /v1/services/{name}`` body (already JSON-decoded).

    Raises:
        BadResponse: the body is not a list of instance objects.
    """
    if not isinstance(data, list):
        raise BadResponse(f"expected a list of instances, got {type(data).__name__}")
    return [_instance(item) for item in data]
