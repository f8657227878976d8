"""client/node_api.py: one node's HTTP API on the standard library, for the CLI's commands."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

from gossip_registry.client import RegistryError
from gossip_registry.client.node_api import NodeApi, NodeUnreachable
from tests.integration import fast_config, start_node
from tests.support.processes import free_ports


async def test_members_and_a_registration_round_trip() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            node, scope = await start_node(nursery, fast_config("a", http=("127.0.0.1", 0)))
            assert node.http_addr is not None
            api = NodeApi(*node.http_addr, timeout=5.0)
            body = {"name": "web", "id": "w1", "port": 80}

            members = await trio.to_thread.run_sync(api.call, "GET", "/v1/members")
            await trio.to_thread.run_sync(lambda: api.call("PUT", "/v1/services", json_body=body))
            found = await trio.to_thread.run_sync(
                lambda: api.call("GET", "/v1/services/web", params={"passing": "false"})
            )
            with pytest.raises(RegistryError) as refused:
                await trio.to_thread.run_sync(
                    lambda: api.call("PUT", "/v1/services", json_body={"name": "web"})
                )
            scope.cancel()

    assert [m["name"] for m in members] == ["a"]
    assert [x["id"] for x in found] == ["w1"]
    assert refused.value.status == 400
    assert refused.value.message == "port: required"


def test_a_closed_port_is_unreachable_with_the_reason_in_words() -> None:
    (port,) = free_ports(1)

    with pytest.raises(NodeUnreachable, match=r"^connection refused$"):
        NodeApi("127.0.0.1", port, timeout=2.0).call("GET", "/v1/members")


def test_the_cli_client_commands_import_neither_httpx_nor_trio() -> None:
    code = (
        "import sys, gossip_registry.cli.client, gossip_registry.client.node_api; "
        "print(sorted({'httpx', 'trio', 'httpcore'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )

    assert done.stdout.strip() == "[]"
