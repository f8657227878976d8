"""Several real nodes in one trio run, over loopback UDP and TCP."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import trio
import trio.testing

from gossip_registry.config.node import NodeConfig
from gossip_registry.core.effects import Timer, TimerKind
from gossip_registry.core.messages import MemberState
from gossip_registry.registry.clock import stamp_wall
from gossip_registry.registry.entry import Entry, Health
from gossip_registry.runtime.node import Node, _TimerHeap, open_node
from tests.integration import (
    FAST,
    alive_count,
    fast_config,
    ipv6_available,
    start_cluster,
    start_node,
    wait_until,
)


def state_of(node: Node, name: str) -> MemberState | None:
    return next((m.state for m in node.members() if m.name == name), None)


def ids(entries: list[Entry]) -> list[str]:
    return [e.instance_id for e in entries]


# Membership.


async def test_nodes_joining_through_the_first_all_see_each_other_alive() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nodes = await start_cluster(nursery, 4)
            for node, _ in nodes:
                views = node.members()
                assert [m.name for m in views] == ["n0", "n1", "n2", "n3"]
                assert all(m.state is MemberState.ALIVE for m in views)
                status = node.status()
                assert status["members"] == {"alive": 4, "suspect": 0, "dead": 0, "left": 0}
                assert status["name"] == node.name
                assert (status["address"], status["port"]) == node.advertise_addr
            nursery.cancel_scope.cancel()


async def test_join_returns_how_many_seeds_answered() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            a, _ = await start_node(nursery, fast_config("a"))
            b, _ = await start_node(nursery, fast_config("b"))
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
                closed.bind(("127.0.0.1", 0))  # bound, never listening: refuses connections
                nobody = closed.getsockname()
                answered = await b.join([a.advertise_addr, nobody, b.advertise_addr])
            assert answered == 1
            assert state_of(b, "a") is MemberState.ALIVE
            await wait_until(lambda: state_of(a, "b") is MemberState.ALIVE)
            assert await b.join([]) == 0
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_node_whose_seed_starts_later_joins_by_retrying(host: str) -> None:
    # A name ("localhost") is resolved again at each retry; an address is asked as it is.
    retrying = FAST.with_(join_backoff=0.05)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            # Hold the seed's future port (bound, not listening: connections are
            # refused) until the first joins have failed, so nobody else takes it.
            udp, tcp = reserve_port()
            with udp, tcp:
                late = udp.getsockname()
                config = fast_config("early", seeds=((host, late[1]),), protocol=retrying)
                early, _ = await start_node(nursery, config)
                await wait_until(lambda: early.protocol.stats["syncs_failed"] >= 2)
            assert early.joining
            seed, _ = await start_node(nursery, fast_config("seed", bind=late))
            await wait_until(lambda: state_of(seed, "early") is MemberState.ALIVE)
            assert await early.join([(host, late[1])]) == 1
            nursery.cancel_scope.cancel()


def reserve_port() -> tuple[socket.socket, socket.socket]:
    """A loopback port bound for UDP and TCP (not listening), as a node would bind it."""
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(udp.getsockname())
        except OSError:  # the TCP twin is taken: try another port
            udp.close()
            tcp.close()
            continue
        return udp, tcp
    raise AssertionError("no free UDP+TCP port pair on loopback")


async def test_a_crashed_node_is_declared_dead_and_its_entries_removed() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nodes = await start_cluster(nursery, 4)
            (a, _), (b, _), (c, _), (victim, crash) = nodes
            await victim.register("db", instance_id="db-1", port=5432)
            await wait_until(lambda: all(ids(n.discover("db")) == ["db-1"] for n in (a, b, c)))
            crash.cancel()
            await wait_until(lambda: all(state_of(n, "n3") is MemberState.DEAD for n in (a, b, c)))
            for node in (a, b, c):
                assert node.discover("db") == []
                assert node.services() == {}
            nursery.cancel_scope.cancel()


async def test_a_crashed_process_on_a_live_host_is_refused_and_declared_dead() -> None:
    """Loopback stays up when the victim's sockets close: probes draw ICMP port unreachable."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nodes = await start_cluster(nursery, 4)
            (a, _), (b, _), (c, _), (_, crash) = nodes
            crash.cancel()
            await wait_until(lambda: all(state_of(n, "n3") is MemberState.DEAD for n in (a, b, c)))
            survivors = (a, b, c)
            assert sum(n.transport.stats["refusals"] for n in survivors) > 0
            assert sum(n.protocol.stats["probes_refused"] for n in survivors) > 0
            nursery.cancel_scope.cancel()


async def test_leave_makes_the_others_see_the_node_left_and_stops_it() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nodes = await start_cluster(nursery, 3)
            (a, _), (b, _), (leaver, _) = nodes
            await leaver.register("api", instance_id="api-1", port=80)
            await wait_until(lambda: ids(a.discover("api")) == ["api-1"])
            await leaver.leave()
            assert not leaver.running
            assert leaver.transport.udp.fileno() == -1
            # LEFT, not DEAD: the goodbye went out before the node stopped.
            await wait_until(lambda: all(state_of(n, "n2") is MemberState.LEFT for n in (a, b)))
            assert a.discover("api") == []
            nursery.cancel_scope.cancel()


async def test_leave_without_peers_returns_at_once() -> None:
    with trio.fail_after(5):
        async with Node(fast_config("alone", leave_timeout=30.0)) as node:
            start = trio.current_time()
            await node.leave()
            assert trio.current_time() - start < 1.0
            assert not node.running


# Registry.


async def test_a_registration_on_one_node_appears_on_all_and_deregister_removes_it() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nodes = [n for n, _ in await start_cluster(nursery, 3)]
            owner = nodes[1]
            entry = await owner.register(
                "web", port=8080, tags=["v1", "eu"], meta={"zone": "a"}, weight=5
            )
            assert entry.instance_id.startswith("web-")
            assert len(entry.instance_id) == len("web-") + 8
            assert entry.address == owner.advertise_addr[0]
            assert entry.owner == "n1"
            await wait_until(lambda: all(n.discover("web") == [entry] for n in nodes))
            assert all(n.services() == {"web": 1} for n in nodes)

            assert await owner.deregister(entry.instance_id) == entry
            await wait_until(lambda: all(n.discover("web") == [] for n in nodes))
            assert all(n.status()["tombstones"] == 1 for n in nodes)
            assert await owner.deregister(entry.instance_id) is None
            nursery.cancel_scope.cancel()


async def test_discover_filters_by_tags_meta_and_health() -> None:
    with trio.fail_after(5):
        async with Node(fast_config("solo")) as node:
            await node.register("web", instance_id="b", port=1, tags=["v1", "eu"], meta={"z": "a"})
            await node.register("web", instance_id="a", port=1, tags=["v1"], meta={"z": "b"})
            await node.register("web", instance_id="c", port=1, status=Health.CRITICAL)
            assert ids(node.discover("web")) == ["a", "b"]
            assert ids(node.discover("web", passing_only=False)) == ["a", "b", "c"]
            assert ids(node.discover("web", tags=["v1"])) == ["a", "b"]
            assert ids(node.discover("web", tags=["v1", "eu"])) == ["b"]
            assert ids(node.discover("web", meta={"z": "b"})) == ["a"]
            assert ids(node.discover("web", tags=["v2"])) == []
            assert node.discover("nothing") == []
            assert node.services() == {"web": 3}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"service": ""}, "service"),
        ({"service": "s" * 129}, "service"),
        ({"instance_id": ""}, "instance_id"),
        ({"instance_id": "i" * 129}, "instance_id"),
        ({"port": -1}, "port"),
        ({"port": 65536}, "port"),
        ({"port": True}, "port"),
        ({"weight": 65536}, "weight"),
        ({"tags": "web"}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"tags": [f"t{i}" for i in range(65)]}, "tags"),
        ({"meta": {f"k{i}": "v" for i in range(65)}}, "meta"),
        ({"meta": {"k": "v" * 513}}, "meta"),
        ({"address": "h" * 254}, "address"),
        ({"status": "sleepy"}, "status"),
        ({"meta": {f"k{i}": "v" * 500 for i in range(10)}}, "registration"),
    ],
)
async def test_register_rejects_invalid_fields_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"service": "web", "instance_id": "w1", "port": 80}
    args.update(kwargs)
    with trio.fail_after(5):
        async with Node(fast_config("v")) as node:
            service = args.pop("service")
            with pytest.raises(ValueError, match=field):
                await node.register(service, **args)
            assert node.services() == {}


async def test_deregister_asks_for_the_service_when_an_id_is_in_two() -> None:
    with trio.fail_after(5):
        async with Node(fast_config("d")) as node:
            await node.register("web", instance_id="x", port=1)
            await node.register("api", instance_id="x", port=2)
            with pytest.raises(ValueError, match="service"):
                await node.deregister("x")
            removed = await node.deregister("x", service="api")
            assert removed is not None
            assert removed.service == "api"
            assert node.services() == {"web": 1}


async def test_watch_yields_the_list_then_after_each_change_of_its_service_only() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nodes = [n for n, _ in await start_cluster(nursery, 2)]
            watcher, owner = nodes
            seen: list[list[str]] = []
            wakeups = 0

            async def watch() -> None:
                nonlocal wakeups
                async for entries in watcher.watch("web"):
                    wakeups += 1
                    seen.append(ids(entries))

            nursery.start_soon(watch)
            await wait_until(lambda: seen == [[]])
            await owner.register("web", instance_id="w1", port=1)
            await wait_until(lambda: seen[-1] == ["w1"])
            before = wakeups
            # Another service changes on both nodes: the web watcher stays asleep.
            await owner.register("db", instance_id="d1", port=2)
            await wait_until(lambda: ids(watcher.discover("db")) == ["d1"])
            await watcher.register("cache", instance_id="c1", port=3)
            assert wakeups == before
            await owner.register("web", instance_id="w2", port=1)
            await wait_until(lambda: seen[-1] == ["w1", "w2"])
            await owner.deregister("w1")
            await wait_until(lambda: seen[-1] == ["w2"])
            assert seen[0] == []
            nursery.cancel_scope.cancel()


async def test_watch_misses_no_change_made_while_the_consumer_is_busy() -> None:
    with trio.fail_after(5):
        async with Node(fast_config("w")) as node:
            watch = node.watch("web")
            assert await anext(watch) == []
            # Two changes before the consumer asks again: it gets the latest at once.
            await node.register("web", instance_id="a", port=1)
            await node.register("web", instance_id="b", port=1)
            assert ids(await anext(watch)) == ["a", "b"]
            await node.register("web", instance_id="a", port=2, status=Health.WARNING)
            changed = await anext(watch)
            assert [(e.instance_id, e.port) for e in changed] == [("a", 2), ("b", 1)]
            await watch.aclose()


async def test_watch_ends_when_the_node_stops() -> None:
    with trio.fail_after(5):
        results: list[list[Entry]] = []
        async with trio.open_nursery() as nursery:
            node, crash = await start_node(nursery, fast_config("w"))

            async def consume() -> None:
                async for entries in node.watch("web"):
                    results.append(entries)

            nursery.start_soon(consume)
            await wait_until(lambda: len(results) == 1)
            crash.cancel()
        assert results == [[]]


# Lifetime and addresses.


async def test_cancellation_closes_every_socket_and_the_port_can_be_rebound() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nodes = await start_cluster(nursery, 2)
            (node, crash), (peer, _) = nodes
            await node.register("web", port=1)
            # Open an inbound and outbound stream on the way out.
            await peer.join([node.advertise_addr])
            host, port = node.gossip_addr
            transport = node.transport
            crash.cancel()
            await node.wait_stopped()
            assert transport.udp.fileno() == -1
            assert transport.tcp.fileno() == -1
            assert not node.running
            with pytest.raises(RuntimeError, match="not running"):
                await node.register("web", port=1)
            again, _ = await start_node(nursery, fast_config("again", bind=(host, port)))
            assert again.gossip_addr == (host, port)
            nursery.cancel_scope.cancel()


async def test_async_with_stops_the_node_and_lets_the_body_error_through() -> None:
    with trio.fail_after(5):
        node = Node(fast_config("ctx"))

        async def fail_inside() -> None:
            async with node:
                assert node.running
                raise KeyError("body")

        with pytest.raises(KeyError):  # itself, not wrapped in an ExceptionGroup
            await fail_inside()
        assert not node.running
        assert node.transport.udp.fileno() == -1
        async with open_node(fast_config("ctx2")) as other:
            assert other.running
        assert other.transport.tcp.fileno() == -1


async def test_a_node_runs_once() -> None:
    with trio.fail_after(5):
        node = Node(fast_config("once"))
        async with node:
            pass
        with pytest.raises(RuntimeError, match="runs once"):
            async with node:
                pass


def test_invalid_node_config_is_refused_before_anything_binds() -> None:
    with pytest.raises(ValueError, match="name"):
        Node(NodeConfig(""))
    with pytest.raises(ValueError, match="meta"):
        Node(NodeConfig("n", meta={"k": "v" * 600}))
    with pytest.raises(ValueError, match="tcp_timeout"):
        Node(NodeConfig("n", tcp_timeout=0))
    with pytest.raises(ValueError, match="leave_timeout"):
        Node(NodeConfig("n", leave_timeout=-1))


@pytest.mark.skipif(not ipv6_available(), reason="::1 cannot be bound here")
async def test_an_ipv6_loopback_cluster_works() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nodes = [n for n, _ in await start_cluster(nursery, 3, bind=("::1", 0))]
            assert all(n.gossip_addr[0] == "::1" for n in nodes)
            assert all(m.address == "::1" for m in nodes[0].members())
            await nodes[2].register("web", instance_id="w6", port=80)
            await wait_until(lambda: all(ids(n.discover("web")) == ["w6"] for n in nodes))
            assert nodes[0].discover("web")[0].address == "::1"
            nursery.cancel_scope.cancel()


async def test_peers_see_the_advertised_address_not_the_bound_one() -> None:
    # Bound on 127.0.0.1, advertised under a name: port 0 means "the bound port".
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            a, _ = await start_node(nursery, fast_config("a", advertise=("localhost", 0)))
            assert a.gossip_addr[0] == "127.0.0.1"
            assert a.advertise_addr == ("localhost", a.gossip_addr[1])
            b, _ = await start_node(nursery, fast_config("b", seeds=(a.advertise_addr,)))
            await a.register("web", instance_id="w1", port=80)
            await wait_until(lambda: alive_count(b) == 2 and ids(b.discover("web")) == ["w1"])
            view = next(m for m in b.members() if m.name == "a")
            assert (view.address, view.port) == a.advertise_addr
            assert b.discover("web")[0].address == "localhost"
            # Probes to the advertised name keep it alive.
            probes = b.protocol.stats["probes"]
            await wait_until(lambda: b.protocol.stats["probes"] >= probes + 3)
            assert state_of(b, "a") is MemberState.ALIVE
            nursery.cancel_scope.cancel()


# The timer heap, in virtual time.


async def test_timers_fire_in_deadline_order_and_an_earlier_one_wakes_the_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        heap = _TimerHeap()
        fired: list[tuple[float, int]] = []

        def fire(now: float, timer: Timer) -> None:
            fired.append((now, timer.token))
            if timer.token == 1:
                heap.push(now, Timer(TimerKind.GOSSIP, 9))  # due at once: same pass

        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            heap.push(start + 10, Timer(TimerKind.PROBE, 2))
            nursery.start_soon(heap.run, fire)
            await trio.sleep(1)
            heap.push(start + 5, Timer(TimerKind.PROBE, 1))  # earlier than the sleeping deadline
            heap.push(start + 20, Timer(TimerKind.PROBE, 3))
            await trio.sleep(30)
            nursery.cancel_scope.cancel()
        assert fired == [(start + 5, 1), (start + 5, 9), (start + 10, 2), (start + 20, 3)]


# The wall clock.


async def test_a_node_ten_minutes_fast_stamps_sane_versions_once_ntp_corrects_it() -> None:
    error = [600.0]  # seconds the "fast" node's clock is ahead, until NTP steps it back
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            sane, _ = await start_node(nursery, fast_config("sane"))
            fast = Node(
                fast_config("fast", seeds=(sane.advertise_addr,)),
                wall_clock=lambda: time.time() + error[0],
            )
            await nursery.start(fast.run)
            await wait_until(lambda: alive_count(sane) == 2 and alive_count(fast) == 2)
            early = await fast.register("web", instance_id="w1", port=80)
            assert stamp_wall(early.stamp) > time.time() + 500
            await wait_until(lambda: sane.protocol.stats["entries_from_future"] >= 1)
            assert sane.discover("web") == []

            error[0] = 0.0
            probes = fast.protocol.stats["probes"]
            reset_after: list[int] = []

            def reset() -> bool:
                if fast.protocol.stats["clock_resets"] and not reset_after:
                    reset_after.append(fast.protocol.stats["probes"] - probes)
                return bool(reset_after)

            await wait_until(reset)
            # The probe tick that reset it, and at most one more before this poll saw it.
            assert reset_after[0] <= 2
            fixed = fast.protocol.table.get(early.key)
            assert fixed is not None
            assert stamp_wall(fixed.stamp) <= time.time() + 1
            await wait_until(lambda: ids(sane.discover("web")) == ["w1"])
            assert sane.discover("web")[0].stamp == fixed.stamp
            nursery.cancel_scope.cancel()
