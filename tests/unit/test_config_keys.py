"""cluster.toml's keys come from NodeConfig: no field is forgotten, no key set drifts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pytest

from gossip_registry.config.cluster_file import KEYS_BY_FIELD, NOT_IN_CLUSTER_FILE
from gossip_registry.config.node import NodeConfig
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.limits import Limits
from gossip_registry.errors import ConfigError
from gossip_registry.registry.preservation import PreservationConfig
from gossip_registry.registry.schema import FieldError
from tests.unit.test_config import cluster_text, load_text

NODE_ONLY = {"name", "gossip_port", "http_port", "dns_port", "advertise", "data_dir"}
IN_EVERY_NODE = {"name", "gossip_port", "http_port"}
"""Keys cluster_text already gives each node (a second one is a TOML error)."""


def load_error(tmp_path: Path, text: str) -> str:
    """The ConfigError's message for ``text``, or "" if it loads."""
    try:
        load_text(tmp_path, text)
    except ConfigError as exc:
        return str(exc)
    return ""


def test_every_node_config_field_is_set_by_cluster_toml_or_excluded_with_a_reason() -> None:
    for f in fields(NodeConfig):
        keys = KEYS_BY_FIELD.get(f.name, ())
        reason = NOT_IN_CLUSTER_FILE.get(f.name, "")
        assert bool(keys) != bool(reason), f"NodeConfig.{f.name}: keys {keys}, reason {reason!r}"


def test_every_key_a_field_is_set_by_is_accepted_where_it_belongs(tmp_path: Path) -> None:
    # An unknown key fails before its value is parsed, with "unknown key": any other
    # outcome (loaded, or the value refused) shows the key is accepted there.
    for keys in KEYS_BY_FIELD.values():
        for key in keys:
            if key.startswith("[") or key in IN_EVERY_NODE:
                continue  # set by another table ([cluster] name), or present already
            table = "a" if key in NODE_ONLY else "defaults"
            error = load_error(tmp_path, cluster_text(**{table: f"{key} = {{x = 1}}"}))
            assert "unknown key" not in error, key


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ('tcp_timeout = "3s"', "tcp_timeout", 3.0),
        ("max_checks_per_node = 5", "max_checks_per_node", 5),
        ('sync_timeout = "250ms"', "sync_timeout", 0.25),
        ("sync_required = true", "sync_required", True),
    ],
)
def test_node_settings_cluster_toml_used_to_refuse_are_read_and_layered(
    tmp_path: Path, line: str, field: str, value: object
) -> None:
    a, b = load_text(tmp_path, cluster_text(defaults=line)).nodes

    assert getattr(a, field) == getattr(b, field) == value


def test_a_misspelt_tcp_timeout_is_pointed_at_tcp_timeout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'tcp_timeout'"):
        load_text(tmp_path, cluster_text(b='tcp_timout = "3s"'))


def test_max_checks_per_node_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nodes\[1\]\.max_checks_per_node: must be an integer"):
        load_text(tmp_path, cluster_text(b="max_checks_per_node = 0"))


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: ProtocolConfig(probe_timeout=2.0, probe_interval=1.0), "probe_timeout"),
        (lambda: ProtocolConfig(packet_size=100), "packet_size"),
        (lambda: ProtocolConfig(gossip_interval=-1.0), "gossip_interval"),
        (lambda: Limits(max_packet_bytes=100), "max_packet_bytes"),
        (lambda: PreservationConfig(window=0.5), "window"),
    ],
)
def test_a_refused_setting_names_its_field_in_the_exception_not_only_the_message(
    build: Callable[[], object], expected: str
) -> None:
    with pytest.raises(FieldError) as info:
        build()

    assert info.value.fields[0] == expected


def test_a_setting_refused_for_its_relation_to_another_is_reported_where_it_was_set(
    tmp_path: Path,
) -> None:
    # lan's probe_timeout is 500ms: the node's probe_interval is the key at fault.
    message = load_error(tmp_path, cluster_text(b='probe_interval = "100ms"'))

    assert ": nodes[1].probe_interval: " in message
