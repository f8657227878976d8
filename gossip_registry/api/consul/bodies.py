"""Consul's request bodies and flags, translated into our HTTP API's.

Theory of operation: Consul reads request JSON loosely (keys in any case,
``snake_case`` too; py-consul sends ``{"name", "id", "port", "checks":
[{"ttl": "15s"}]}``, Go's client ``{"Name", "ID", "Port", "Check": {...}}``)
and so must we. A Consul registration becomes the body of our own
``PUT /v1/services`` (``api/http.py``), which then checks every field by our
rules: one set of field rules, not two. What has no meaning here
(Connect, sidecars, script and gRPC checks...) is refused with a 400 naming
the field, never dropped silently: a client must not believe a check runs
when none does. Harmless flags (``EnableTagOverride``, the default
namespace) are accepted and ignored. Pure functions; every problem is a
``ValueError`` whose message starts with the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gossip_registry.registry.entry import Health

__all__ = ["check_update", "flag", "registration"]

_SERVICE_FIELDS = {"name", "id", "address", "port", "tags", "meta"}
_IGNORED_IF_EMPTY = {
    "enabletagoverride",  # our tags are the registrant's alone anyway
    "namespace",
    "partition",
    "taggedaddresses",
    "connect",
    "proxy",
    "kind",
    "socketpath",
    "locality",
}
_CHECK_FIELDS = {
    "ttl": "ttl",
    "http": "http",
    "tcp": "tcp",
    "interval": "interval",
    "timeout": "timeout",
    "deregistercriticalserviceafter": "deregister_after",
    "checkid": "id",
    "id": "id",
    "name": "name",
    "successbeforepassing": "success_before_passing",
    "failuresbeforecritical": "failures_before_critical",
}
_CHECK_IGNORED = {"notes", "serviceid", "namespace", "partition"}
_TRUE = {"", "1", "true"}
_FALSE = {"0", "false"}


def _key(name: str) -> str:
    """Consul's key matching: case-insensitive, ``_`` and ``-`` ignored."""
    return name.replace("_", "").replace("-", "").lower()


def _loose(where: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    folded: dict[str, Any] = {}
    for name, value in raw.items():
        key = _key(name)
        if key in folded:
            raise ValueError(f"{where}{name}: given twice (keys are case-insensitive)")
        folded[key] = value
    return folded


def _empty(value: Any) -> bool:
    return value is None or value is False or value in ("", "default") or value == {}


def _check(where: str, raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be an object")
    check: dict[str, Any] = {}
    for key, value in _loose(f"{where}.", raw).items():
        if key in _CHECK_FIELDS:
            if value is not None and value != "":
                check[_CHECK_FIELDS[key]] = value
        elif key == "status":
            if value not in (None, "", "critical"):
                raise ValueError(f"{where}.Status: checks start critical here, got {value!r}")
        elif key not in _CHECK_IGNORED:
            raise ValueError(
                f"{where}.{key}: not supported (checks here are TTL, HTTP or TCP only)"
            )
    return check or None  # py-consul sends "check": {} when no check is given


def registration(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Our ``PUT /v1/services`` body from a Consul ``/v1/agent/service/register`` body.

    The id defaults to the name, as in Consul. ``Weights.Passing`` is our
    weight (we have one; ``Warning`` is ignored).

    Raises:
        ValueError: a field that has no meaning here, or a malformed one.
    """
    body: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []
    for key, value in _loose("", raw).items():
        if key in _SERVICE_FIELDS:
            if value is not None and value != "" and not (key == "port" and value == 0):
                body[key] = value
        elif key == "weights":
            if value is not None:
                if not isinstance(value, dict):
                    raise ValueError("Weights: must be an object")
                passing = _loose("Weights.", value).get("passing")
                if passing is not None:
                    body["weight"] = passing
        elif key in ("check", "checks"):
            items = [value] if key == "check" else value
            if items is None:
                continue
            if not isinstance(items, list):
                raise ValueError("Checks: must be a list of objects")
            for i, item in enumerate(items):
                check = _check(f"{key}[{i}]" if key == "checks" else key, item)
                if check is not None:
                    checks.append(check)
        elif key in _IGNORED_IF_EMPTY:
            if not _empty(value):
                raise ValueError(f"{key}: not supported (no Connect, tagged addresses or kinds)")
        else:
            raise ValueError(f"{key}: unknown field")
    if "name" in body and "id" not in body:
        body["id"] = body["name"]
    if checks:
        body["checks"] = checks
    return body


def check_update(raw: Mapping[str, Any] | None) -> tuple[Health, str]:
    """Status and output of ``PUT /v1/agent/check/update/{id}``'s ``{"Status", "Output"}``.

    Raises:
        ValueError: no or unknown status, an output that is not a string, another field.
    """
    folded = _loose("", raw or {})
    unknown = [k for k in folded if k not in ("status", "output")]
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field (allowed: Status, Output)")
    given = folded.get("status")
    if not isinstance(given, str) or given not in {h.value for h in Health}:
        raise ValueError(f"Status: must be one of passing, warning, critical, got {given!r}")
    status = Health(given)
    output = folded.get("output") or ""
    if not isinstance(output, str):
        raise ValueError("Output: must be a string")
    return status, output


def flag(name: str, values: list[str], *, default: bool | None = None) -> bool:
    """A Consul boolean query parameter: present with no value, ``1`` or ``true`` (any case)
    is true; ``0`` or ``false`` false.

    Raises:
        ValueError: given twice, not a boolean, or missing where there is no default.
    """
    if len(values) > 1:
        raise ValueError(f"{name}: given more than once")
    if not values:
        if default is None:
            raise ValueError(f"{name}: required (true or false)")
        return default
    value = values[0].lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}: must be true or false, got {values[0][:40]!r}")
