"""Test-only packet faults: the control file, its reloads; config cannot switch them on."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gossip_registry.config.cluster_file import load_cluster
from gossip_registry.errors import ConfigError
from gossip_registry.runtime.faultinject import RELOAD_INTERVAL, FaultFilter

A, B, C = "127.9.9.1", "127.9.9.2", "127.9.9.3"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str) -> None:
    """Replace the file as the chaos runner does (a new file renamed in)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_a_blocked_pair_drops_one_way_for_datagrams_and_both_ways_for_streams(
    tmp_path: Path,
) -> None:
    control = tmp_path / "faults.json"
    write(control, json.dumps({"blocked": [[A, B]]}))
    faults = FaultFilter(control)
    assert faults.drops_datagram(A, B)
    assert not faults.drops_datagram(B, A)
    assert not faults.drops_datagram(A, C)
    assert faults.blocks_stream(A, B)
    assert faults.blocks_stream(B, A)
    assert not faults.blocks_stream(A, C)


def test_loss_drops_about_that_share_of_datagrams_and_no_stream(tmp_path: Path) -> None:
    control = tmp_path / "faults.json"
    write(control, json.dumps({"loss": 0.3}))
    faults = FaultFilter(control, rng=random.Random(7))
    dropped = sum(faults.drops_datagram(A, B) for _ in range(10_000))
    assert 2700 < dropped < 3300
    assert not faults.blocks_stream(A, B)


def test_rules_change_when_the_file_does_and_vanish_with_it(tmp_path: Path) -> None:
    control = tmp_path / "faults.json"
    clock = Clock()
    faults = FaultFilter(control, clock=clock)
    assert not faults.drops_datagram(A, B)  # no file: no faults
    write(control, json.dumps({"blocked": [[A, B]]}))
    assert not faults.drops_datagram(A, B)  # not looked at again yet
    clock.now += RELOAD_INTERVAL
    assert faults.drops_datagram(A, B)
    control.unlink()
    clock.now += RELOAD_INTERVAL
    assert not faults.drops_datagram(A, B)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"blocked": [[1]]}', '{"loss": "x"}'])
def test_a_malformed_control_file_means_no_faults_not_a_crash(tmp_path: Path, text: str) -> None:
    control = tmp_path / "faults.json"
    write(control, text)
    faults = FaultFilter(control)
    assert not faults.drops_datagram(A, B)
    assert not faults.blocks_stream(A, B)


def test_cluster_toml_cannot_switch_faults_on(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(
        '[cluster]\nname = "x"\n[defaults]\nunsafe_test_faults = "faults.json"\n'
        '[[nodes]]\nname = "a"\ngossip_port = 7000\n'
    )
    with pytest.raises(ConfigError, match="unsafe_test_faults"):
        load_cluster(path)
