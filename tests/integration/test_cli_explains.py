"""A CLI that explains itself: members filters, force-leave, URL-form --http, gossip-port hint.

Client commands run through click's ``CliRunner`` in a worker thread while
real nodes run in the test's trio loop, so a member can be crashed (its
scope cancelled) and the command sees what a shell would.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import trio
from click.testing import CliRunner, Result

from gossip_registry.cli import cli
from gossip_registry.cli.client import LEFT_HIDDEN_AFTER, _left_long_ago
from gossip_registry.core.messages import MemberState
from gossip_registry.runtime.node import Node
from tests.integration import fast_config, start_node, wait_until


def run(*args: str) -> Result:
    return CliRunner(env={"GOSSIP_REGISTRY_HTTP": None}).invoke(cli, list(args))


async def run_async(*args: str) -> Result:
    return await trio.to_thread.run_sync(lambda: run(*args))


def state_of(node: Node, name: str) -> MemberState | None:
    return next((m.state for m in node.members() if m.name == name), None)


def http_of(node: Node) -> str:
    assert node.http_addr is not None
    return "{}:{}".format(*node.http_addr)


async def test_force_leave_turns_a_dead_member_left_everywhere_and_refuses_a_live_one() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            a, _ = await start_node(nursery, fast_config("a", http=("127.0.0.1", 0)))
            seeds = (a.advertise_addr,)
            b, _ = await start_node(nursery, fast_config("b", seeds=seeds))
            _, crash = await start_node(nursery, fast_config("victim", seeds=seeds))
            await wait_until(lambda: len(a.members()) == 3 and len(b.members()) == 3)
            refused = await run_async("force-leave", "b", "--http", http_of(a))
            crash.cancel()
            await wait_until(lambda: state_of(a, "victim") is MemberState.DEAD)
            dead = await run_async("members", "--state", "dead", "--http", http_of(a))
            forced = await run_async("force-leave", "victim", "--http", http_of(a))
            await wait_until(lambda: state_of(b, "victim") is MemberState.LEFT)
            alive = await run_async("members", "--state", "alive", "--http", http_of(a))
            nursery.cancel_scope.cancel()
    assert refused.exit_code == 1
    assert refused.stderr == (
        "Error: name: member b is alive: only a dead member can be forced to leave\n"
    )
    assert [line.split()[0] for line in dead.stdout.splitlines()[1:]] == ["victim"]
    assert forced.exit_code == 0, forced.output
    assert forced.stdout == "victim is now left\n"
    assert state_of(a, "victim") is MemberState.LEFT
    assert [line.split()[0] for line in alive.stdout.splitlines()[1:]] == ["a", "b"]


def test_members_hides_members_that_left_long_ago_unless_all() -> None:
    def member(state: str, gone_for: float | None) -> dict[str, object]:
        return {"state": state, "gone_for": gone_for}

    assert _left_long_ago(member("left", LEFT_HIDDEN_AFTER + 1))
    assert not _left_long_ago(member("left", LEFT_HIDDEN_AFTER - 1))
    assert not _left_long_ago(member("dead", LEFT_HIDDEN_AFTER + 1))  # may need force-leave
    assert not _left_long_ago(member("alive", None))


async def test_members_shows_a_member_that_just_left_with_how_long_ago_in_json() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            a, _ = await start_node(nursery, fast_config("a", http=("127.0.0.1", 0)))
            leaver, _ = await start_node(nursery, fast_config("l", seeds=(a.advertise_addr,)))
            await wait_until(lambda: state_of(a, "l") is MemberState.ALIVE)
            await leaver.leave()
            await wait_until(lambda: state_of(a, "l") is MemberState.LEFT)
            shown = await run_async("members", "--json", "--http", http_of(a))
            only_left = await run_async("members", "--state", "left", "--http", http_of(a))
            nursery.cancel_scope.cancel()
    gone_for = {m["name"]: m["gone_for"] for m in json.loads(shown.stdout)}
    assert gone_for["a"] is None
    assert 0 <= gone_for["l"] < LEFT_HIDDEN_AFTER
    assert [line.split()[0] for line in only_left.stdout.splitlines()[1:]] == ["l"]


@pytest.mark.parametrize("form", ["{}", "http://{}", "http://{}/", "HTTP://{}"])
async def test_http_accepts_host_port_and_url_forms(form: str) -> None:
    with trio.fail_after(10):
        async with Node(fast_config("u", http=("127.0.0.1", 0))) as node:
            result = await run_async("status", "--http", form.format(http_of(node)))
    assert result.exit_code == 0, result.output
    assert result.stdout.split()[:2] == ["name", "u"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ftp://127.0.0.1:1", "expected HOST:PORT or http(s)://HOST:PORT"),
        ("http://127.0.0.1:1/v1", "expected no path after the port"),
    ],
)
def test_http_names_what_is_wrong_with_a_url(value: str, message: str) -> None:
    result = run("members", "--http", value)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --http: ")
    assert message in result.stderr


async def test_pointing_the_cli_at_a_gossip_port_says_which_http_api_to_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(10):
        async with Node(fast_config("node1", http=("127.0.0.1", 0))) as node:
            gossip_port = node.gossip_addr[1]
            http_port = node.http_addr[1] if node.http_addr else 0
            (tmp_path / "cluster.toml").write_text(
                f'[[nodes]]\nname = "node1"\ngossip_port = {gossip_port}\nhttp_port = {http_port}\n'
            )
            monkeypatch.chdir(tmp_path)
            result = await run_async("members", "--http", f"127.0.0.1:{gossip_port}")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "this looks like a gossip port, not an HTTP API; "
        f"the HTTP API of node node1 is on 127.0.0.1:{http_port}\n"
    )


def every_command() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli)
    commands = [(name, cli.get_command(ctx, name)) for name in cli.list_commands(ctx)]
    return [(name, command) for name, command in commands if command is not None]


@pytest.mark.parametrize(("name", "command"), every_command())
def test_every_option_of_every_command_is_documented_in_help(
    name: str, command: click.Command
) -> None:
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    # A help that is only "[default: ...]" says nothing of what the option does.
    assert [p.opts for p in options if not (h := p.help or "").strip() or h.startswith("[")] == []
    help_text = run(name, "--help").stdout
    assert [p.opts[0] for p in options if p.opts[0] not in help_text] == []
