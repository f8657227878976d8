"""Every field rule once: what a name, an id, a tag, an address or a check may be.

Theory of operation: the wire codec (``core/codec.py``), registration
(``runtime/registration.py``), the HTTP API (``api/http.py``), health checks
(``registry/health.py``) and cluster.toml (``config/cluster_file.py``) all take their
limits and character sets from here, so that what one accepts the others
accept too. A value the API accepted but no route can address (an id with
a newline), that peers refuse, or that DNS cannot carry, is a registration
nobody can use or remove (issue 10, finding 5; issue 12). Two levels:

- The wire rule (``is_name``, ``is_host``): what a packet may carry.
  Names and ids are 1..MAX_NAME_LEN printable characters without ``/``
  (``str.isprintable``: no control, format or line-break characters);
  addresses are an IP literal or an RFC 1123 host name. A peer's packet
  breaking them is refused whole, so they are a protocol rule: tightening
  one is a protocol change.
- The registration rule (``label_problem``): service names and tags are
  also DNS labels (RFC 1123: letters, digits and '-', 1..63, no '-' at
  either end), because DNS answers ``NAME.service`` and ``TAG.NAME.service``;
  ports are 1..65535 (0 cannot be dialled). Only new registrations are held
  to it, so entries of older nodes still decode.

Pure: standard library only; ``registry`` may not import ``core``, so the
codec imports this module, not the other way round. The ``*_problem``
functions return None or a message that starts with what is wrong (the
caller prefixes the field); the ``is_*`` ones are the fast forms for the
decoder, which must not format anything an attacker sent.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from typing import TypeGuard

__all__ = [
    "MAX_CHECKS",
    "MAX_HOST_LEN",
    "MAX_LABEL_LEN",
    "MAX_META_PAIRS",
    "MAX_META_VALUE_LEN",
    "MAX_NAME_LEN",
    "MAX_OUTPUT_LEN",
    "MAX_PORT",
    "MAX_TAGS",
    "MAX_WEIGHT",
    "MIN_CHECK_INTERVAL",
    "MIN_CHECK_TIMEOUT",
    "FieldError",
    "duration_problem",
    "host_problem",
    "is_host",
    "is_name",
    "label_problem",
    "meta_problem",
    "name_problem",
    "port_problem",
    "tags_problem",
    "token_problem",
]


class FieldError(ValueError):
    """A value refused by a field's rule, naming the field in the exception itself.

    Whoever reports it (cluster.toml's loader at ``nodes[2].probe_timeout``, the
    agent at a flag) takes the key from ``fields``, never from the message, so a
    reworded message cannot move an error to the wrong key.

    Args:
        problem: what is wrong, without the field's name.
        fields: the field checked first; then any it was compared with
            (``probe_timeout`` exceeds ``probe_interval``), in case one of those
            is the one the caller set.
        message: the full text, when it is not ``"<field>: <problem>"``.
    """

    def __init__(self, problem: str, *fields: str, message: str | None = None) -> None:
        super().__init__(message if message is not None else f"{fields[0]}: {problem}")
        self.problem = problem
        self.fields = fields


# Limits enforced on decode. Changing one is a protocol change: a node that
# sends what an older node rejects loses the whole packet or frame.
MAX_NAME_LEN = 128
"""Characters in a node name, service, instance id, owner, accuser, tag or meta key."""
MAX_HOST_LEN = 253
"""Characters in a host (member, ping-req target, entry address): the longest DNS name."""
MAX_LABEL_LEN = 63
"""Characters in one DNS label (RFC 1035): a registered service name or tag."""
MAX_PORT = 65535
"""TCP/UDP port range; 0 is allowed on the wire (an entry without a port), not at registration."""
MAX_META_PAIRS = 64
"""Pairs in a node's or an entry's metadata map."""
MAX_META_VALUE_LEN = 512
"""Characters in a metadata value (may be empty)."""
MAX_TAGS = 64
"""Tags on one entry; each tag is 1..MAX_NAME_LEN characters."""
MAX_WEIGHT = 65535
"""Load-balancing weight of an entry."""
MAX_OUTPUT_LEN = 256
"""Characters of health-check output carried with an entry or one of its checks (may be
empty); the check runner truncates longer outputs. Even so an entry with many checks
may not fit a packet: ``Protocol.register`` shortens outputs to fit (see there)."""
MAX_CHECKS = 32
"""Health checks carried with one entry."""

MIN_CHECK_INTERVAL = 0.1
"""Seconds between two runs of an HTTP or TCP check, at least; also the shortest TTL. A 1 ms
interval let 32 checks take 98 % of a core; at 100 ms they cost about 1 %."""
MIN_CHECK_TIMEOUT = 0.01
"""Seconds an HTTP or TCP check may take, at least: shorter could not even connect."""

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_HOST_NAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def is_name(value: object, limit: int = MAX_NAME_LEN) -> TypeGuard[str]:
    """A name or id: 1..limit printable characters, no '/' (the wire rule)."""
    return (
        type(value) is str and 0 < len(value) <= limit and value.isprintable() and "/" not in value
    )


def name_problem(value: object, limit: int = MAX_NAME_LEN) -> str | None:
    if is_name(value, limit):
        return None
    return (
        f"must be 1..{limit} printable characters without '/' or control characters, "
        f"got {_show(value)}"
    )


def label_problem(value: object) -> str | None:
    """None for a DNS label (RFC 1123), which service names and tags must be to register."""
    if isinstance(value, str) and _LABEL.fullmatch(value):
        return None
    return (
        f"must be a DNS label: 1..{MAX_LABEL_LEN} letters, digits or '-', "
        f"not starting or ending with '-', got {_show(value)}"
    )


def is_host(value: object) -> TypeGuard[str]:
    """An IP literal (IPv6 without brackets, scope id allowed) or an RFC 1123 host name."""
    if type(value) is not str or not 0 < len(value) <= MAX_HOST_LEN:
        return False
    if ":" not in value:  # IPv4 literals are host names as far as the pattern goes
        return _HOST_NAME.fullmatch(value) is not None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def host_problem(value: object) -> str | None:
    if is_host(value):
        return None
    return f"must be an IP address or a DNS host name, got {_show(value)}"


def port_problem(value: object, least: int = 1) -> str | None:
    # type() rather than isinstance(): JSON true is a bool, and a bool is an int.
    if type(value) is int and least <= value <= MAX_PORT:
        return None
    return f"must be an integer {least}..{MAX_PORT}, got {_show(value)}"


def duration_problem(value: object, minimum: float) -> str | None:
    """None for a number of seconds >= ``minimum`` (and finite)."""
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and minimum <= value < math.inf
        and value > 0
    ):
        return None
    return f"must be a duration of at least {minimum:g}s, got {_show(value)}"


def tags_problem(value: object) -> tuple[str, str] | None:
    """Where in ``value`` and why it cannot be an instance's tags (DNS labels), or None.

    The place is relative to the field: ``""`` for the list, ``"[2]"`` for one
    tag; each caller puts its own path in front (``tags``, ``nodes[0].tags``).
    """
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return "", f"must be a list of at most {MAX_TAGS} strings, got {_show(value)}"
    if len(value) > MAX_TAGS:
        return "", f"must be a list of at most {MAX_TAGS} strings, got {len(value)}"
    for i, tag in enumerate(value):
        problem = label_problem(tag)
        if problem is not None:
            return f"[{i}]", problem
    return None


def meta_problem(value: object) -> tuple[str, str] | None:
    """Where in ``value`` and why it cannot be metadata (an instance's or a node's), or None.

    The place is relative, as in ``tags_problem``: ``""`` or ``".zone"``; a bad key
    is reported at the table (shown escaped in the problem), never put in the path.
    """
    if not isinstance(value, Mapping):
        return "", f"must be a map of string keys to string values, got {_show(value)}"
    if len(value) > MAX_META_PAIRS:
        return "", f"at most {MAX_META_PAIRS} pairs, got {len(value)}"
    for key, item in value.items():
        problem = name_problem(key)
        if problem is not None:
            return "", f"keys {problem}"
        if not isinstance(item, str) or len(item) > MAX_META_VALUE_LEN:
            return f".{key}", (
                f"must be a string of at most {MAX_META_VALUE_LEN} characters, got {_show(item)}"
            )
    return None


_TOKEN = re.compile(r"[\x21-\x7e]{1,512}")


def token_problem(value: object) -> str | None:
    """Why ``value`` cannot be a token, or None. Tokens travel in a header: visible ASCII only."""
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return None
    return "must be 1..512 visible ASCII characters (no spaces)"


def _show(value: object) -> str:
    """A value for a message: its repr, cut short (it came from a client and may be huge)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
