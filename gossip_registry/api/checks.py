"""Health checks in the HTTP API's JSON: registration bodies and TTL reports.

Kept apart from ``http.py`` so that the field rules of a check, which the
CLI also relies on through the API, sit in one place. Durations are strings
(``"500ms"``, ``"10s"``, ``"1m"``), parsed by the same rule as cluster.toml.
Every problem is a ``ValueError`` whose message starts with the field, which
the HTTP layer turns into a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gossip_registry.config.values import parse_duration
from gossip_registry.registry.entry import Health
from gossip_registry.registry.health import CheckSpec

__all__ = ["CHECK_FIELDS", "TTL_VERBS", "check_specs", "ttl_report"]

_DURATIONS = ("ttl", "interval", "timeout", "deregister_after")
_COUNTS = ("success_before_passing", "failures_before_critical")
_STRINGS = {"http": "http", "tcp": "tcp", "id": "check_id", "name": "name"}
CHECK_FIELDS = (*_STRINGS, *_DURATIONS, *_COUNTS)
"""What a check object may hold in a registration body."""
TTL_VERBS = {"pass": Health.PASSING, "warn": Health.WARNING, "fail": Health.CRITICAL}
"""The last path segment of ``PUT /v1/checks/{id}/<verb>`` and the status it reports."""


def _check(where: str, raw: Any) -> CheckSpec:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be an object")
    unknown = [key for key in raw if key not in CHECK_FIELDS]
    if unknown:
        raise ValueError(
            f"{where}.{unknown[0]}: unknown field (allowed: {', '.join(CHECK_FIELDS)})"
        )
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key in _DURATIONS:
            try:
                kwargs[key] = parse_duration(value)
            except ValueError as exc:
                raise ValueError(f"{where}.{key}: {exc}") from None
        elif key in _COUNTS:
            kwargs[key] = value  # CheckSpec checks the range
        elif not isinstance(value, str) or not value:
            raise ValueError(f"{where}.{key}: must be a non-empty string")
        else:
            kwargs[_STRINGS[key]] = value
    try:
        return CheckSpec(**kwargs)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def check_specs(raw: Any) -> list[CheckSpec]:
    """The ``checks`` list of a registration body.

    Raises:
        ValueError: naming the check and field, e.g. ``checks[1].interval: ...``.
    """
    if not isinstance(raw, list):
        raise ValueError("checks: must be a list of objects")
    return [_check(f"checks[{i}]", item) for i, item in enumerate(raw)]


def ttl_report(
    verb: str, body: Mapping[str, Any] | None, query: Mapping[str, str]
) -> tuple[Health, str]:
    """The status and output of a TTL report: ``{"output": ...}`` in the body, or ``?note=``.

    Raises:
        ValueError: an unknown verb, field or parameter, or an output that is not a string.
    """
    status = TTL_VERBS.get(verb)
    if status is None:
        raise ValueError(f"status: must be one of {', '.join(TTL_VERBS)}, got {verb!r}")
    unknown = [key for key in query if key != "note"] + [k for k in body or {} if k != "output"]
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field or parameter (allowed: output, note)")
    output = (body or {}).get("output", query.get("note", ""))
    if not isinstance(output, str):
        raise ValueError("output: must be a string")
    return status, output
