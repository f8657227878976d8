"""The CLI with health checks: register with checks, TTL reports, listing every instance."""

from __future__ import annotations

import json

from gossip_registry.registry.entry import Health
from gossip_registry.registry.health import CheckSpec
from gossip_registry.runtime.threaded import ThreadedNode
from tests.integration import eventually
from tests.integration.test_cli import http, node, run

__all__ = ["http", "node"]  # pytest fixtures, imported to be found here


def test_register_with_checks_then_report_ttl_from_the_command_line(
    node: ThreadedNode, http: str
) -> None:
    registered = run(
        "register", "web", "--port", "8080", "--id", "w1",
        "--check-ttl", "30s", "--check-tcp", "127.0.0.1:1",
        "--check-id", "port", "--check-id", "beat",
        "--check-interval", "1m", "--check-timeout", "1s", "--check-deregister-after", "1h",
        "--http", http,
    )  # fmt: skip
    assert registered.exit_code == 0, registered.output
    assert registered.stdout.splitlines()[1:] == [
        "  check port",
        "  check beat",
    ]  # ids to report to
    [entry] = node.discover("web", passing_only=False)
    assert [(c.check_id, c.kind, c.status) for c in entry.checks] == [
        ("port", "tcp", Health.CRITICAL),
        ("beat", "ttl", Health.CRITICAL),
    ]
    assert run("services", "web", "--http", http).stdout == (
        "1 instance of web, none passing (1 critical); --all shows it\n"
    )
    listed = json.loads(run("services", "web", "--all", "--http", http, "--json").stdout)
    assert [c["id"] for c in listed[0]["checks"]] == ["port", "beat"]

    reported = run("check", "warn", "beat", "--note", "replica lag", "--http", http)
    assert reported.exit_code == 0, reported.output
    assert reported.stdout == "check beat is warning\n"
    eventually(
        lambda: node.discover("web", passing_only=False)[0].checks[1].output == "replica lag"
    )

    unknown = run("check", "pass", "nope", "--http", http)
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: id: no check 'nope' runs on this node\n"


def test_register_with_a_bad_check_duration_names_the_field(http: str) -> None:
    result = run("register", "web", "--port", "1", "--check-ttl", "30", "--http", http)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: checks[0].ttl: must be a duration")


def test_threaded_node_registers_checks_and_takes_ttl_reports(node: ThreadedNode) -> None:
    node.register("api", instance_id="a1", port=1, checks=[CheckSpec(ttl=30.0)])
    assert node.discover("api") == []
    node.update_ttl("service:a1", Health.PASSING, "ok")
    assert [e.instance_id for e in node.discover("api")] == ["a1"]
    assert node.check_counts() == {"passing": 1, "warning": 0, "critical": 0}
