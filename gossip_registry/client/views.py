"""Node-wide views a client can follow: the service list and the member list.

Like instance lists (``instance.py``), a node's answer is input from the
network and is checked here, at the boundary: a wrong shape is a
``BadResponse`` (and a fail-over to the next node), never a ``KeyError`` in
the caller. Unknown fields are ignored so older clients keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gossip_registry.client.errors import BadResponse
from gossip_registry.client.instance import _field

__all__ = ["MEMBERS", "SERVICES", "Member", "NodeView", "parse_members", "parse_services"]


@dataclass(frozen=True, slots=True)
class NodeView:
    """A read that takes no filter (``plans.View``)."""

    path: str

    def params(self) -> list[tuple[str, str]]:
        return []


SERVICES = NodeView("/v1/services")
MEMBERS = NodeView("/v1/members")


@dataclass(frozen=True, slots=True)
class Member:
    """A cluster member as the node sees it (``alive``, ``suspect``, ``dead`` or ``left``)."""

    name: str
    address: str
    port: int
    state: str
    meta: Mapping[str, str] = field(default_factory=dict)


def parse_services(data: Any) -> dict[str, int]:
    """Service name -> live instances, from a ``GET /v1/services`` body.

    Raises:
        BadResponse: not an object of non-negative integer counts.
    """
    if not isinstance(data, dict):
        raise BadResponse(f"expected an object of services, got {type(data).__name__}")
    for name, count in data.items():
        if type(count) is not int or count < 0:  # type(): JSON true is an int to isinstance
            raise BadResponse(f"service {name!r:.60}: expected a count, got {count!r:.60}")
    return dict(data)


def _member(item: Any) -> Member:
    if not isinstance(item, dict):
        raise BadResponse(f"member: expected an object, got {item!r:.60}")
    meta = _field(item, "meta", dict, {})
    if not all(isinstance(v, str) for v in meta.values()):
        raise BadResponse("member field 'meta': expected string values")
    return Member(
        name=_field(item, "name", str),
        address=_field(item, "address", str),
        port=_field(item, "port", int),
        state=_field(item, "state", str),
        meta=dict(meta),
    )


def parse_members(data: Any) -> list[Member]:
    """The members of a ``GET /v1/members`` body.

    Raises:
        BadResponse: not a list of member objects.
    """
    if not isinstance(data, list):
        raise BadResponse(f"expected a list of members, got {type(data).__name__}")
    return [_member(item) for item in data]
