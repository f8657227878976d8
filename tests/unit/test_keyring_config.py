"""Where keys come from: the keyring file (0600), cluster.toml, and the agent's flags."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from gossip_registry.cli import cli
from gossip_registry.crypto.keyring import Keyring, KeyringError, encode_key
from gossip_registry.crypto.keyring_file import (
    configured_keyring,
    keyring_path,
    load_keyring_file,
    node_keyring,
    write_keyring_file,
)
from gossip_registry.errors import ConfigError
from tests.unit.test_config import cluster_text, load_text

A, B = bytes([1]) * 32, bytes([2]) * 32


def test_the_keyring_file_is_written_owner_only_and_reads_back(tmp_path: Path) -> None:
    path = keyring_path(tmp_path / "data")
    write_keyring_file(path, Keyring([B, A]))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == [encode_key(B), encode_key(A)]
    assert load_keyring_file(path) == Keyring([B, A])


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_keyring_file_others_may_read_is_refused_saying_how_to_fix_it(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "keyring.json"
    write_keyring_file(path, Keyring([A]))
    path.chmod(mode)
    with pytest.raises(KeyringError, match=f"mode {mode:04o}.*chmod 600"):
        load_keyring_file(path)


@pytest.mark.parametrize("target", ["/etc/passwd", "real-keyring"])
def test_a_symlinked_keyring_file_is_refused_without_advising_chmod_on_its_target(
    tmp_path: Path, target: str
) -> None:
    if target == "real-keyring":
        write_keyring_file(tmp_path / "real.json", Keyring([A]))
        target = str(tmp_path / "real.json")
    path = tmp_path / "keyring.json"
    path.symlink_to(target)
    with pytest.raises(KeyringError) as refused:
        node_keyring(None, tmp_path)
    assert "symbolic link" in str(refused.value)
    assert "chmod" not in str(refused.value)


def test_a_keyring_file_that_is_a_fifo_or_too_large_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(KeyringError, match="a FIFO, not a regular file"):
        load_keyring_file(fifo)
    big = tmp_path / "big.json"
    big.write_text(" " * (64 * 1024 + 1))
    big.chmod(0o600)
    with pytest.raises(KeyringError, match="larger than"):
        load_keyring_file(big)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{", "not valid JSON"),
        ('{"keys": []}', "JSON list of base64 keys"),
        ("[]", "at least one key"),
        ('["c2hvcnQ="]', "32 bytes"),
    ],
)
def test_a_malformed_keyring_file_is_refused_naming_the_file(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "keyring.json"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeyringError, match=problem) as raised:
        load_keyring_file(path)
    assert str(path) in str(raised.value)


def test_the_data_dirs_keyring_file_wins_over_configured_keys(tmp_path: Path) -> None:
    assert node_keyring(Keyring([A]), tmp_path) == Keyring([A])  # no file yet: the config
    write_keyring_file(keyring_path(tmp_path), Keyring([B, A]))
    assert node_keyring(Keyring([A]), tmp_path) == Keyring([B, A])
    assert node_keyring(None, tmp_path) == Keyring([B, A])
    assert node_keyring(None, None) is None


def test_a_key_or_a_keyring_file_not_both() -> None:
    with pytest.raises(KeyringError, match="not both"):
        configured_keyring(encode_key(A), Path("k.json"))
    assert configured_keyring(encode_key(A), None) == Keyring([A])


# --- cluster.toml --------------------------------------------------------------------


def test_cluster_toml_encrypt_in_defaults_gives_every_node_the_key(tmp_path: Path) -> None:
    text = cluster_text(defaults=f'encrypt = "{encode_key(A)}"', b="gossip_allow_plaintext = true")
    a, b = load_text(tmp_path, text).nodes
    assert a.keyring == b.keyring == Keyring([A])
    assert (a.gossip_allow_plaintext, b.gossip_allow_plaintext) == (False, True)
    assert a.gossip_encrypt_outgoing


def test_a_nodes_own_keyring_file_overrides_the_key_in_defaults(tmp_path: Path) -> None:
    write_keyring_file(tmp_path / "keys.json", Keyring([B]))
    text = cluster_text(defaults=f'encrypt = "{encode_key(A)}"', b='keyring_file = "keys.json"')
    a, b = load_text(tmp_path, text).nodes
    assert (a.keyring, b.keyring) == (Keyring([A]), Keyring([B]))


def test_cluster_toml_keyring_file_is_relative_to_the_file(tmp_path: Path) -> None:
    write_keyring_file(tmp_path / "keys.json", Keyring([B, A]))
    a, _ = load_text(tmp_path, cluster_text(defaults='keyring_file = "keys.json"')).nodes
    assert a.keyring == Keyring([B, A])


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (cluster_text(defaults='encrypt = "abc"'), "defaults.encrypt", "base64"),
        (cluster_text(a="encrypt = 5"), "nodes[0].encrypt", "base64 key string"),
        (cluster_text(a='keyring_file = "missing.json"'), "nodes[0].keyring_file", "cannot read"),
        (
            cluster_text(a='gossip_allow_plaintext = "yes"'),
            "nodes[0].gossip_allow_plaintext",
            "true or",
        ),
        (cluster_text(a="seal_overhead = 29"), "nodes[0].seal_overhead", "unknown key"),
    ],
)
def test_cluster_toml_key_errors_name_the_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        load_text(tmp_path, text)
    assert key in str(raised.value)


# --- The CLI -------------------------------------------------------------------------


def test_keys_needs_a_key_except_for_list() -> None:
    result = CliRunner().invoke(cli, ["keys", "install", "--http", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert "install needs a KEY" in result.output


def test_agent_refuses_a_bad_key_and_encrypt_flags_with_a_cluster_file(tmp_path: Path) -> None:
    bad = CliRunner().invoke(cli, ["agent", "--name", "x", "--encrypt", "abc"])
    assert bad.exit_code == 2
    assert "--encrypt/--keyring" in bad.output
    assert "base64" in bad.output
    path = tmp_path / "cluster.toml"
    path.write_text(cluster_text())
    mixed = CliRunner().invoke(
        cli, ["agent", "-c", str(path), "--node", "a", "--encrypt", encode_key(A)]
    )
    assert mixed.exit_code == 2
    assert "--encrypt cannot be combined with --config" in mixed.output
