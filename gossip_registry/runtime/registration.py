"""Whether a registration can be written: what peers would refuse, and this node's limits.

Theory of operation: an entry that breaks the wire codec's limits would be
refused by every peer (``core/codec.py``), so it is refused here first, at
the API, with a message naming the field, rather than gossiped and dropped
everywhere else. Health checks are checked against the per-instance limit
of the codec and this node's ``max_checks_per_node`` (each check is a task
and a probe every interval). No I/O: it raises ``ValueError`` or returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from gossip_registry.registry.entry import EntryKey
from gossip_registry.registry.health import CheckSpec, assign_check_ids
from gossip_registry.registry.schema import (
    MAX_CHECKS,
    MAX_WEIGHT,
    host_problem,
    label_problem,
    meta_problem,
    name_problem,
    port_problem,
    tags_problem,
)

if TYPE_CHECKING:
    from gossip_registry.runtime.checks import CheckRunner

__all__ = ["admit_checks", "check_registration"]


def _refuse(what: str, problem: str | None) -> None:
    if problem is not None:
        raise ValueError(f"{what}: {problem}")


def _check_uint(what: str, value: object, maximum: int) -> None:
    if type(value) is not int or not 0 <= value <= maximum:
        raise ValueError(f"{what}: must be an integer 0..{maximum}, got {value!r}")


def check_registration(
    service: str,
    instance_id: str,
    address: str,
    port: int,
    tags: Sequence[str],
    meta: Mapping[str, str],
    weight: int,
) -> None:
    """Reject what peers would refuse or DNS could not carry, naming the field
    (the rules of registry/schema.py)."""
    _refuse("service", label_problem(service))
    _refuse("instance_id", name_problem(instance_id))
    _refuse("address", host_problem(address))
    _refuse("port", port_problem(port))
    _check_uint("weight", weight, MAX_WEIGHT)
    for field, problem in (("tags", tags_problem(tags)), ("meta", meta_problem(meta))):
        if problem is not None:
            where, why = problem
            raise ValueError(f"{field}{where}: {why}")


def admit_checks(
    key: EntryKey, checks: Sequence[CheckSpec], running: CheckRunner, max_per_node: int
) -> tuple[CheckSpec, ...]:
    """``checks`` with ids assigned, once they pass the per-instance and per-node limits.

    ``running`` holds the checks this node runs now; ``key``'s own are
    replaced by ``checks``, so they do not count against the node's limit.

    Raises:
        ValueError: not CheckSpecs, too many, an id too long or in use by another instance.
    """
    if isinstance(checks, str | bytes) or not isinstance(checks, Sequence):
        raise ValueError("checks: must be a list of CheckSpec")
    if not all(isinstance(c, CheckSpec) for c in checks):
        raise ValueError("checks: must be a list of CheckSpec")
    if len(checks) > MAX_CHECKS:
        raise ValueError(f"checks: at most {MAX_CHECKS} per instance, got {len(checks)}")
    specs = assign_check_ids(key[1], checks)
    for spec in specs:
        assert spec.check_id is not None
        _refuse("checks.id", name_problem(spec.check_id))
        if spec.name is not None:
            _refuse("checks.name", name_problem(spec.name))
        owner = running.owner_of(spec.check_id)
        if owner is not None and owner != key:
            raise ValueError(f"checks.id: {spec.check_id!r} is in use by {owner[0]}/{owner[1]}")
    others = len(running) - len(running.states(key))
    if others + len(specs) > max_per_node:
        raise ValueError(
            f"checks: this node runs at most {max_per_node} checks "
            f"(max_checks_per_node); {others} run already, {len(specs)} more asked"
        )
    return specs
