"""Issue 10 against real nodes on loopback: hostile datagrams and snapshots."""

from __future__ import annotations

import socket
from pathlib import Path

import trio

from gossip_registry.core.codec import MAX_INCARNATION, encode_packet
from gossip_registry.core.messages import Dead, MemberState, Packet
from gossip_registry.runtime.storage.snapshot import Snapshot, write_snapshot
from tests.integration import fast_config, start_cluster, start_node, wait_until


def forged_dead(name: str) -> bytes:
    """The 27-byte plaintext datagram of finding 1: ``name`` dead at 2**63-1."""
    data = encode_packet(Packet(None, (Dead(name, MAX_INCARNATION, "attacker"),)))
    assert len(data) == 27
    return data


async def test_the_top_incarnation_dead_datagram_leaves_every_node_alive_and_writable() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nodes = [node for node, _ in await start_cluster(nursery, 3)]
            victim = nodes[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
                for node in nodes:
                    attacker.sendto(forged_dead(victim.name), node.advertise_addr)
            await wait_until(
                lambda: all(n.protocol.stats["incarnations_refused"] >= 1 for n in nodes)
            )
            assert victim.protocol.incarnation < 2**62
            for node in nodes:
                states = {m.name: (m.state, m.incarnation) for m in node.members()}
                assert states[victim.name][0] is MemberState.ALIVE
            await victim.register("web", instance_id="after-attack", port=80)
            await wait_until(lambda: all(n.discover("web") for n in nodes))
            nursery.cancel_scope.cancel()


async def test_a_snapshot_at_the_top_incarnation_restarts_from_zero_and_rejoins(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nodes = [node for node, _ in await start_cluster(nursery, 2)]
            data_dir = tmp_path / "n9"
            data_dir.mkdir()
            write_snapshot(data_dir, Snapshot("n9", MAX_INCARNATION, (), ()))
            config = fast_config("n9", seeds=(nodes[0].advertise_addr,), data_dir=data_dir)
            late, _ = await start_node(nursery, config)
            assert late.protocol.incarnation == 0
            await wait_until(
                lambda: all(
                    any(m.name == "n9" and m.state is MemberState.ALIVE for m in n.members())
                    for n in nodes
                )
            )
            await late.register("web", instance_id="restored", port=80)
            await wait_until(lambda: all(n.discover("web") for n in nodes))
            nursery.cancel_scope.cancel()


async def test_services_that_come_and_go_leave_no_index_behind() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("n0"))
            for i in range(200):  # as a peer cycling service names would
                entry = await node.register(f"svc{i}", instance_id=f"i{i}", port=80)
                await node.deregister(entry.instance_id)
            assert node._index.views <= 3  # the catalog, the members, the last service at most
            assert node.index("svc0") >= 200
            nursery.cancel_scope.cancel()
