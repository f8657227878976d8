"""cluster.toml: [limits], tokens (inline or from a file) and TLS files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gossip_registry.core.limits import Limits
from gossip_registry.errors import ConfigError
from tests.unit.test_config import cluster_text, load_text


def test_limits_apply_to_every_node_and_durations_take_units(tmp_path: Path) -> None:
    text = cluster_text() + '[limits]\nmax_members = 100\nmax_clock_skew = "2m"\n'
    cluster = load_text(tmp_path, text)
    expected = Limits(max_members=100, max_clock_skew=120.0)
    assert [n.protocol.limits for n in cluster.nodes] == [expected, expected]


def test_without_a_limits_table_the_defaults_hold(tmp_path: Path) -> None:
    cluster = load_text(tmp_path, cluster_text())
    assert all(n.protocol.limits == Limits() for n in cluster.nodes)


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ("max_member = 5", "limits.max_member", "did you mean 'max_members'"),
        ("max_members = 0", "limits.max_members", "positive"),
        ('max_members = "5"', "limits.max_members", "integer"),
        ("max_clock_skew = 60", "limits.max_clock_skew", "duration"),
        ("max_packet_bytes = 100", "limits.max_packet_bytes", "512"),
    ],
)
def test_a_bad_limit_names_its_key(tmp_path: Path, body: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, cluster_text() + f"[limits]\n{body}\n")
    assert key in str(caught.value)
    assert problem in str(caught.value)


def test_tokens_come_from_defaults_or_the_node_and_stay_out_of_repr(tmp_path: Path) -> None:
    text = cluster_text(defaults='read_token = "r1"\nwrite_token = "w1"', b='write_token = "w2"')
    a, b = load_text(tmp_path, text).nodes
    assert (a.read_token, a.write_token) == ("r1", "w1")
    assert (b.read_token, b.write_token) == ("r1", "w2")
    assert "w1" not in repr(a)
    assert "r1" not in repr(a)


def test_a_nodes_own_token_overrides_either_form_in_defaults(tmp_path: Path) -> None:
    (tmp_path / "write.token").write_text("from-file")
    text = cluster_text(defaults='write_token_file = "write.token"', a='write_token = "own"')
    a, b = load_text(tmp_path, text).nodes
    assert (a.write_token, b.write_token) == ("own", "from-file")


def test_a_token_file_is_read_relative_to_the_cluster_file(tmp_path: Path) -> None:
    (tmp_path / "write.token").write_text("s3cret\n")
    cluster = load_text(tmp_path, cluster_text(defaults='write_token_file = "write.token"'))
    assert {n.write_token for n in cluster.nodes} == {"s3cret"}


@pytest.mark.parametrize(
    ("defaults", "node", "key", "problem"),
    [
        ('write_token = "has space"', "", "defaults.write_token", "visible ASCII"),
        ('read_token_file = "missing"', "", "defaults.read_token_file", "cannot read"),
        ('write_token = "a"\nwrite_token_file = "f"', "", "defaults.write_token_file", "not both"),
        ('tls_cert = "c.pem"', "", "nodes[0].tls_key", "go together"),
    ],
)
def test_bad_access_settings_name_their_key(
    tmp_path: Path, defaults: str, node: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, cluster_text(defaults=defaults, a=node))
    assert key in str(caught.value)
    assert problem in str(caught.value)


def test_tls_files_are_paths_relative_to_the_cluster_file(tmp_path: Path) -> None:
    text = cluster_text(a='tls_cert = "tls/c.pem"\ntls_key = "tls/k.pem"')
    a, b = load_text(tmp_path, text).nodes
    assert (a.tls_cert, a.tls_key) == (tmp_path / "tls/c.pem", tmp_path / "tls/k.pem")
    assert b.tls_cert is None
