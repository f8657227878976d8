"""registry/schema.py: the one definition of names, ids, hosts, ports, labels and check floors,
and its use by registration (issue 10, finding 5; issue 12's ports and DNS-safe names)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gossip_registry.errors import ConfigError
from gossip_registry.registry.health import CheckSpec
from gossip_registry.registry.schema import (
    MAX_NAME_LEN,
    host_problem,
    is_host,
    is_name,
    label_problem,
    name_problem,
    port_problem,
)
from gossip_registry.runtime.registration import check_registration
from tests.unit.test_config import cluster_text, load_text


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("web-1", True),
        ("rack 1", True),  # a space is printable
        ("café", True),
        ("n" * MAX_NAME_LEN, True),
        ("n" * (MAX_NAME_LEN + 1), False),
        ("", False),
        ("a\nb", False),
        ("a\x00b", False),
        ("a\u200bb", False),  # zero-width space: a format character, invisible in logs
        ("rack/1", False),
        (5, False),
        (None, False),
    ],
)
def test_names_and_ids_are_printable_without_slash(value: object, ok: bool) -> None:
    assert is_name(value) is ok
    assert (name_problem(value) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("10.0.0.1", True),
        ("fd00::3", True),
        ("fe80::1%eth0", True),
        ("web5.example.com", True),
        ("web5.example.com.", True),
        ("localhost", True),
        (".".join(["a" * 63] * 3 + ["a" * 61]), True),
        ("a" * 64, False),  # one label too long
        ("bad host\x00name", False),
        ("bad host", False),
        ("under_score.example", False),
        ("-lead.example", False),
        ("a..b", False),
        ("::zz", False),
        ("", False),
        (7, False),
    ],
)
def test_addresses_are_an_ip_or_a_dns_host_name(value: object, ok: bool) -> None:
    assert is_host(value) is ok
    assert (host_problem(value) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("web", True),
        ("v2", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("bad name!", False),
        ("-x", False),
        ("x-", False),
        ("my_svc", False),
        ("a.b", False),
        ("", False),
    ],
)
def test_service_names_and_tags_registered_are_dns_labels(value: str, ok: bool) -> None:
    assert (label_problem(value) is None) is ok


def test_registered_ports_are_1_to_65535() -> None:
    assert [port_problem(p) is None for p in (0, 1, 65535, 65536, True, "80")] == [
        False,
        True,
        True,
        False,
        False,
        False,
    ]
    assert port_problem(0, least=0) is None  # the wire allows 0 (older entries)


GOOD = {
    "service": "web",
    "instance_id": "web-1",
    "address": "10.0.0.1",
    "port": 80,
    "tags": ["v2"],
    "meta": {"zone": "a"},
    "weight": 1,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"instance_id": "a\nb"}, "instance_id: must be 1..128 printable"),
        ({"instance_id": "a/b"}, "instance_id: must be 1..128 printable"),
        ({"address": "bad host\x00name"}, "address: must be an IP address or a DNS host name"),
        ({"port": 0}, "port: must be an integer 1..65535"),
        ({"service": "bad name!"}, "service: must be a DNS label"),
        ({"tags": ["v1", "env=prod"]}, "tags[1]: must be a DNS label"),
        ({"tags": ["t"] * 65}, "tags: must be a list of at most 64 strings, got 65"),
        ({"tags": "v1"}, "tags: must be a list of at most 64 strings"),
        ({"meta": {"a/b": "v"}}, "meta: keys must be 1..128 printable"),
        ({"meta": {"zone": "x" * 513}}, "meta.zone: must be a string of at most 512 characters"),
        ({"meta": {f"k{i}": "v" for i in range(65)}}, "meta: at most 64 pairs, got 65"),
    ],
)
def test_registration_refuses_unusable_values_naming_the_field(
    change: dict[str, object], message: str
) -> None:
    check_registration(**GOOD)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape(message)):
        check_registration(**{**GOOD, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"http": "http://a/", "interval": 0.001}, "interval"),
        ({"tcp": "a:1", "timeout": 0.001}, "timeout"),
        ({"ttl": 0.001}, "ttl"),
    ],
)
def test_checks_faster_than_the_floors_are_refused(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: must be a duration of at least"):
        CheckSpec(**kwargs)  # type: ignore[arg-type]
    CheckSpec(**{**kwargs, field: 0.1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ('{"a/b" = "v"}', "meta: keys must be 1..128 printable"),
        ('{zone = "' + "x" * 513 + '"}', "meta.zone: must be a string of at most 512 characters"),
    ],
)
def test_cluster_toml_refuses_node_meta_in_the_words_registration_uses(
    tmp_path: Path, meta: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_registration(**{**GOOD, "meta": tomllib.loads(f"m = {meta}")["m"]})
    with pytest.raises(ConfigError, match=re.escape(f"nodes[0].{message}")):
        load_text(tmp_path, cluster_text(a=f"meta = {meta}"))
