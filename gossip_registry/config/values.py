"""Value parsers for configuration: durations with a unit, ``host:port`` addresses.

Shared by the cluster.toml loader, the agent's flags and the HTTP API (blocking
query waits), so a duration or an address means the same wherever it is given.
Standard library and the pure layers only.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

from gossip_registry.registry.schema import MAX_PORT, is_host

__all__ = ["parse_address", "parse_duration", "show"]

_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``"500ms"``, ``"1.5s"``, ``"1m30s"`` or ``"2h"``.

    A unit is required (ms, s, m, h) so that no one has to guess what a bare
    number meant; there is no sign, so a duration is never negative.

    Raises:
        ValueError: not a string, no unit, an unknown unit, or not finite.
    """
    if not isinstance(text, str):
        raise ValueError(f"must be a duration string such as '500ms' or '1s', got {show(text)}")
    compact = text.strip()
    if not _DURATION.fullmatch(compact):
        raise ValueError(
            f"must be a duration such as '500ms', '1s', '1m' or '1h', got {show(text)}"
        )
    total = 0.0
    for number, unit in _DURATION_PART.findall(compact):
        # Divide for milliseconds: 500 / 1000 is exactly 0.5, 500 * 0.001 is not always.
        total += float(number) / 1000 if unit == "ms" else float(number) * _UNITS[unit]
    if not math.isfinite(total):
        raise ValueError(f"duration too large: {show(text)}")
    return total


def parse_address(
    text: str, default_port: int | None = None, *, allow_zero: bool = False
) -> tuple[str, int]:
    """(host, port) from ``"host:port"``, ``"[::1]:port"``, ``"[::1]"`` or ``"host"``.

    IPv6 literals come back without brackets, as sockets want them. An IPv6
    literal must be bracketed to carry a port (``::1:7946`` is ambiguous);
    a bare one, bracketed or not, takes ``default_port``.

    Args:
        text: the address.
        default_port: port for an address that names none; None makes the
            port required.
        allow_zero: accept port 0 ("any free port"): right for a bind
            address, wrong for a seed or an advertised address.

    Raises:
        ValueError: malformed host or port, or a missing port with no default.
    """
    if not isinstance(text, str):
        raise ValueError(f"must be a string 'host:port', got {show(text)}")
    s = text.strip()
    port_text: str | None
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"missing ']' in {show(text)}")
        host, rest = s[1:end], s[end + 1 :]
        if not _is_ipv6(host):
            raise ValueError(f"brackets must hold an IPv6 address, got {show(text)}")
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected ':port' after ']', got {show(text)}")
        port_text = rest[1:] if rest else None
    elif s.count(":") > 1:
        if not _is_ipv6(s):
            raise ValueError(f"not a valid address: {show(text)}")
        host, port_text = s, None
        if default_port is None:
            raise ValueError(
                "an IPv6 address with a port must be bracketed, like '[::1]:7946', "
                f"got {show(text)}"
            )
    elif ":" in s:
        host, port_text = s.rsplit(":", 1)
    else:
        host, port_text = s, None
    if not is_host(host):
        raise ValueError(f"not a valid host name or IP address: {show(host)}")
    lowest = 0 if allow_zero else 1
    if port_text is None:
        if default_port is None:
            raise ValueError(f"missing port in {show(text)}; expected 'host:port'")
        return host, default_port
    # isascii: int() would accept other scripts' digits, and '+80' or ' 80'.
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
        raise ValueError(f"port must be a number {lowest}..{MAX_PORT}, got {show(port_text)}")
    port = int(port_text)
    if not lowest <= port <= MAX_PORT:
        raise ValueError(f"port must be {lowest}..{MAX_PORT}, got {port}")
    return host, port


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def show(value: Any) -> str:
    """A value for an error message: its repr, cut short so a huge value cannot flood a log."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
