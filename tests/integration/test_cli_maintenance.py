"""``gossip-registry maintenance``: an instance, or the node, out of discovery and back."""

from __future__ import annotations

import json

from gossip_registry.runtime.threaded import ThreadedNode
from tests.integration.test_cli import http, node, run

__all__ = ["http", "node"]  # the fixtures, shared with test_cli


def test_maintenance_takes_an_instance_and_the_node_out_of_discovery_and_back(
    node: ThreadedNode, http: str
) -> None:
    assert run("register", "web", "--port", "80", "--id", "w1", "--http", http).exit_code == 0
    assert run("register", "web", "--port", "81", "--id", "w2", "--http", http).exit_code == 0

    def passing() -> list[str]:
        return sorted(e.instance_id for e in node.discover("web"))

    on = run("maintenance", "w1", "--enable", "--reason", "disk swap", "--http", http)
    assert on.exit_code == 0, on.output
    assert "web/w1: in maintenance: disk swap" in on.output
    assert passing() == ["w2"]
    shown = run("maintenance", "--http", http, "--json")
    assert json.loads(shown.output) == {"node": None, "instances": {"web/w1": "disk swap"}}

    assert run("maintenance", "--enable", "--reason", "reboot", "--http", http).exit_code == 0
    assert passing() == []
    assert "node: in maintenance: reboot" in run("maintenance", "--http", http).output
    assert run("maintenance", "--disable", "--http", http).exit_code == 0
    assert run("maintenance", "w1", "--disable", "--http", http).exit_code == 0
    assert passing() == ["w1", "w2"]

    unknown = run("maintenance", "nope", "--enable", "--http", http)
    assert unknown.exit_code == 1
    assert "no instance 'nope'" in unknown.output
    assert run("maintenance", "w1", "--http", http).exit_code == 2  # say --enable or --disable
