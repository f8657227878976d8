"""Sealed gossip between real nodes on loopback: who gets in, what is dropped, rotation.

Each refusal test has its control: the same bytes or node with the right key
get in, so the assertion that something stayed out can fail.
"""

from __future__ import annotations

import itertools
import json
import random
import stat
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner

from gossip_registry.cli import cli
from gossip_registry.core.codec import encode_packet, encode_stream
from gossip_registry.core.messages import Alive, EntryUpdate, Packet, Ping
from gossip_registry.crypto.keyring import UDP, Keyring, encode_key, fingerprint
from gossip_registry.registry.entry import Entry, Health
from gossip_registry.runtime.node import Node
from gossip_registry.runtime.transport import encode_frame
from tests.integration import alive_count, fast_config, start_cluster, start_node, wait_until

OLD = bytes(range(32))
NEW = bytes(range(32, 64))
WRONG = bytes(range(64, 96))


WRITE_TOKEN = "keys-write-token"


def keyring(*keys: bytes) -> Keyring:
    return Keyring(keys)


def member_names(node: Node) -> set[str]:
    return {m.name for m in node.members() if m.state.label == "alive"}


def forged_entry(owner: str) -> Entry:
    return Entry(
        service="evil", instance_id="evil-1", address="198.18.0.66", port=80,
        tags=(), meta={}, weight=1, status=Health.PASSING, output="", owner=owner,
        owner_incarnation=5, stamp=1 << 40, deleted=False,
    )  # fmt: skip


def forged_packet(owner: str) -> bytes:
    """An alive for a member that does not exist and an entry it "owns"."""
    alive = Alive(owner, ("198.18.0.66", 7946), 5, {})
    return encode_packet(Packet(None, (alive, EntryUpdate(forged_entry(owner)))))


async def send_udp(addr: tuple[str, int], data: bytes) -> None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.sendto(data, addr)


async def test_a_keyed_cluster_forms_and_replicates_with_every_packet_sealed() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nodes = await start_cluster(nursery, 3, keyring=keyring(OLD))
            await nodes[0][0].register("web", instance_id="web-1", port=80)
            await wait_until(lambda: all(n.discover("web") for n, _ in nodes))
            for node, _ in nodes:
                assert node.protocol.config.seal_overhead == 29
                assert node.status()["stats"].get("auth_failed", 0) == 0
            nursery.cancel_scope.cancel()


async def test_nodes_without_the_key_or_with_a_wrong_key_cannot_join() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nodes = await start_cluster(nursery, 2, keyring=keyring(OLD))
            seeds = (nodes[0][0].advertise_addr,)
            outsiders = [
                (await start_node(nursery, fast_config(name, seeds=seeds, **kw)))[0]
                for name, kw in (("plain", {}), ("wrong", {"keyring": keyring(WRONG)}))
            ]
            # The control: a node with the key joins through the same seed.
            insider, _ = await start_node(
                nursery, fast_config("insider", seeds=seeds, keyring=keyring(OLD))
            )
            await insider.register("web", port=1)
            await wait_until(lambda: all(alive_count(n) == 3 for n, _ in nodes))
            await wait_until(lambda: all(n.discover("web") for n, _ in nodes))
            # Each outsider's join reached the seed and was refused there.
            await wait_until(lambda: nodes[0][0].status()["stats"].get("auth_failed", 0) >= 2)
            for node in (*(n for n, _ in nodes), insider):
                assert member_names(node) == {"n0", "n1", "insider"}
            for outsider in outsiders:
                assert member_names(outsider) == {outsider.name}
                assert not outsider.discover("web")
            nursery.cancel_scope.cancel()


async def test_a_plaintext_packet_cannot_inject_a_member_or_an_entry() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("k", keyring=keyring(OLD)))
            digest = node.status()["digest"]
            await send_udp(node.gossip_addr, forged_packet("intruder"))
            await wait_until(lambda: node.status()["stats"].get("auth_failed", 0) == 1)
            assert member_names(node) == {"k"}
            assert node.discover("evil") == []
            assert node.status()["digest"] == digest
            # The control: the same packet sealed with the cluster key gets in.
            await send_udp(node.gossip_addr, keyring(OLD).seal(forged_packet("intruder"), UDP))
            await wait_until(lambda: node.discover("evil") != [])
            assert "intruder" in member_names(node)
            nursery.cancel_scope.cancel()


async def test_a_tampered_sealed_packet_is_dropped_and_counted() -> None:
    sealed = keyring(OLD).seal(forged_packet("intruder"), UDP)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("k", keyring=keyring(OLD)))
            for i, position in enumerate((0, 5, len(sealed) // 2, len(sealed) - 1), start=1):
                tampered = bytearray(sealed)
                tampered[position] ^= 0x01
                await send_udp(node.gossip_addr, bytes(tampered))

                def failed(i: int = i) -> bool:
                    failures: int = node.status()["stats"].get("auth_failed", 0)
                    return failures == i

                await wait_until(failed)
            assert member_names(node) == {"k"}
            assert node.discover("evil") == []
            nursery.cancel_scope.cancel()


async def test_a_plaintext_stream_frame_is_refused_and_the_connection_closed() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("k", keyring=keyring(OLD)))
            stream = await trio.open_tcp_stream(*node.gossip_addr)
            async with stream:
                await stream.send_all(encode_frame(encode_stream(Ping(1, "k", "x"))))
                try:
                    answer = await stream.receive_some(100)
                except trio.BrokenResourceError:  # reset: refused with the frame unread
                    answer = b""
                assert answer == b""  # closed without a reply
            assert node.status()["stats"]["auth_failed"] == 1
            nursery.cancel_scope.cancel()


async def test_plaintext_is_accepted_only_when_allowed_and_a_three_step_migration_works() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            # Step 1: the keyed node still sends plaintext and accepts it.
            plain, _ = await start_node(nursery, fast_config("plain"))
            await plain.register("web", port=1)
            step1, _ = await start_node(
                nursery,
                fast_config(
                    "step1",
                    seeds=(plain.advertise_addr,),
                    keyring=keyring(OLD),
                    gossip_allow_plaintext=True,
                    gossip_encrypt_outgoing=False,
                ),
            )
            await wait_until(lambda: alive_count(plain) == 2 and alive_count(step1) == 2)
            await wait_until(lambda: step1.discover("web") != [])
            # Step 2: sends sealed and still accepts plaintext, here from step1.
            step2, _ = await start_node(
                nursery,
                fast_config(
                    "step2",
                    seeds=(step1.advertise_addr,),
                    keyring=keyring(OLD),
                    gossip_allow_plaintext=True,
                ),
            )
            await wait_until(lambda: {"step1", "step2"} <= member_names(step2))
            await wait_until(lambda: "step2" in member_names(step1))
            # Step 3: a strict node talks with step2 and refuses step1's plaintext.
            strict, _ = await start_node(
                nursery,
                fast_config("strict", seeds=(step2.advertise_addr,), keyring=keyring(OLD)),
            )
            await wait_until(lambda: "strict" in member_names(step2))
            # (step1 stays reachable through step2's indirect probes, which is the point
            # of the migration: nobody is cut off while the steps roll out.)
            await wait_until(lambda: strict.status()["stats"].get("auth_failed", 0) > 0)
            nursery.cancel_scope.cancel()


def test_a_node_refuses_to_send_plaintext_while_refusing_it() -> None:
    with pytest.raises(ValueError, match="gossip_allow_plaintext"):
        Node(fast_config("x", keyring=keyring(OLD), gossip_encrypt_outgoing=False))


async def test_key_rotation_across_five_nodes_loses_no_registration_and_locks_out_the_old_key(
    tmp_path: Path,
) -> None:
    """install NEW, use NEW, remove OLD through the CLI and HTTP, registrations flowing."""
    # Key changes need a write token configured on the node asked (api/auth.py).
    runner = CliRunner(env={"GOSSIP_REGISTRY_HTTP": None, "GOSSIP_REGISTRY_TOKEN": WRITE_TOKEN})

    async def keys_cli(http: str, *args: str) -> dict[str, Any]:
        result = await trio.to_thread.run_sync(
            runner.invoke, cli, ["keys", *args, "--http", http, "--json"]
        )
        assert result.exit_code == 0, result.output
        body: dict[str, Any] = json.loads(result.stdout)
        assert body["failed"] == 0
        assert sorted(body["nodes"]) == ["entry", "n0", "n1", "n2", "n3"]
        return body

    registered: list[str] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nodes = [n for n, _ in await start_cluster(nursery, 4, keyring=keyring(OLD))]
            entry_node, _ = await start_node(
                nursery,
                fast_config(
                    "entry",
                    http=("127.0.0.1", 0),
                    seeds=(nodes[0].advertise_addr,),
                    keyring=keyring(OLD),
                    data_dir=tmp_path / "entry",
                    write_token=WRITE_TOKEN,
                ),
            )
            nodes.append(entry_node)
            await wait_until(lambda: all(alive_count(n) == 5 for n in nodes))
            assert entry_node.http_addr is not None
            http = "{}:{}".format(*entry_node.http_addr)
            rng = random.Random(6)
            counter = itertools.count()

            async def register_throughout() -> None:
                while True:
                    instance = f"svc-{next(counter)}"
                    await rng.choice(nodes).register("svc", instance_id=instance, port=1)
                    registered.append(instance)
                    await trio.sleep(0.02)

            async with trio.open_nursery() as flow:
                flow.start_soon(register_throughout)
                for op, key in (("install", NEW), ("use", NEW), ("remove", OLD)):
                    body = await keys_cli(http, op, encode_key(key))
                    for result in body["nodes"].values():
                        assert result["ok"], result
                        assert (result["primary"] == fingerprint(NEW)) == (op != "install")
                    made = len(registered)  # registrations keep flowing between the steps

                    def flowed(made: int = made) -> bool:
                        return len(registered) >= made + 5

                    await wait_until(flowed)
                flow.cancel_scope.cancel()
            listed = await keys_cli(http, "list")
            assert {r["primary"] for r in listed["nodes"].values()} == {fingerprint(NEW)}
            assert {tuple(r["keys"]) for r in listed["nodes"].values()} == {(fingerprint(NEW),)}
            # Nothing lost: every node holds every registration made during the rotation.
            expected = set(registered)
            assert len(expected) > 10

            def missing() -> dict[str, int]:
                held = {n.name: {e.instance_id for e in n.discover("svc")} for n in nodes}
                return {name: len(expected - ids) for name, ids in held.items() if ids != expected}

            await wait_until(lambda: not missing(), timeout=15)
            # The rotation persisted: the entry node's keyring file holds NEW only, 0600.
            keyring_file = tmp_path / "entry" / "keyring.json"
            assert json.loads(keyring_file.read_text()) == [encode_key(NEW)]
            assert stat.S_IMODE(keyring_file.stat().st_mode) == 0o600
            # A node still holding only OLD is locked out: its join is refused at the seed.
            refused = nodes[0].status()["stats"].get("auth_failed", 0)
            stale, _ = await start_node(
                nursery,
                fast_config("stale", seeds=(nodes[0].advertise_addr,), keyring=keyring(OLD)),
            )
            await wait_until(lambda: nodes[0].status()["stats"].get("auth_failed", 0) > refused)
            assert member_names(stale) == {"stale"}
            assert all("stale" not in member_names(n) for n in nodes)
            nursery.cancel_scope.cancel()


async def test_key_operations_report_per_node_failures_and_the_guard_rails() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nodes = [n for n, _ in await start_cluster(nursery, 2, keyring=keyring(OLD))]
            first = nodes[0]
            removed = await first.keyring_operation("remove", encode_key(OLD))
            assert {r["ok"] for r in removed.values()} == {False}
            assert "primary" in removed["n1"]["error"]
            used = await first.keyring_operation("use", encode_key(NEW))
            assert "not installed" in used["n0"]["error"]
            assert "not installed" in used["n1"]["error"]
            plain, _ = await start_node(nursery, fast_config("plain"))
            with pytest.raises(ValueError, match="not enabled"):
                await plain.keyring_operation("list")
            nursery.cancel_scope.cancel()


async def test_a_restarted_node_keeps_its_rotated_keys_and_a_readable_file_is_refused(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "n"
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            node, scope = await start_node(
                nursery, fast_config("n", keyring=keyring(OLD), data_dir=data_dir)
            )
            await node.keyring_operation("install", encode_key(NEW))
            await node.keyring_operation("use", encode_key(NEW))
            scope.cancel()
            await node.wait_stopped()
            # Restarted with the old key on its command line: the file wins.
            again, _ = await start_node(
                nursery, fast_config("n", keyring=keyring(OLD), data_dir=data_dir)
            )
            listed = await again.keyring_operation("list")
            assert listed["n"]["keys"] == [fingerprint(NEW), fingerprint(OLD)]
            nursery.cancel_scope.cancel()
    (data_dir / "keyring.json").chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        Node(fast_config("n", data_dir=data_dir))


def test_keygen_prints_a_key_that_decodes_to_32_bytes() -> None:
    import base64

    outputs = set()
    for _ in range(2):
        result = CliRunner().invoke(cli, ["keygen"])
        assert result.exit_code == 0
        assert len(base64.b64decode(result.stdout.strip(), validate=True)) == 32
        outputs.add(result.stdout)
    assert len(outputs) == 2


async def test_keys_cli_prints_per_node_results_and_exits_1_when_any_node_failed() -> None:
    runner = CliRunner(env={"GOSSIP_REGISTRY_HTTP": None, "GOSSIP_REGISTRY_TOKEN": WRITE_TOKEN})

    async def keys_cli(http: str, *args: str) -> Any:
        return await trio.to_thread.run_sync(runner.invoke, cli, ["keys", *args, "--http", http])

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            keyed = (
                await start_node(
                    nursery,
                    fast_config(
                        "k", http=("127.0.0.1", 0), keyring=keyring(OLD), write_token=WRITE_TOKEN
                    ),
                )
            )[0]
            plain = (await start_node(nursery, fast_config("p", http=("127.0.0.1", 0))))[0]
            assert keyed.http_addr is not None
            assert plain.http_addr is not None
            keyed_http = "{}:{}".format(*keyed.http_addr)
            plain_http = "{}:{}".format(*plain.http_addr)
            listed = await keys_cli(keyed_http, "list")
            assert listed.exit_code == 0, listed.output
            assert listed.stdout.split() == [
                "NODE",
                "RESULT",
                "KEYS",
                "k",
                "ok",
                f"*{fingerprint(OLD)}",
            ]
            refused = await keys_cli(keyed_http, "remove", encode_key(OLD))
            assert refused.exit_code == 1
            assert "is the primary key" in refused.stdout
            assert "remove failed on 1 of 1 nodes" in refused.stderr
            malformed = await keys_cli(keyed_http, "install", "abc")
            assert malformed.exit_code == 1
            assert "base64" in malformed.stderr
            disabled = await keys_cli(plain_http, "list")
            assert disabled.exit_code == 1
            assert "not enabled" in disabled.stderr
            nursery.cancel_scope.cancel()
