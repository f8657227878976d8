"""Health checks run by the node: real HTTP and TCP probes on loopback, TTLs, thresholds,
deregistration everywhere, snapshots, and a node with hundreds of checks.

Rules that need no I/O are in tests/unit/test_health_rules.py, and the runner
driven by a scripted probe on the mock clock in tests/unit/test_check_runner.py;
the tests here use real sockets.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from gossip_registry.config.node import NodeConfig
from gossip_registry.registry.entry import CheckKind, CheckState, Entry, EntryKey, Health
from gossip_registry.registry.health import CheckSpec, assign_check_ids, initial_states
from gossip_registry.runtime.node import Node
from gossip_registry.runtime.storage.snapshot import Snapshot, decode_snapshot, encode_snapshot
from tests.integration import fast_config, start_cluster, start_node, wait_until
from tests.unit.test_check_runner import Recorder, start

P, W, C = Health.PASSING, Health.WARNING, Health.CRITICAL
KEY: EntryKey = ("web", "w1")


# --- a tiny HTTP server and a closed port --------------------------------------------


async def serve_http_codes(
    nursery: trio.Nursery, codes: Callable[[], int | None]
) -> tuple[str, list[int]]:
    """Answer every GET with the next of ``codes()`` (None: never answer); returns the URL
    and the list of codes served so far."""
    served: list[int] = []

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                request += chunk
            code = codes()
            if code is None:
                await trio.sleep_forever()
                return
            served.append(code)
            body = b"ok"
            head = f"HTTP/1.1 {code} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            await stream.send_all(head.encode() + body)

    port = await serve_loopback(nursery, handle)
    return f"http://127.0.0.1:{port}/health", served


async def serve_loopback(
    nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[object]]
) -> int:
    """Serve ``handler`` on a free loopback port, in ``nursery``; returns the port."""
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed: connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- real probes on loopback --------------------------------------------------------------


async def run_real_check(spec: CheckSpec, until: Callable[[CheckState], bool]) -> CheckState:
    """Run one real check until its state satisfies ``until`` (bounded)."""
    runner = Recorder().runner()
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        start(runner, KEY, spec)
        await wait_until(lambda: until(runner.states(KEY)[0]), timeout=5.0)
        nursery.cancel_scope.cancel()
    return runner.states(KEY)[0]


@pytest.mark.parametrize(("code", "status"), [(200, P), (429, W), (500, C)])
async def test_http_check_reads_the_answer_of_a_real_server(code: int, status: Health) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url, served = await serve_http_codes(nursery, lambda: code)
            spec = CheckSpec(http=url, interval=0.1, timeout=1.0)
            state = await run_real_check(spec, lambda s: s.output != "")
            nursery.cancel_scope.cancel()
    assert state.status is status
    assert state.output.startswith(f"HTTP GET {url}: {code}")
    assert served


async def test_http_check_that_does_not_answer_in_time_is_critical() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url, _ = await serve_http_codes(nursery, lambda: None)
            spec = CheckSpec(http=url, interval=0.3, timeout=0.2)
            state = await run_real_check(spec, lambda s: s.output != "")
            nursery.cancel_scope.cancel()
    assert (state.status, state.output) == (C, "timed out after 0.2s")


async def test_http_check_of_a_closed_port_is_critical_with_the_reason() -> None:
    with trio.fail_after(10):
        spec = CheckSpec(http=f"http://127.0.0.1:{closed_port()}/", interval=0.1)
        state = await run_real_check(spec, lambda s: s.output != "")
    assert state.status is C
    assert state.output.startswith("ConnectError")


async def test_tcp_check_passes_on_a_listening_port_and_fails_on_a_closed_one() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_loopback(nursery, lambda s: s.aclose())
            up = await run_real_check(
                CheckSpec(tcp=f"127.0.0.1:{port}", interval=0.1), lambda s: s.output != ""
            )
            nursery.cancel_scope.cancel()
        down = await run_real_check(
            CheckSpec(tcp=f"127.0.0.1:{closed_port()}", interval=0.1), lambda s: s.output != ""
        )
    assert (up.status, up.output) == (P, f"TCP connect 127.0.0.1:{port}: success")
    assert down.status is C
    assert "refused" in down.output.lower()


# --- the node ----------------------------------------------------------------------------------


async def test_node_discovers_an_instance_once_its_http_check_passes_and_not_while_flapping() -> (
    None
):
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            codes: Iterator[int] = itertools.cycle([200, 200, 500])
            url, served = await serve_http_codes(nursery, lambda: next(codes))
            node, _ = await start_node(nursery, fast_config("h0"))
            spec = CheckSpec(
                http=url, interval=0.1, success_before_passing=3, failures_before_critical=2
            )
            entry = await node.register("web", instance_id="w1", port=80, checks=[spec])
            assert entry.status is C
            assert entry.checks == (CheckState("service:w1", CheckKind.HTTP, C, ""),)
            assert node.discover("web") == []
            await wait_until(lambda: len(served) >= 15)
            # never 3 passes nor 2 failures in a row: the entry was never written again
            assert node.protocol.table.get(("web", "w1")) == entry
            assert [e.instance_id for e in node.discover("web", passing_only=False)] == ["w1"]
            codes = itertools.repeat(200)
            await wait_until(lambda: [e.instance_id for e in node.discover("web")] == ["w1"])
            [found] = node.discover("web")
            assert found.checks[0].status is P
            assert found.checks[0].output.startswith(f"HTTP GET {url}: 200")
            assert node.check_counts() == {"passing": 1, "warning": 0, "critical": 0}
            nursery.cancel_scope.cancel()


async def test_node_ttl_check_expires_and_recovers_on_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        async with Node(NodeConfig("ttl0")) as node:
            await node.register("web", instance_id="w1", port=80, checks=[CheckSpec(ttl=10.0)])
            assert node.discover("web") == []
            await node.update_ttl("service:w1", P, "ready")
            [entry] = node.discover("web")
            assert entry.checks == (CheckState("service:w1", CheckKind.TTL, P, "ready"),)
            await trio.sleep(11)
            assert node.discover("web") == []
            [entry] = node.discover("web", passing_only=False)
            assert (entry.status, entry.checks[0].output) == (C, "TTL expired")
            await node.update_ttl("service:w1", P)
            assert len(node.discover("web")) == 1
            with pytest.raises(KeyError):
                await node.update_ttl("service:nope", P)


async def test_node_worst_check_decides_and_deregister_stops_the_checks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        async with Node(NodeConfig("ttl1")) as node:
            checks = [CheckSpec(ttl=10.0), CheckSpec(ttl=10.0, check_id="db")]
            await node.register("web", instance_id="w1", port=80, checks=checks)
            await node.update_ttl("service:w1:1", P)
            await node.update_ttl("db", W, "replica lag")
            [entry] = node.discover("web", passing_only=False)
            assert entry.status is W
            assert node.check_counts() == {"passing": 1, "warning": 1, "critical": 0}
            await node.deregister("w1")
            assert node.check_counts() == {"passing": 0, "warning": 0, "critical": 0}
            with pytest.raises(KeyError):
                await node.update_ttl("db", P)


async def test_node_reregistering_replaces_the_checks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        async with Node(NodeConfig("ttl2")) as node:
            await node.register("web", instance_id="w1", port=80, checks=[CheckSpec(ttl=5.0)])
            entry = await node.register("web", instance_id="w1", port=80)
            assert (entry.status, entry.checks) == (P, ())
            assert sum(node.check_counts().values()) == 0
            await trio.sleep(10)  # the old TTL task is gone: nothing expires
            assert node.discover("web")[0].status is P


@pytest.mark.parametrize(
    ("checks", "message"),
    [
        ([CheckSpec(ttl=1.0)] * 33, "checks: at most 32 per instance"),
        (
            [CheckSpec(ttl=1.0, check_id="c" * 129)],
            "checks.id: must be 1..128 printable characters",
        ),
        ([CheckSpec(ttl=1.0, check_id="x")] * 2, "checks: id 'x' used twice"),
        ([CheckSpec(ttl=1.0, name="n" * 129)], "checks.name: must be 1..128 printable characters"),
        (["ttl"], "checks: must be a list of CheckSpec"),
        ([CheckSpec(ttl=1.0, check_id=f"{i:03d}".ljust(120, "c")) for i in range(32)], "regi"),
    ],
)
async def test_node_refuses_bad_checks_naming_the_problem(
    autojump_clock: trio.testing.MockClock, checks: list[CheckSpec], message: str
) -> None:
    with trio.fail_after(100):
        async with Node(NodeConfig("bad")) as node:
            with pytest.raises(ValueError, match=message):
                await node.register("web", instance_id="w1", port=80, checks=checks)
            assert node.discover("web", passing_only=False) == []
            assert sum(node.check_counts().values()) == 0


async def test_node_limits_its_checks_and_check_ids_are_unique_on_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with Node(NodeConfig("lim", max_checks_per_node=3)) as node:
            two = [CheckSpec(ttl=5.0), CheckSpec(ttl=5.0)]
            await node.register("web", instance_id="w1", port=80, checks=two)
            await node.register("web", instance_id="w1", port=80, checks=[*two, CheckSpec(ttl=1.0)])
            with pytest.raises(ValueError, match=r"at most 3 checks \(max_checks_per_node\)"):
                await node.register("web", instance_id="w2", port=80, checks=[CheckSpec(ttl=5.0)])
            with pytest.raises(ValueError, match="'service:w1:1' is in use by web/w1"):
                await node.register(
                    "api",
                    instance_id="a",
                    port=80,
                    checks=[CheckSpec(ttl=5.0, check_id="service:w1:1")],
                )
    with pytest.raises(ValueError, match="max_checks_per_node"):
        Node(NodeConfig("lim", max_checks_per_node=-1))


async def test_deregister_after_removes_the_instance_on_every_node() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nodes = [n for n, _ in await start_cluster(nursery, 3)]
            spec = CheckSpec(ttl=0.2, deregister_after=0.5)
            await nodes[0].register("web", instance_id="w1", port=80, checks=[spec])
            await nodes[0].update_ttl("service:w1", P)
            await wait_until(lambda: all(len(n.discover("web")) == 1 for n in nodes))
            # no more reports: critical after 0.2 s, deregistered 0.5 s later, everywhere
            await wait_until(
                lambda: all(n.discover("web", passing_only=False) == [] for n in nodes)
            )
            tombstone = nodes[2].protocol.table.get(("web", "w1"))
            assert tombstone is not None
            assert tombstone.deleted
            assert nodes[0].check_counts() == {"passing": 0, "warning": 0, "critical": 0}
            nursery.cancel_scope.cancel()


def test_snapshot_keeps_the_check_specs_with_their_entries() -> None:
    specs = assign_check_ids(
        "w1",
        [
            CheckSpec(http="http://127.0.0.1:1/h", interval=0.5, success_before_passing=2),
            CheckSpec(ttl=30.0, deregister_after=600.0, name="heartbeat"),
        ],
    )
    entry = Entry("web", "w1", "10.0.0.1", 80, (), {}, 1, C, "", "n1", 3, 7, False)
    entry = replace(entry, checks=initial_states(specs))
    snapshot = Snapshot("n1", 3, entries=(entry,), checks=((KEY, specs),))
    assert decode_snapshot(encode_snapshot(snapshot)) == snapshot
    orphan = Snapshot("n1", 3, checks=((KEY, specs),))
    with pytest.raises(ValueError, match="not our live entry"):
        decode_snapshot(encode_snapshot(orphan))


async def test_a_node_restarted_from_its_snapshot_runs_its_checks_again(tmp_path: Path) -> None:
    with trio.fail_after(15):
        config = fast_config("snap", data_dir=tmp_path)
        spec = CheckSpec(ttl=30.0, name="heartbeat")
        async with Node(config) as node:
            await node.register("web", instance_id="w1", port=80, checks=[spec])
            await node.update_ttl("service:w1", W, "warming up")
        snapshot = decode_snapshot((tmp_path / "snapshot.msgpack").read_bytes())
        assert snapshot.checks == (
            (KEY, (CheckSpec(ttl=30.0, name="heartbeat", check_id="service:w1"),)),
        )
        [entry] = snapshot.entries
        assert entry.checks == (CheckState("service:w1", CheckKind.TTL, W, "warming up"),)
        async with Node(config) as node:
            [restored] = node.discover("web", passing_only=False)
            assert restored.status is W  # the last known state, not critical again
            assert node.check_counts() == {"passing": 0, "warning": 1, "critical": 0}
            await node.update_ttl("service:w1", P)
            assert len(node.discover("web")) == 1


async def test_two_hundred_checks_keep_the_node_responsive() -> None:
    with trio.fail_after(45):
        async with trio.open_nursery() as nursery:
            url, served = await serve_http_codes(nursery, lambda: 200)
            node, _ = await start_node(nursery, fast_config("busy", http=("127.0.0.1", 0)))
            assert node.http_addr is not None
            # A probe timeout of a few hundred ms failed probes on a loaded machine (load
            # 5-12 on 2 cores), which is not what this test is about: responsiveness is.
            spec = CheckSpec(http=url, interval=1.0, timeout=1.0)
            for i in range(200):
                await node.register("web", instance_id=f"w{i}", port=80, checks=[spec])
            base = f"http://{node.http_addr[0]}:{node.http_addr[1]}"
            async with httpx.AsyncClient(base_url=base) as client:
                for _ in range(10):
                    with trio.fail_after(2):  # a bound, not a timing assertion
                        response = await client.get("/healthz")
                    assert response.status_code == 200
                await wait_until(lambda: len(node.discover("web")) == 200, timeout=30)
                listed = await client.get("/v1/services/web")
                assert len(listed.json()) == 200
            assert len(served) >= 200
            nursery.cancel_scope.cancel()
