"""The ``gossip-registry`` command: run nodes, run a local cluster, talk to a node, simulate.

Theory of operation: one click group with a module per concern:

- ``agent``: one node in this process (``cli/agent.py``);
- ``up``: every node of a cluster file as its own process, with a live
  status table (``cli/up.py``);
- ``members``, ``services``, ``register``, ``deregister``, ``status``, ``force-leave``,
  ``check``, ``maintenance``:
  clients of a node's HTTP API (``cli/client.py``);
- ``monitor``: a node's event stream, as it happens (``cli/monitor.py``);
- ``render``: files rendered from the registry, kept current (``cli/render.py``);
- ``simulate``: the deterministic simulator at any size (``cli/simulate.py``);
- ``keygen``, ``keys``: gossip keys and their rotation (``cli/keys.py``);
- ``version``.

Modules import only click and the standard library at import time (see
``cli/_common.py``): the command an agent runs must not pay, in start-up
time or in resident memory, for the commands it does not run.
"""

from __future__ import annotations

import importlib

import click

__all__ = ["cli", "main"]

PROG = "gossip-registry"

COMMANDS = {
    "agent": "agent:agent",
    "up": "up:up",
    "members": "client:members",
    "services": "client:services",
    "register": "client:register",
    "deregister": "client:deregister",
    "status": "client:status",
    "simulate": "simulate:simulate",
    "check": "client:check",  # health checks: TTL reports
    "maintenance": "client:maintenance",  # take an instance or the node out of discovery
    "force-leave": "client:force_leave",
    "monitor": "monitor:monitor",
    "render": "render:render",  # templates kept current (cli/render.py)
    "keygen": "keys:keygen",  # gossip encryption (cli/keys.py)
    "keys": "keys:keys",
}
"""Each command's ``module:attribute`` under ``gossip_registry.cli``, imported when it runs."""


class _LazyGroup(click.Group):
    """A group that imports a command's module only when that command is looked up.

    click's documented pattern for lazily loaded subcommands: an agent then
    does not import the client, ``up`` or the simulator (about 1 MiB and
    subprocess, shutil and the compressors behind them).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = COMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(f"gossip_registry.cli.{module}"), attribute)
        assert isinstance(command, click.Command), cmd_name
        return command


def package_version() -> str:
    """The installed distribution's version; "unknown" when running from an uninstalled tree."""
    from importlib import metadata  # ~4 MiB and 40 ms: only when a version is asked for

    try:
        return metadata.version(PROG)
    except metadata.PackageNotFoundError:
        return "unknown"


def _print_version(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    """``--version``, computed only when asked (click's version_option wants it up front)."""
    if value and not ctx.resilient_parsing:
        click.echo(f"{PROG}, version {package_version()}")
        ctx.exit()


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-V",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
def cli() -> None:
    """Service discovery on a SWIM gossip cluster: every node holds the whole registry.

    \b
    Start a local cluster from ./cluster.toml:   gossip-registry up
    Ask a node what it knows:                   gossip-registry members | services | status
    Register an instance:                       gossip-registry register web --port 8080
    Try the protocol at scale, in virtual time: gossip-registry simulate --nodes 1000
    """


@cli.command()
def version() -> None:
    """Print the version, the wire protocol version, and the Python and trio versions."""
    import platform
    from importlib import metadata

    from gossip_registry.core.messages import PROTOCOL_VERSION

    try:
        trio_version = metadata.version("trio")
    except metadata.PackageNotFoundError:
        trio_version = "unknown"
    click.echo(
        f"{PROG} {package_version()} (wire protocol {PROTOCOL_VERSION}, "
        f"python {platform.python_version()}, trio {trio_version})"
    )


def main() -> None:
    """Console-script entry point (``gossip-registry``) and ``python -m gossip_registry``."""
    cli(prog_name=PROG)
