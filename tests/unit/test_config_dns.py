"""cluster.toml's DNS settings: dns_port per node, dns_domain and dns_ttl shared, clashes named."""

from __future__ import annotations

from pathlib import Path

import pytest

from gossip_registry.errors import ConfigError
from tests.unit.test_config import cluster_text, load_text


def test_dns_is_off_without_dns_port_and_settings_layer_like_others(tmp_path: Path) -> None:
    cluster = load_text(
        tmp_path,
        cluster_text(
            defaults='dns_domain = "sd.example."\ndns_ttl = "2s"',
            a='dns_port = 8600\ndns_ttl = "0s"',
            b='host = "127.0.0.2"',
        ),
    )
    a, b = cluster.nodes

    assert (a.dns, a.dns_domain, a.dns_ttl) == (("127.0.0.1", 8600), "sd.example.", 0.0)
    assert (b.dns, b.dns_ttl) == (None, 2.0)
    assert cluster.dns_addresses == {"a": ("127.0.0.1", 8600)}


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        pytest.param(
            cluster_text(a="dns_port = 7000"), "nodes[0].dns_port", "gossip_port", id="own-gossip"
        ),
        pytest.param(
            cluster_text(a="dns_port = 8000"), "nodes[0].dns_port", "http_port", id="own-http"
        ),
        pytest.param(
            cluster_text(a="dns_port = 8600", b="dns_port = 8600"),
            "nodes[1].dns_port",
            "nodes[0] (a) dns_port",
            id="other-node-dns",
        ),
        pytest.param(
            cluster_text(b="dns_port = 7000"),
            "nodes[1].dns_port",
            "nodes[0] (a) gossip_port",
            id="other-gossip",
        ),
        pytest.param(
            cluster_text(a="dns_port = 0"), "nodes[0].dns_port", "1..65535", id="port-zero"
        ),
        pytest.param(
            cluster_text(defaults="dns_port = 8600"),
            "defaults.dns_port",
            "[[nodes]]",
            id="in-defaults",
        ),
        pytest.param(
            cluster_text(defaults='dns_domain = "."'),
            "defaults.dns_domain",
            "DNS domain",
            id="root",
        ),
        pytest.param(
            cluster_text(a='dns_domain = "a b"'), "nodes[0].dns_domain", "DNS domain", id="spaces"
        ),
        pytest.param(cluster_text(a="dns_ttl = 5"), "nodes[0].dns_ttl", "duration", id="ttl-bare"),
        pytest.param(
            cluster_text(a='dns_ttl = "2d"'), "nodes[0].dns_ttl", "duration", id="ttl-unit"
        ),
        pytest.param(
            cluster_text(a='dns_ttl = "25h"'), "nodes[0].dns_ttl", "at most 24h", id="ttl-long"
        ),
    ],
)
def test_bad_dns_settings_name_the_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)

    assert info.value.key == key
    assert fragment in str(info.value)
