"""``gossip-registry keygen`` and ``keys``; the agent's gossip-encryption flags.

Theory of operation: ``keygen`` prints a fresh base64 key and needs no
node. ``keys list|install|use|remove`` asks one node's HTTP API, which runs
the operation on itself and on every member it knows alive and reports per
node; this command prints one line per node and exits 1 if any node failed,
so a rotation script stops at the step that did not reach everyone.

Rotation, each step only once the previous one succeeded everywhere::

    gossip-registry keys install NEW    # every node can open NEW
    gossip-registry keys use NEW        # every node seals with NEW
    gossip-registry keys remove OLD     # OLD opens nothing any more
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gossip_registry.cli._common import ConfigFailure, Failure, echo_lines, render_table
from gossip_registry.cli.client import Api, client_command

if TYPE_CHECKING:
    from gossip_registry.config.node import NodeConfig

OPS = ("list", "install", "use", "remove")


@click.command()
def keygen() -> None:
    """Print a fresh random gossip key (32 bytes, base64) for --encrypt or `keys install`."""
    from gossip_registry.crypto.keyring import encode_key, generate_key

    click.echo(encode_key(generate_key()))


@client_command
@click.argument("op", type=click.Choice(OPS))
@click.argument("key", required=False)
def keys(api: Api, as_json: bool, op: str, key: str | None) -> None:
    """List, install, use (make primary) or remove a gossip key on every node.

    \b
    Rotate:  keys install NEW; keys use NEW; keys remove OLD
    Keys are shown as fingerprints (first 16 hex digits of their SHA-256),
    the primary marked with *.
    """
    if (op == "list") != (key is None):
        raise click.UsageError("list takes no KEY" if op == "list" else f"{op} needs a KEY")
    if op == "list":
        body = api.call("GET", "/v1/keyring")
    else:
        body = api.call("POST", f"/v1/keyring/{op}", json={"key": key})
    if as_json:
        click.echo(json.dumps(body, indent=2, sort_keys=True))
    else:
        echo_lines(render_table(["NODE", "RESULT", "KEYS"], _rows(body["nodes"])))
    if body.get("failed"):
        raise Failure(f"{op} failed on {body['failed']} of {len(body['nodes'])} nodes")


def _rows(nodes: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for name, result in nodes.items():
        keys = [f"*{k}" if k == result["primary"] else k for k in result["keys"]]
        outcome = "ok" if result["ok"] else f"error: {result['error']}"
        rows.append([name, outcome, " ".join(keys) or "-"])
    return rows


def gossip_key_options(command: click.Command) -> click.Command:
    """Add the agent's gossip-encryption flags (config-less form; cluster.toml has the same)."""
    command.params.extend(
        [
            click.Option(
                ["--encrypt"],
                envvar="GOSSIP_REGISTRY_ENCRYPT",
                metavar="KEY",
                help="Gossip key (base64, from keygen; env GOSSIP_REGISTRY_ENCRYPT, "
                "from a secret: flags show in ps).",
            ),
            click.Option(
                ["--keyring", "keyring_file"],
                envvar="GOSSIP_REGISTRY_KEYRING",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Keyring file (JSON list of base64 keys, primary first, mode 0600).",
            ),
            click.Option(
                ["--gossip-allow-plaintext"],
                is_flag=True,
                default=None,
                help="Also accept unsealed gossip (migration only).",
            ),
            click.Option(
                ["--gossip-encrypt-outgoing/--no-gossip-encrypt-outgoing"],
                default=None,
                help="Seal what this node sends.  [default: on]",
            ),
        ]
    )
    return command


def apply_gossip_keys(config: NodeConfig, from_file: bool, flags: dict[str, Any]) -> NodeConfig:
    """``config`` with the gossip-encryption flags applied.

    Raises:
        click.UsageError: a flag given together with --config (the file sets these).
        ConfigFailure: an invalid key or keyring file.
    """
    from gossip_registry.crypto.keyring import KeyringError
    from gossip_registry.crypto.keyring_file import configured_keyring

    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return config
    if from_file:
        name = next(iter(given))
        flag = "--keyring" if name == "keyring_file" else "--" + name.replace("_", "-")
        raise click.UsageError(
            f"{flag} cannot be combined with --config/--node: set it in the file"
        )
    try:
        keyring = configured_keyring(given.get("encrypt"), given.get("keyring_file"))
    except KeyringError as exc:
        raise ConfigFailure(f"--encrypt/--keyring: {exc}") from None
    return replace(
        config,
        keyring=keyring,
        gossip_allow_plaintext=bool(given.get("gossip_allow_plaintext", False)),
        gossip_encrypt_outgoing=given.get("gossip_encrypt_outgoing", True),
    )
