"""The gossip-registry command, in process: client commands against a real node, errors, simulate.

Client commands run through click's ``CliRunner`` against a real ``Node``
(HTTP API on a free loopback port) running in a background thread
(``ThreadedNode``), so the whole path is exercised (flags, HTTP, the API,
the node, the rendering) without starting processes. The process-level
behaviour (signals, ``up``) is in ``test_processes.py``.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gossip_registry.cli import cli
from gossip_registry.cli.up import Child, Console, Supervisor
from gossip_registry.config.cluster_file import load_cluster
from gossip_registry.runtime.threaded import ThreadedNode
from tests.integration import eventually, fast_config

BAD_CONFIG = """
[[nodes]]
name = "n1"
gossip_port = 7946
probe_intervall = "1s"
"""


def run(*args: str) -> Result:
    """Invoke the command in process, isolated from GOSSIP_REGISTRY_HTTP in the environment."""
    return CliRunner(env={"GOSSIP_REGISTRY_HTTP": None}).invoke(cli, list(args))


@pytest.fixture
def node() -> Iterator[ThreadedNode]:
    with ThreadedNode(fast_config("cli1", http=("127.0.0.1", 0))) as threaded:
        yield threaded


@pytest.fixture
def http(node: ThreadedNode) -> str:
    assert node.http_addr is not None
    host, port = node.http_addr
    return f"{host}:{port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- Client commands --------------------------------------------------------------


def test_members_lists_every_member_with_state_and_incarnation(
    node: ThreadedNode, http: str
) -> None:
    with ThreadedNode(fast_config("cli2")) as other:
        assert other.join([node.advertise_addr]) == 1
        eventually(lambda: len(node.members()) == 2)
        table = run("members", "--http", http)
        as_json = run("members", "--http", http, "--json")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "STATE", "INCARNATION", "META"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    host, port = node.advertise_addr
    assert rows["cli1"] == ["cli1", f"{host}:{port}", "alive", "0", "-"]
    assert rows["cli2"][2] == "alive"
    assert as_json.exit_code == 0
    assert {m["name"]: m["state"] for m in json.loads(as_json.stdout)} == {
        "cli1": "alive",
        "cli2": "alive",
    }


def test_register_lists_and_deregisters_an_instance_in_table_and_json_form(
    node: ThreadedNode, http: str
) -> None:
    registered = run(
        "register", "web", "--port", "8080", "--id", "web-1", "--address", "10.0.0.5",
        "--tag", "blue", "--tag", "v2", "--meta", "zone=a", "--weight", "3", "--http", http,
    )  # fmt: skip
    assert registered.exit_code == 0, registered.output
    assert (
        registered.stdout
        == "registered web-1 (service web, at 10.0.0.5:8080), owned by node cli1\n"
    )
    assert [e.instance_id for e in node.discover("web")] == ["web-1"]

    generated = run("register", "web", "--port", "8081", "--http", http, "--json")
    assert generated.exit_code == 0, generated.output
    answer = json.loads(generated.stdout)
    assert answer["name"] == "web"
    assert answer["id"].startswith("web-")

    services = run("services", "--http", http)
    assert [line.split() for line in services.stdout.splitlines()] == [
        ["SERVICE", "INSTANCES", "PASSING", "WARNING", "CRITICAL"],
        ["web", "2", "2", "0", "0"],
    ]
    assert json.loads(run("services", "--http", http, "--json").stdout) == {"web": 2}

    instances = run("services", "web", "--tag", "blue", "--meta", "zone=a", "--http", http)
    assert instances.exit_code == 0, instances.output
    header, row = instances.stdout.splitlines()
    assert header.split() == ["ID", "ADDRESS", "STATUS", "WEIGHT", "NODE", "TAGS", "META"]
    assert row.split() == ["web-1", "10.0.0.5:8080", "passing", "3", "cli1", "blue,v2", "zone=a"]
    raw = json.loads(run("services", "web", "--passing", "--http", http, "--json").stdout)
    assert sorted(i["id"] for i in raw) == sorted(["web-1", answer["id"]])
    assert run("services", "web", "--tag", "red", "--http", http).stdout == "no instances of web\n"

    removed = run("deregister", "web-1", "--http", http)
    assert removed.exit_code == 0, removed.output
    assert removed.stdout == "deregistered web-1\n"
    assert [e.instance_id for e in node.discover("web")] == [answer["id"]]
    again = run("deregister", "web-1", "--http", http, "--json")
    assert again.exit_code == 1
    assert again.stderr == "Error: id: no instance 'web-1' is registered on this node\n"


def test_status_shows_the_nodes_view_and_counters(node: ThreadedNode, http: str) -> None:
    node.register("web", instance_id="w", port=1)
    table = run("status", "--http", http)
    assert table.exit_code == 0, table.output
    fields = {line.split()[0]: line.split(None, 1)[1] for line in table.stdout.splitlines()[:7]}
    assert fields["name"] == "cli1"
    assert fields["members"] == "1 alive, 0 suspect, 0 dead, 0 left"
    assert fields["entries"] == "1 live, 0 tombstones"
    assert fields["digest"] == node.status()["digest"]
    raw = json.loads(run("status", "--http", http, "--json").stdout)
    assert raw["name"] == "cli1"
    assert raw["entries"] == 1
    assert isinstance(raw["stats"], dict)


def test_an_api_error_is_printed_on_one_line_with_exit_status_1(http: str) -> None:
    result = run("register", "web", "--port", "70000", "--http", http)
    assert result.exit_code == 1
    assert result.stderr == "Error: port: must be an integer 1..65535, got 70000\n"
    assert result.stdout == ""


def test_a_malformed_meta_flag_is_a_usage_error(http: str) -> None:
    result = run("register", "web", "--port", "1", "--meta", "novalue", "--http", http)
    assert result.exit_code == 2
    assert "expected KEY=VALUE, got 'novalue'" in result.stderr


def test_an_unreachable_node_is_one_line_and_exit_status_1() -> None:
    port = free_port()
    for command in (["members"], ["services"], ["status"], ["register", "x", "--port", "1"]):
        result = run(*command, "--http", f"127.0.0.1:{port}")
        assert result.exit_code == 1, command
        assert (
            result.stderr == f"Error: cannot reach node at 127.0.0.1:{port}: connection refused\n"
        )
        assert result.stdout == ""


def test_without_http_flag_the_first_node_of_cluster_toml_here_is_asked(
    node: ThreadedNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert node.http_addr is not None
    port = node.http_addr[1]
    (tmp_path / "cluster.toml").write_text(
        f'[[nodes]]\nname = "a"\ngossip_port = {free_port()}\nhttp_port = {port}\n'
        f'[[nodes]]\nname = "b"\ngossip_port = {free_port()}\nhttp_port = {free_port()}\n'
    )
    monkeypatch.chdir(tmp_path)
    result = run("members")
    assert result.exit_code == 0, result.output
    assert "cli1" in result.stdout
    refused = run("members", "--node", "b")
    assert refused.exit_code == 1
    assert "connection refused" in refused.stderr


# --- Configuration errors ----------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["members"], ["agent", "--node", "n1"], ["up"]],
    ids=["client", "agent", "up"],
)
def test_a_bad_config_is_one_line_naming_file_and_key_with_exit_status_2(
    tmp_path: Path, command: list[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_CONFIG)
    result = run(*command, "--config", str(bad))
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {bad}: nodes[0].probe_intervall: unknown key; did you mean 'probe_interval'?\n"
    )


def test_agent_refuses_flags_that_the_cluster_file_already_sets(tmp_path: Path) -> None:
    result = run("agent", "--config", "cluster.toml", "--node", "n1", "--bind", "127.0.0.1:1")
    assert result.exit_code == 2
    assert "--bind cannot be combined with --config/--node" in result.stderr


def test_agent_names_the_flag_with_a_bad_address() -> None:
    result = run("agent", "--name", "n1", "--bind", "127.0.0.1:70000")
    assert result.exit_code == 2
    assert result.stderr == "Error: --bind: port must be 0..65535, got 70000\n"


def test_agent_names_an_unknown_node_and_lists_the_known_ones(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[nodes]]\nname = "n1"\ngossip_port = 7946\n')
    result = run("agent", "--config", str(config), "--node", "n9")
    assert result.exit_code == 2
    assert result.stderr == f"Error: no node 'n9' in {config}; nodes: n1\n"


# --- simulate, version, up's table ------------------------------------------------------


def test_simulate_reports_spread_and_detection_and_a_seed_fixes_the_figures() -> None:
    first = run("simulate", "--nodes", "50", "--seed", "1")
    assert first.exit_code == 0, first.output
    text = first.stdout
    assert "link model: datagram delay lognormal" in text
    assert "probe_interval=1s" in text
    for figure in ("50% of nodes", "99% of nodes", "100% of nodes"):
        assert figure in text
    for figure in ("first node declares:", "all nodes declare:", "false positives: 0"):
        assert figure in text
    assert "not reached" not in text

    def figures(result: Result) -> list[str]:
        return [line for line in result.stdout.splitlines() if not line.startswith("wall time")]

    assert figures(run("simulate", "--nodes", "50", "--seed", "1")) == figures(first)

    reports = [
        json.loads(run("simulate", "--nodes", "50", "--seed", str(seed), "--json").stdout)
        for seed in (1, 1, 2)
    ]
    for report in reports:
        report.pop("wall_s")
    assert reports[0] == reports[1]
    assert reports[0] != reports[2]
    spread = reports[0]["spread_s"]
    assert 0 < spread["50%"] <= spread["99%"] <= spread["100%"] < 5
    assert 0 < reports[0]["first_detection_s"] <= reports[0]["all_detection_s"] < 60
    assert reports[0]["traffic_per_node_per_s"]["udp_messages"] > 0


def test_simulate_refuses_to_crash_every_node() -> None:
    result = run("simulate", "--nodes", "3", "--crash", "3")
    assert result.exit_code == 2
    assert "at most 2 of 3 nodes" in result.stderr


def test_version_names_the_package_and_wire_protocol() -> None:
    result = run("version")
    assert result.exit_code == 0
    assert result.stdout.startswith("gossip-registry 0.1.0 (wire protocol 1, python 3.")


def status(digest: str, alive: int = 3) -> dict[str, Any]:
    return {
        "members": {"alive": alive, "suspect": 0, "dead": 0, "left": 0},
        "entries": 2,
        "digest": digest,
    }


def test_up_table_says_whether_the_digests_agree(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        "".join(
            f'[[nodes]]\nname = "n{i}"\ngossip_port = {7000 + i}\nhttp_port = {8000 + i}\n'
            for i in range(3)
        )
    )
    console = Console(io.StringIO(), live=False)
    supervisor = Supervisor(
        load_cluster(config), ["n0", "n1", "n2"], log_level="info", console=console
    )
    children: list[Child] = supervisor.children
    assert supervisor.table()[-1] == "no node running"
    for pid, child in enumerate(children, 100):
        child.process = SimpleNamespace(pid=pid)  # type: ignore[assignment]  # enough for the table
    assert supervisor.table()[-1] == "3 of 3 nodes running; none answering yet"
    for child in children:
        child.status = status("00000000aaaaaaaa")
    lines = supervisor.table()
    assert lines[0].split() == [
        "NODE", "PROCESS", "PID", "ALIVE", "SUSPECT", "DEAD", "LEFT", "ENTRIES", "DIGEST", "AGREE",
    ]  # fmt: skip
    assert lines[-1] == "digests agree: 3 of 3 running nodes answering"
    children[2].status = status("00000000bbbbbbbb", alive=2)
    lines = supervisor.table()
    assert lines[-1] == "digests differ: 2 distinct among 3 nodes answering"
    assert lines[3].split()[-2:] == ["00000000", "no"]
