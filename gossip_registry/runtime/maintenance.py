"""Maintenance mode: an operator takes an instance, or every instance of a node, out of discovery.

Theory of operation: maintenance is Consul's: a check that reads critical,
with the operator's reason as its output, added to the instance's own
checks until it is turned off. The instance therefore stays registered
(its owner keeps it alive, peers keep it, ``discover(passing_only=False)``
still lists it), but no caller is sent to it, and every view of it (our
API, the Consul-compatible one, DNS, metrics) shows why, with no code of
its own. The maintenance check travels as an ordinary TTL-kind check state
under a reserved id (Consul's ``_service_maintenance:<id>`` and
``_node_maintenance``), so peers of any version decode it.

This module holds which instances are in maintenance and turns that into
check states; the node (``runtime/node.py``) adds them whenever it writes one of
its instances, and rewrites the instances whose maintenance changed. The
state lives in memory and in the entries themselves: a restarted node finds
it again in the check states of the entries its snapshot gave back
(``recover``). Standard library and registry types only.
"""

from __future__ import annotations

from collections.abc import Iterable

from gossip_registry.registry.entry import CheckKind, CheckState, Entry, EntryKey, Health

__all__ = [
    "NODE_CHECK_ID",
    "SERVICE_CHECK_PREFIX",
    "Maintenance",
    "NoRoom",
    "is_maintenance_check",
]

NODE_CHECK_ID = "_node_maintenance"
"""Id of the check that a node's maintenance adds to each of its instances (Consul's)."""
SERVICE_CHECK_PREFIX = "_service_maintenance:"
"""Followed by the instance id: the check one instance's maintenance adds (Consul's)."""
DEFAULT_REASON = "maintenance mode is on"
"""The output of a maintenance check turned on without a reason."""


class NoRoom(ValueError):
    """The instance's entry cannot carry one more check (it has the most checks an entry
    may carry, or is as large as a packet allows): maintenance could not be turned on."""


def is_maintenance_check(check_id: str) -> bool:
    """True for the check states this module adds (not run by any check runner)."""
    return check_id == NODE_CHECK_ID or check_id.startswith(SERVICE_CHECK_PREFIX)


class Maintenance:
    """Which of a node's instances are in maintenance, and why."""

    def __init__(self) -> None:
        self.node_reason: str | None = None
        """The node-wide maintenance's reason; None when it is off."""
        self._reasons: dict[EntryKey, str] = {}

    def states(self, key: EntryKey) -> tuple[CheckState, ...]:
        """Maintenance checks to add to instance ``key``'s own (none when not in maintenance)."""
        found = []
        if self.node_reason is not None:
            found.append(_critical(NODE_CHECK_ID, self.node_reason))
        reason = self._reasons.get(key)
        if reason is not None:
            found.append(_critical(SERVICE_CHECK_PREFIX + key[1], reason))
        return tuple(found)

    def set_node(self, enable: bool, reason: str) -> None:
        self.node_reason = (reason or DEFAULT_REASON) if enable else None

    def set_instance(self, key: EntryKey, enable: bool, reason: str) -> None:
        if enable:
            self._reasons[key] = reason or DEFAULT_REASON
        else:
            self._reasons.pop(key, None)

    def forget(self, key: EntryKey) -> None:
        """The instance is gone: a later one under the same id starts out of maintenance."""
        self._reasons.pop(key, None)

    def instances(self) -> dict[EntryKey, str]:
        """Instances in maintenance of their own (not through the node's), with the reason."""
        return dict(self._reasons)

    def recover(self, own: Iterable[Entry]) -> None:
        """Take up again the maintenance recorded in the check states of our restored entries."""
        for entry in own:
            for check in entry.checks:
                if check.check_id == NODE_CHECK_ID:
                    self.node_reason = check.output or DEFAULT_REASON
                elif check.check_id == SERVICE_CHECK_PREFIX + entry.instance_id:
                    self._reasons[entry.key] = check.output or DEFAULT_REASON


def _critical(check_id: str, reason: str) -> CheckState:
    return CheckState(check_id, CheckKind.TTL, Health.CRITICAL, reason)
