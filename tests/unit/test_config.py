"""cluster.toml loading: the shipped file, layering, and errors that name file and key."""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path

import pytest

from gossip_registry.config.cluster_file import ClusterConfig, load_cluster
from gossip_registry.config.values import parse_address, parse_duration
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.errors import ConfigError
from gossip_registry.registry.preservation import PreservationConfig

REPO = Path(__file__).resolve().parents[2]
FILE_NAME = "bad-cluster.toml"

TWO_NODES = """
[cluster]
name = "t"
[defaults]
{defaults}
[[nodes]]
name = "a"
gossip_port = 7000
http_port = 8000
{a}
[[nodes]]
name = "b"
gossip_port = 7001
http_port = 8001
{b}
"""


def cluster_text(defaults: str = "", a: str = "", b: str = "") -> str:
    return TWO_NODES.format(defaults=defaults, a=a, b=b)


def load_text(tmp_path: Path, text: str, name: str = "cluster.toml") -> ClusterConfig:
    path = tmp_path / name
    path.write_text(text)
    return load_cluster(path)


# --- The shipped file ---------------------------------------------------------


def test_shipped_cluster_toml_listens_on_loopback_only_each_node_on_ports_of_its_own() -> None:
    cluster = load_cluster(REPO / "cluster.toml")

    listening = [a for n in cluster.nodes for a in (n.bind, n.http, n.dns) if a is not None]
    assert all(ipaddress.ip_address(host).is_loopback for host, _ in listening)
    assert len({port for _, port in listening}) == len(listening)
    assert all(n.http is not None for n in cluster.nodes)  # the client commands ask any node
    assert {(n.cluster, n.protocol) for n in cluster.nodes} == {(cluster.name, ProtocolConfig())}


def test_shipped_nodes_join_through_node1_and_keep_data_under_data() -> None:
    cluster = load_cluster(REPO / "cluster.toml")

    assert cluster.node("node1").seeds == ()
    for node in cluster.nodes[1:]:
        assert node.seeds == (("127.0.0.1", 7946),)
        assert node.data_dir == REPO / "data" / node.name
    assert cluster.node("node1").data_dir == REPO / "data" / "node1"


def test_unknown_node_name_lists_the_names_there_are() -> None:
    cluster = load_cluster(REPO / "cluster.toml")

    with pytest.raises(KeyError, match="node1, node2, node3, node4, node5"):
        cluster.node("node9")


# --- Layering -------------------------------------------------------------------


def test_node_values_override_defaults_and_meta_merges_key_by_key(tmp_path: Path) -> None:
    cluster = load_text(
        tmp_path,
        cluster_text(
            defaults='probe_interval = "2s"\nmeta = {zone = "z1", rack = "r1"}',
            b='probe_interval = "3s"\nmeta = {rack = "r2"}\nhost = "127.0.0.2"',
        ),
    )
    a, b = cluster.nodes

    assert a.protocol.probe_interval == 2.0
    assert b.protocol.probe_interval == 3.0
    assert dict(a.meta) == {"zone": "z1", "rack": "r1"}
    assert dict(b.meta) == {"zone": "z1", "rack": "r2"}
    assert b.bind == ("127.0.0.2", 7001)
    assert b.http == ("127.0.0.2", 8001)


def test_profile_selects_a_preset_and_fields_apply_on_top(tmp_path: Path) -> None:
    cluster = load_text(
        tmp_path,
        cluster_text(defaults='profile = "wan"', b='profile = "local"\nindirect_checks = 5'),
    )
    a, b = cluster.nodes

    assert a.protocol == ProtocolConfig.wan()
    assert b.protocol == ProtocolConfig.local().with_(indirect_checks=5)


def test_settings_valid_together_are_accepted_though_defaults_alone_are_not(
    tmp_path: Path,
) -> None:
    # lan's probe_timeout is 0.5 s: defaults alone would make it exceed the interval.
    cluster = load_text(
        tmp_path, cluster_text(defaults='probe_interval = "300ms"\nprobe_timeout = "100ms"')
    )

    assert cluster.nodes[0].protocol.probe_interval == pytest.approx(0.3)


def test_explicit_seeds_replace_the_default_and_omit_the_node_itself(tmp_path: Path) -> None:
    cluster = load_text(
        tmp_path,
        cluster_text(
            defaults='seeds = ["127.0.0.1:7000", "127.0.0.1:7001", "[::1]:7002"]',
        ),
    )
    a, b = cluster.nodes

    assert a.seeds == (("127.0.0.1", 7001), ("::1", 7002))
    assert b.seeds == (("127.0.0.1", 7000), ("::1", 7002))


def test_an_empty_seeds_list_means_no_seeds(tmp_path: Path) -> None:
    cluster = load_text(tmp_path, cluster_text(b="seeds = []"))

    assert cluster.nodes[1].seeds == ()


def test_seeds_may_be_dns_names_retried_until_retry_join_timeout(tmp_path: Path) -> None:
    defaults = 'seeds = ["registry-seeds.default.svc:7946"]\nretry_join_timeout = "5m"'
    cluster = load_text(tmp_path, cluster_text(defaults=defaults))

    assert cluster.nodes[1].seeds == (("registry-seeds.default.svc", 7946),)
    assert cluster.nodes[1].protocol.retry_join_timeout == 300.0


def test_default_seed_is_the_first_nodes_advertised_address(tmp_path: Path) -> None:
    cluster = load_text(
        tmp_path, cluster_text(defaults='host = "0.0.0.0"', a='advertise = "10.0.0.5"', b="")
    )

    assert cluster.nodes[0].advertise == ("10.0.0.5", 7000)
    assert cluster.nodes[1].seeds == (("10.0.0.5", 7000),)


def test_data_paths_are_relative_to_the_file_not_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    cluster = load_text(
        tmp_path,
        cluster_text(defaults='data_root = "state"', b='data_dir = "/srv/b"'),
        name="conf/cluster.toml",
    )

    assert cluster.nodes[0].data_dir == tmp_path / "conf" / "state" / "a"
    assert cluster.nodes[1].data_dir == Path("/srv/b")


def test_without_data_root_a_node_keeps_no_data(tmp_path: Path) -> None:
    cluster = load_text(tmp_path, cluster_text())

    assert cluster.nodes[0].data_dir is None


def test_same_ports_on_different_hosts_do_not_clash(tmp_path: Path) -> None:
    cluster = load_text(
        tmp_path,
        cluster_text(b='host = "127.0.0.2"').replace("7001", "7000").replace("8001", "8000"),
    )

    assert cluster.nodes[1].bind == ("127.0.0.2", 7000)


def test_leave_timeout_and_http_port_are_optional(tmp_path: Path) -> None:
    text = cluster_text(defaults='leave_timeout = "500ms"').replace("http_port = 8001\n", "")
    cluster = load_text(tmp_path, text)

    assert cluster.nodes[0].leave_timeout == 0.5
    assert cluster.nodes[1].http is None
    assert cluster.http_addresses == {"a": ("127.0.0.1", 8000)}


def test_watch_and_self_preservation_keys_layer_like_the_others(tmp_path: Path) -> None:
    defaults = 'max_waiters = 100\nself_preservation_window = "1m"'
    b = 'self_preservation_threshold = 0.5\nself_preservation_max_duration = "5m"'
    a_config, b_config = load_text(tmp_path, cluster_text(defaults=defaults, b=b)).nodes

    assert (a_config.max_waiters, b_config.max_waiters) == (100, 100)
    assert a_config.self_preservation == PreservationConfig(window=60.0)
    assert b_config.self_preservation == PreservationConfig(
        threshold=0.5, window=60.0, max_duration=300.0
    )


def test_interface_limits_layer_like_the_others(tmp_path: Path) -> None:
    defaults = (
        'max_http_connections = 50\nhttp_body_timeout = "2s"\nmax_dns_tcp_connections = 4\n'
        "dns_rate_limit = 0\ndns_trusted_networks = []"
    )
    b = 'dns_rate_limit = 7\ndns_trusted_networks = ["10.0.0.0/8", "::1/128"]'
    a_config, b_config = load_text(tmp_path, cluster_text(defaults=defaults, b=b)).nodes

    assert (a_config.max_http_connections, a_config.http_body_timeout) == (50, 2.0)
    assert a_config.max_dns_tcp_connections == 4
    assert (a_config.dns_rate_limit, a_config.dns_trusted_networks) == (0, ())
    assert (b_config.dns_rate_limit, b_config.dns_trusted_networks) == (
        7,
        ("10.0.0.0/8", "::1/128"),
    )


# --- Every mistake names the file and the key -------------------------------------

BAD_CONFIGS: list[tuple[str, str, str, str]] = [
    # (id, toml text, key path expected in the message, another fragment expected)
    ("port-not-int", cluster_text().replace("7001", '"abc"'), "nodes[1].gossip_port", "1..65535"),
    ("port-zero", cluster_text().replace("7001", "0"), "nodes[1].gossip_port", "got 0"),
    ("port-too-big", cluster_text().replace("8001", "70000"), "nodes[1].http_port", "70000"),
    ("port-bool", cluster_text().replace("7001", "true"), "nodes[1].gossip_port", "True"),
    (
        "port-missing",
        cluster_text().replace("gossip_port = 7000\n", ""),
        "nodes[0].gossip_port",
        "required",
    ),
    ("name-missing", cluster_text().replace('name = "b"\n', ""), "nodes[1].name", "required"),
    # What one client can hold.
    (
        "http-conns-zero",
        cluster_text(b="max_http_connections = 0"),
        "nodes[1].max_http_connections",
        ">= 1",
    ),
    ("dns-rate-negative", cluster_text(b="dns_rate_limit = -1"), "nodes[1].dns_rate_limit", ">= 0"),
    (
        "body-timeout-number",
        cluster_text(b="http_body_timeout = 5"),
        "nodes[1].http_body_timeout",
        "duration",
    ),
    (
        "trusted-bad",
        cluster_text(b='dns_trusted_networks = ["x"]'),
        "nodes[1].dns_trusted_networks[0]",
        "network",
    ),
    # Watches and self-preservation.
    ("waiters-zero", cluster_text(b="max_waiters = 0"), "nodes[1].max_waiters", ">= 1"),
    (
        "threshold-text",
        cluster_text(defaults='self_preservation_threshold = "30%"'),
        "defaults.self_preservation_threshold",
        "(0, 1]",
    ),
    (
        "threshold-above-one",
        cluster_text(a="self_preservation_threshold = 1.5"),
        "nodes[0].self_preservation_threshold",
        "got 1.5",
    ),
    (
        "preservation-window-too-long",
        cluster_text(defaults='self_preservation_window = "2h"'),
        "defaults.self_preservation_window",
        "1..3600 seconds",
    ),
    (
        "preservation-duration-bare",
        cluster_text(b="self_preservation_max_duration = 60"),
        "nodes[1].self_preservation_max_duration",
        "duration",
    ),
    ("name-path", cluster_text().replace('"b"', '"../b"'), "nodes[1].name", "'../b'"),
    (
        "unknown-node-key",
        cluster_text(a="gosip_port = 1"),
        "nodes[0].gosip_port",
        "did you mean 'gossip_port'",
    ),
    (
        "unknown-default-key",
        cluster_text(defaults='probe_intreval = "1s"'),
        "defaults.probe_intreval",
        "did you mean 'probe_interval'",
    ),
    (
        "node-only-key-in-defaults",
        cluster_text(defaults="http_port = 9000"),
        "defaults.http_port",
        "[[nodes]]",
    ),
    ("unknown-top-level", cluster_text() + "\n[node]\n", "node", "did you mean 'nodes'"),
    ("unknown-cluster-key", cluster_text().replace('name = "t"', 'nmae = "t"'), "cluster.nmae", ""),
    ("no-nodes", '[cluster]\nname = "t"\n', "nodes", "at least one"),
    ("nodes-not-tables", "nodes = [1, 2]\n", "nodes", "[[nodes]]"),
    ("duplicate-name", cluster_text().replace('"b"', '"a"'), "nodes[1].name", "duplicate"),
    (
        "duplicate-gossip-port",
        cluster_text().replace("7001", "7000"),
        "nodes[1].gossip_port",
        "nodes[0] (a) gossip_port",
    ),
    (
        "duplicate-http-port",
        cluster_text().replace("8001", "8000"),
        "nodes[1].http_port",
        "nodes[0] (a) http_port",
    ),
    (
        "http-port-is-another-gossip-port",
        cluster_text().replace("8001", "7000"),
        "nodes[1].http_port",
        "nodes[0] (a) gossip_port",
    ),
    (
        "http-port-is-own-gossip-port",
        cluster_text().replace("8001", "7001"),
        "nodes[1].http_port",
        "gossip_port",
    ),
    (
        "wildcard-host-clashes",
        cluster_text(b='host = "0.0.0.0"').replace("7001", "7000"),
        "nodes[1].gossip_port",
        "already used",
    ),
    (
        "wildcard-first-node-without-advertise",
        cluster_text(defaults='host = "0.0.0.0"'),
        "nodes[0].advertise",
        "wildcard",
    ),
    (
        "bad-duration",
        cluster_text(defaults='probe_interval = "fast"'),
        "defaults.probe_interval",
        "",
    ),
    ("bare-number", cluster_text(a="gossip_interval = 500"), "nodes[0].gossip_interval", "500"),
    ("negative", cluster_text(a='gossip_interval = "-1s"'), "nodes[0].gossip_interval", "-1s"),
    ("bad-profile", cluster_text(defaults='profile = "lan2"'), "defaults.profile", "lan, wan"),
    (
        "timeout-exceeds-interval",
        cluster_text(b='probe_timeout = "2s"'),
        "nodes[1].probe_timeout",
        "must not exceed probe_interval",
    ),
    (
        "zero-duration",
        cluster_text(defaults='gossip_interval = "0s"'),
        "defaults.gossip_interval",
        "positive",
    ),
    ("packet-size-small", cluster_text(a="packet_size = 100"), "nodes[0].packet_size", "512"),
    (
        "int-field-as-string",
        cluster_text(a='indirect_checks = "3"'),
        "nodes[0].indirect_checks",
        "integer",
    ),
    (
        "bool-field",
        cluster_text(a='tcp_fallback = "yes"'),
        "nodes[0].tcp_fallback",
        "true or false",
    ),
    ("seed-without-port", cluster_text(b='seeds = ["localhost"]'), "nodes[1].seeds[0]", "port"),
    (
        "seed-ipv6-unbracketed",
        cluster_text(b='seeds = ["127.0.0.1:7000", "::1:7000"]'),
        "nodes[1].seeds[1]",
        "bracketed",
    ),
    ("seeds-not-list", cluster_text(b='seeds = "127.0.0.1:7000"'), "nodes[1].seeds", "list"),
    ("meta-not-string", cluster_text(a="meta = {zone = 1}"), "nodes[0].meta.zone", "string"),
    ("advertise-bad", cluster_text(a='advertise = "bad host:1"'), "nodes[0].advertise", "host"),
    ("host-bad", cluster_text(defaults='host = "not a host"'), "defaults.host", "host name"),
    ("data-dir-not-string", cluster_text(a="data_dir = 5"), "nodes[0].data_dir", "path"),
    ("cluster-name-empty", cluster_text().replace('name = "t"', 'name = ""'), "cluster.name", ""),
]


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [pytest.param(text, key, fragment, id=case) for case, text, key, fragment in BAD_CONFIGS],
)
def test_bad_config_error_names_file_and_key(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text, name=FILE_NAME)

    message = str(info.value)
    assert FILE_NAME in message
    assert f": {key}: " in message
    assert fragment in message
    assert info.value.key == key


def test_toml_syntax_error_gives_file_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, '[cluster]\nname = "t"\nnodes = = 1\n', name=FILE_NAME)

    assert FILE_NAME in str(info.value)
    assert "invalid TOML" in str(info.value)
    assert "line 3" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no-such\.toml: cannot read"):
        load_cluster(tmp_path / "no-such.toml")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- Durations and addresses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("1m", 60.0),
        ("2h", 7200.0),
        ("1m30s", 90.0),
        (".25s", 0.25),
        ("0s", 0.0),
        (" 20ms ", 0.02),
    ],
)
def test_parse_duration_reads_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "1", "500", "1x", "-1s", "+1s", "1 s", "s", "1.2.3s", "1e3s", "1sms", "inf", "nan"]
)
def test_parse_duration_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_duration_rejects_non_strings_and_overflow() -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="too large"):
        parse_duration("9" * 400 + "h")
    assert math.isfinite(parse_duration("9" * 300 + "s"))


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("127.0.0.1:7946", None, ("127.0.0.1", 7946)),
        ("node-1.example.com:80", None, ("node-1.example.com", 80)),
        ("localhost", 7946, ("localhost", 7946)),
        ("[::1]:7946", None, ("::1", 7946)),
        ("[fe80::1%eth0]:7946", None, ("fe80::1%eth0", 7946)),
        ("[::1]", 7946, ("::1", 7946)),
        ("::1", 7946, ("::1", 7946)),
        ("[2001:db8::5]:65535", None, ("2001:db8::5", 65535)),
    ],
)
def test_parse_address_accepts(text: str, default: int | None, expected: tuple[str, int]) -> None:
    assert parse_address(text, default) == expected


@pytest.mark.parametrize(
    ("text", "default", "fragment"),
    [
        ("127.0.0.1", None, "missing port"),
        ("[::1]", None, "missing port"),
        ("::1:7946", None, "bracketed"),
        ("[::1", None, "']'"),
        ("[127.0.0.1]:80", None, "IPv6"),
        ("[::1]80", None, "':port'"),
        ("host:", None, "port"),
        ("host:0", None, "1..65535"),
        ("host:65536", None, "1..65535"),
        ("host:+80", None, "port"),
        ("host:\uff18\uff10", None, "port"),  # fullwidth digits: int() would take them
        (":80", None, "host"),
        ("bad_host:80", None, "host"),
        ("a..b:80", None, "host"),
        ("-a:80", None, "host"),
    ],
)
def test_parse_address_rejects(text: str, default: int | None, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_address(text, default)


def test_parse_address_allows_port_zero_only_when_asked() -> None:
    assert parse_address("127.0.0.1:0", allow_zero=True) == ("127.0.0.1", 0)
    with pytest.raises(ValueError, match=r"1\.\.65535"):
        parse_address("127.0.0.1:0")
