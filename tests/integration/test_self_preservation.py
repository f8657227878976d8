"""Self-preservation on real nodes over loopback: a mass death is doubted, a single one is not."""

from __future__ import annotations

from functools import partial

import dns.message
import dns.query
import dns.rdatatype
import httpx
import trio
from click.testing import CliRunner

from gossip_registry.cli import cli
from gossip_registry.core.messages import MemberState
from gossip_registry.registry.entry import Entry
from gossip_registry.runtime.node import Node
from tests.integration import fast_config, start_cluster, start_node, wait_until


def ids(entries: list[Entry]) -> list[str]:
    return [e.instance_id for e in entries]


def dead(node: Node, names: list[str]) -> bool:
    states = {m.name: m.state for m in node.members()}
    return all(states.get(name) is MemberState.DEAD for name in names)


def stale_ids(node: Node) -> list[str]:
    return [e.instance_id for e in node.discover("web") if node.is_stale(e)]


async def srv_ttl(node: Node) -> int:
    """The TTL of node's SRV answer for web: dnspython gives an RRset the least TTL of its
    records (the instances here share address and port, so their records fold into one)."""
    assert node.dns_addr is not None
    query = dns.message.make_query("web.service.registry.", dns.rdatatype.SRV, use_edns=True)
    reply = await trio.to_thread.run_sync(
        partial(dns.query.udp, query, node.dns_addr[0], port=node.dns_addr[1], timeout=2)
    )
    [rrset] = reply.answer
    return int(rrset.ttl)


def cli_output(*args: str) -> str:
    result = CliRunner(env={"GOSSIP_REGISTRY_HTTP": None}).invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


async def register_one_each(nodes: list[Node]) -> list[str]:
    for node in nodes:
        await node.register("web", instance_id=f"web-{node.name}", port=80)
    expected = sorted(f"web-{n.name}" for n in nodes)
    await wait_until(lambda: all(ids(n.discover("web")) == expected for n in nodes))
    return expected


async def test_survivors_of_a_mass_death_serve_the_dead_entries_stale_until_they_return() -> None:
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            loopback = ("127.0.0.1", 0)
            nodes = [n for n, _ in await start_cluster(nursery, 5, http=loopback, dns=loopback)]
            expected = await register_one_each(nodes)
            assert await srv_ttl(nodes[0]) == 5  # the default TTL while every owner is alive
            survivors, victims = nodes[:2], nodes[2:]
            victim_names = [v.name for v in victims]
            addresses = {v.name: v.advertise_addr for v in victims}
            for victim in victims:
                victim.stop()
            await wait_until(lambda: all(dead(s, victim_names) for s in survivors), timeout=15)

            for survivor in survivors:
                assert ids(survivor.discover("web")) == expected  # nothing dropped
                assert stale_ids(survivor) == [f"web-{name}" for name in victim_names]
                assert survivor.stale_keys() == {("web", f"web-{n}") for n in victim_names}
                assert survivor.services() == {"web": 5}
                state = survivor.status()["self_preservation"]
                assert state["active"] is True
                assert state["dead_in_window"] == 3
                assert state["since"] is not None

            # Every interface flags them: HTTP JSON, the CLI's table and status.
            assert survivors[0].http_addr is not None
            http = "{}:{}".format(*survivors[0].http_addr)
            async with httpx.AsyncClient(base_url=f"http://{http}") as client:
                body = (await client.get("/v1/services/web")).json()
                status = (await client.get("/v1/status")).json()
            assert [i["stale"] for i in body] == [False, False, True, True, True]
            assert status["self_preservation"]["active"] is True
            table = await trio.to_thread.run_sync(cli_output, "services", "web", "--http", http)
            assert [line.count("(stale)") for line in table.splitlines()] == [0, 0, 0, 1, 1, 1]
            shown = await trio.to_thread.run_sync(cli_output, "status", "--http", http)
            assert "ACTIVE since" in shown
            assert (
                await srv_ttl(survivors[0]) == 0
            )  # DNS has no flag: stale answers are uncacheable

            # The victims restart under their names and addresses, and re-register.
            seeds = (survivors[0].advertise_addr,)
            back = []
            for name in victim_names:
                node, _ = await start_node(
                    nursery, fast_config(name, bind=addresses[name], seeds=seeds)
                )
                back.append(node)
            for node in back:
                await node.register("web", instance_id=f"web-{node.name}", port=81)
            await wait_until(
                lambda: all(
                    ids(s.discover("web")) == expected
                    and stale_ids(s) == []
                    and all(e.port == 81 for e in s.discover("web")[2:])
                    and not s.status()["self_preservation"]["active"]
                    for s in survivors
                ),
                timeout=15,
            )
            assert await srv_ttl(survivors[0]) == 5
            nursery.cancel_scope.cancel()


async def test_a_single_death_removes_its_entries_as_usual() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nodes = [n for n, _ in await start_cluster(nursery, 5)]
            expected = await register_one_each(nodes)
            victim, survivors = nodes[4], nodes[:4]
            victim.stop()
            await wait_until(lambda: all(dead(s, [victim.name]) for s in survivors), timeout=15)
            for survivor in survivors:
                assert ids(survivor.discover("web")) == expected[:4]
                assert survivor.stale_keys() == set()
                state = survivor.status()["self_preservation"]
                assert (state["active"], state["dead_in_window"]) == (False, 1)
            nursery.cancel_scope.cancel()


async def test_a_graceful_leave_of_many_is_not_a_failure() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nodes = [n for n, _ in await start_cluster(nursery, 5)]
            expected = await register_one_each(nodes)
            survivors = nodes[:2]
            async with trio.open_nursery() as leaving:
                for node in nodes[2:]:
                    leaving.start_soon(node.leave)
            await wait_until(lambda: all(ids(s.discover("web")) == expected[:2] for s in survivors))
            for survivor in survivors:
                assert not survivor.status()["self_preservation"]["active"]
            nursery.cancel_scope.cancel()
