"""Registry entries and the version order that decides between them.

Theory of operation: an entry is one service instance, keyed by (service,
instance_id). Only its owner (the node it was registered on) writes it, and
every write carries a version: the owner's hybrid logical clock stamp, with
the owner's name as tie-break. Two writes can then only tie if one node
issued the same stamp twice for different payloads (a restart that lost its
clock and met a clock step backwards); the entry's content digest breaks even
that tie, so versions are a total order and one version always means one
payload. That is what makes the merge commutative, associative and idempotent.

An entry carries the state of its health checks (``checks``): each check's
kind, status and last output travel with the instance, inside the content the
digest covers, so a status change is an ordinary new version that gossips and
repairs like any other write.

A deletion is an entry with ``deleted=True`` (a tombstone) so that it can win
against older live copies still travelling through the cluster.

This module may not import anything from the package outside ``registry``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgpack

EntryKey = tuple[str, str]
"""(service name, instance id)."""


class Health(StrEnum):
    """Health of an instance as discovery reports it (Consul's three states)."""

    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"


class CheckKind(StrEnum):
    """How the owning node decides a check's status."""

    HTTP = "http"
    TCP = "tcp"
    TTL = "ttl"


@dataclass(frozen=True, slots=True)
class CheckState:
    """One health check's last verdict, as it travels with its instance."""

    check_id: str
    kind: CheckKind
    status: Health
    output: str

    def canonical(self) -> list[str]:
        return [self.check_id, str(self.kind), str(self.status), self.output]


@dataclass(frozen=True, slots=True)
class Entry:
    """One version of one service instance (or of its deletion).

    ``owner_incarnation`` is the owner's SWIM incarnation when it wrote this
    version; when the owner is declared dead at incarnation i, every version
    written at i or below is fenced out (see ``RegistryTable.fence``), and the
    owner re-asserts what it still holds under a higher incarnation.
    """

    service: str
    instance_id: str
    address: str
    port: int
    tags: tuple[str, ...]
    meta: Mapping[str, str]
    weight: int
    status: Health
    output: str
    owner: str
    owner_incarnation: int
    stamp: int
    deleted: bool
    checks: tuple[CheckState, ...] = ()
    digest: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        blob = msgpack.packb(self.canonical(), use_bin_type=True)
        value = int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big")
        object.__setattr__(self, "digest", value)

    def __hash__(self) -> int:
        return self.digest

    @property
    def key(self) -> EntryKey:
        return (self.service, self.instance_id)

    @property
    def order(self) -> tuple[int, str, int]:
        """Total order of versions: later stamp, then owner name, then content."""
        return (self.stamp, self.owner, self.digest)

    def canonical(self) -> list[Any]:
        """The entry as plain values in a fixed order; the wire and the digest use it."""
        return [
            self.service,
            self.instance_id,
            self.address,
            self.port,
            list(self.tags),
            dict(sorted(self.meta.items())),
            self.weight,
            str(self.status),
            self.output,
            self.owner,
            self.owner_incarnation,
            self.stamp,
            self.deleted,
            [c.canonical() for c in self.checks],
        ]

    def newer_than(self, other: Entry | None) -> bool:
        return other is None or self.order > other.order
