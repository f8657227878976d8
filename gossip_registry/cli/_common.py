"""What the subcommands share: error exits, address formatting, tables, config lookup.

Rules: this module and every ``cli`` module import only the standard
library and click at import time. Anything heavier (trio, httpx, the node,
the simulator) is imported inside the command that needs it, so that an
idle ``agent`` process carries only what a node uses (its RSS budget is
about 48 MiB) and ``--help`` stays instant.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from gossip_registry.config.cluster_file import ClusterConfig

DEFAULT_CONFIG = Path("cluster.toml")
"""Looked for in the working directory when no --config is given."""
DEFAULT_HTTP = ("127.0.0.1", 8501)
"""The first node of the shipped cluster.toml, when there is no cluster.toml at hand."""


class Failure(click.ClickException):
    """A failure reported as one line on stderr (``Error: ...``), exit status 1.

    Used for "the world said no": a node that cannot be reached, an API
    error, a port in use. Raised instead of ``sys.exit`` so that click's
    test runner sees the same output and status a shell does.
    """

    exit_code = 1


class ConfigFailure(Failure):
    """Invalid configuration (file or flags): exit status 2, like a usage error."""

    exit_code = 2


def load_config(path: Path) -> ClusterConfig:
    """``load_cluster(path)``, with its ConfigError turned into one line and exit status 2."""
    from gossip_registry.config.cluster_file import ConfigError, load_cluster

    try:
        return load_cluster(path)
    except ConfigError as exc:
        raise ConfigFailure(str(exc)) from None


def format_address(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals bracketed so the result parses back."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_http(text: str) -> tuple[str | None, str]:
    """``("https", "host:port")`` from ``https://host:port/``; the scheme is None for HOST:PORT.

    Every ``--http`` takes both forms, so the URL the client library wants
    can be pasted into the CLI and back.

    Raises:
        click.BadParameter: a scheme other than http or https, or a path after the port.
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        return None, text
    if scheme.lower() not in ("http", "https"):
        raise click.BadParameter(f"expected HOST:PORT or http(s)://HOST:PORT, got {text!r}")
    address = rest.removesuffix("/")
    if "/" in address:
        raise click.BadParameter(f"expected no path after the port, got {text!r}")
    return scheme.lower(), address


def connect_host(host: str) -> str:
    """Where to connect for a server bound to ``host``: a wildcard means this machine."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.is_unspecified:
        return "::1" if ip.version == 6 else "127.0.0.1"
    return host


def base_url(host: str, port: int) -> str:
    return f"http://{format_address(connect_host(host), port)}"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Columns two spaces apart, numbers right-aligned, None shown as ``-``; no trailing blanks."""
    cells = [list(headers)] + [["-" if c is None else str(c) for c in row] for row in rows]
    numeric = [
        any(row[i] is not None for row in rows)
        and all(row[i] is None or isinstance(row[i], int | float) for row in rows)
        for i in range(len(headers))
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return lines


def echo_lines(lines: Sequence[str], file: IO[str] | None = None) -> None:
    for line in lines:
        click.echo(line, file=file)


def format_pairs(mapping: dict[str, Any]) -> str:
    """``k=v,k2=v2`` (sorted), or ``-`` for nothing: one table cell."""
    if not mapping:
        return "-"
    return ",".join(f"{k}={v}" for k, v in sorted(mapping.items()))
