"""Joined means synced, and every normal exit is a graceful leave.

A newcomer's first program opens a node and asks it for a service at once:
the node must already hold the cluster's table. It then stops the program
(end of the block, cancellation, Ctrl-C, ``ThreadedNode.stop``, interpreter
exit): peers must see the node ``left`` within a second and stop handing
out its instances, not wait seconds for failure detection to call it dead.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
import trio

from gossip_registry.core.messages import MemberState
from gossip_registry.runtime.node import Node, NotSynced
from gossip_registry.runtime.threaded import ThreadedNode
from tests.integration import default_sigint, eventually, fast_config, start_node, wait_until
from tests.integration.test_node import reserve_port

SEEN_LEFT_WITHIN = 1.0
"""The issue's bound: peers see a stopped node ``left`` this soon, its instances gone."""


def state_of(node: Node, name: str) -> MemberState | None:
    return next((m.state for m in node.members() if m.name == name), None)


def left_and_gone(peer: Node, name: str, service: str) -> bool:
    return state_of(peer, name) is MemberState.LEFT and peer.discover(service) == []


# Joined means synced.


async def test_discover_right_after_async_with_finds_what_the_cluster_holds() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            seed, _ = await start_node(nursery, fast_config("seed"))
            await seed.register("ledger", instance_id="ledger-1", port=9001)
            config = fast_config("newcomer", seeds=(seed.advertise_addr,))
            async with Node(config) as node:
                assert node.synced
                assert [e.instance_id for e in node.discover("ledger")] == ["ledger-1"]
            nursery.cancel_scope.cancel()


async def test_wait_synced_is_true_once_a_node_run_in_a_nursery_has_synced() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            seed, _ = await start_node(nursery, fast_config("seed"))
            node, _ = await start_node(nursery, fast_config("n", seeds=(seed.advertise_addr,)))
            assert await node.wait_synced(5.0)
            assert await node.wait_synced(0)  # at once, once synced
            nursery.cancel_scope.cancel()


async def test_a_node_without_seeds_says_it_starts_a_cluster_of_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "gossip_registry")
    with trio.fail_after(5):
        async with Node(fast_config("first")) as node:
            assert not node.synced
            assert not await node.wait_synced(0.05)
    assert "node first has no seeds: it starts a cluster of its own" in caplog.text


async def test_seeds_that_do_not_answer_give_a_warning_after_the_sync_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    udp, tcp = reserve_port()  # bound, not listening: connections are refused
    with udp, tcp, trio.fail_after(10):
        silent = udp.getsockname()
        async with Node(fast_config("lonely", seeds=(silent,), sync_timeout=0.5)) as node:
            assert not node.synced
    assert f"no seed answered within 0.5s ({silent[0]}:{silent[1]})" in caplog.text


async def test_seeds_that_do_not_answer_are_an_error_when_a_sync_is_required() -> None:
    udp, tcp = reserve_port()
    with udp, tcp, trio.fail_after(10):
        config = fast_config(
            "strict", seeds=(udp.getsockname(),), sync_timeout=0.5, sync_required=True
        )
        node = Node(config)
        with pytest.raises(NotSynced, match=r"no seed answered within 0\.5s"):
            async with node:
                pytest.fail("the block must not run")
        assert not node.running
        assert node.transport.udp.fileno() == -1


# Every normal exit leaves.


async def test_cancelling_the_scope_of_an_async_with_node_leaves_gracefully() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            peer, _ = await start_node(nursery, fast_config("peer"))
            with trio.CancelScope() as scope:
                config = fast_config("embedded", seeds=(peer.advertise_addr,))
                async with Node(config) as node:
                    await node.register("billing", instance_id="billing-1", port=9000)
                    await wait_until(lambda: len(peer.discover("billing")) == 1)
                    scope.cancel()
                    await trio.sleep_forever()
            assert not node.running
            await wait_until(lambda: left_and_gone(peer, "embedded", "billing"), SEEN_LEFT_WITHIN)
            nursery.cancel_scope.cancel()


async def test_an_error_in_the_block_leaves_and_still_propagates() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            peer, _ = await start_node(nursery, fast_config("peer"))

            async def fail_inside() -> None:
                async with Node(fast_config("e", seeds=(peer.advertise_addr,))) as node:
                    await node.register("billing", instance_id="billing-1", port=9000)
                    await wait_until(lambda: len(peer.discover("billing")) == 1)
                    _ = 1 / 0

            with pytest.raises(ZeroDivisionError):
                await fail_inside()
            await wait_until(lambda: left_and_gone(peer, "e", "billing"), SEEN_LEFT_WITHIN)
            nursery.cancel_scope.cancel()


EMBEDDED = textwrap.dedent(
    """
    import sys, trio
    from gossip_registry import Node, NodeConfig

    async def main() -> None:
        seed = ("127.0.0.1", int(sys.argv[1]))
        config = NodeConfig(name="child", seeds=(seed,), leave_timeout=2.0)
        async with Node(config) as node:
            await node.register("billing", instance_id="billing-1", port=9000)
            print("ready", flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)

THREADED_ATEXIT = textwrap.dedent(
    """
    import sys
    from gossip_registry import NodeConfig, ThreadedNode

    seed = ("127.0.0.1", int(sys.argv[1]))
    node = ThreadedNode(NodeConfig(name="child", seeds=(seed,), leave_timeout=2.0))
    node.register("billing", instance_id="billing-1", port=9000)
    print("ready", flush=True)
    sys.stdin.readline()  # the interpreter exits without stop(): the atexit hook leaves
    """
)


async def _child_leaves(script: str, stop: signal.Signals | None) -> None:
    """Run ``script`` against a peer, stop it (a signal, else closing its stdin), check it left."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            peer, _ = await start_node(nursery, fast_config("peer"))
            argv = [sys.executable, "-c", script, str(peer.advertise_addr[1])]
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                preexec_fn=default_sigint,
            )
            try:
                assert process.stdout is not None
                assert process.stdin is not None
                line = b""
                while not line.endswith(b"\n"):
                    chunk = await process.stdout.receive_some(1)
                    assert chunk, "the child exited before it was ready"
                    line += chunk
                assert line == b"ready\n"
                await wait_until(lambda: len(peer.discover("billing")) == 1)
                if stop is None:
                    await process.stdin.aclose()
                else:
                    process.send_signal(stop)
                await wait_until(lambda: left_and_gone(peer, "child", "billing"), SEEN_LEFT_WITHIN)
                await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            nursery.cancel_scope.cancel()


async def test_ctrl_c_of_a_trio_program_embedding_a_node_leaves() -> None:
    await _child_leaves(EMBEDDED, signal.SIGINT)


async def test_a_program_exiting_without_stopping_its_threaded_node_leaves() -> None:
    await _child_leaves(THREADED_ATEXIT, None)


def test_threaded_stop_leaves_and_peers_see_left_within_a_second() -> None:
    with ThreadedNode(fast_config("peer")) as peer:
        node = ThreadedNode(fast_config("t", seeds=(peer.advertise_addr,))).start()
        node.register("billing", instance_id="billing-1", port=9000)
        eventually(lambda: len(peer.discover("billing")) == 1)
        node.stop()
        stopped = time.monotonic()

        def seen_left() -> bool:
            states = {m.name: m.state for m in peer.members()}
            return states.get("t") is MemberState.LEFT and peer.discover("billing") == []

        eventually(seen_left, SEEN_LEFT_WITHIN)
        assert time.monotonic() - stopped < SEEN_LEFT_WITHIN


def test_a_threaded_node_used_without_start_starts_synced_on_first_call() -> None:
    with ThreadedNode(fast_config("seed")) as seed:
        seed.register("ledger", instance_id="ledger-1", port=9001)
        node = ThreadedNode(fast_config("flask-1", seeds=(seed.advertise_addr,)))
        try:
            assert [e.instance_id for e in node.discover("ledger")] == ["ledger-1"]
            assert node.running
        finally:
            node.stop()


async def test_the_protocols_work_runs_protected_from_ctrl_c() -> None:
    """A Ctrl-C landing in a node task would crash the node; trio defers it to the main task."""
    protected: list[bool] = []
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("n"))
            protocol = node.protocol
            for name in ("handle_packet", "handle_stream", "handle_timer", "handle_stream_reply"):
                original = getattr(protocol, name)

                def spy(*args: object, _original: Any = original) -> Any:
                    protected.append(trio.lowlevel.currently_ki_protected())
                    return _original(*args)

                setattr(protocol, name, spy)
            other, _ = await start_node(nursery, fast_config("o", seeds=(node.advertise_addr,)))
            assert await other.wait_synced(5.0)
            assert await node.join([other.advertise_addr]) == 1
            await wait_until(lambda: len(protected) > 20)
            nursery.cancel_scope.cancel()
    assert all(protected)
