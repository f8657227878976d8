"""Debian's nginx, kept current by ``gossip-registry render`` from a real agent process.

The test starts its own nginx (prefix, config and logs in a temp dir, a free
loopback port; the system service is never touched), an agent, and render
with the shipped ``examples/nginx/upstreams.conf.j2`` and ``--exec 'nginx
-s reload'``. Backends are loopback HTTP servers that answer with their
port. Outside CI a missing nginx skips; in CI (``CI=true``) it fails.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import trio

from tests.support.backends import Instances, served_by
from tests.support.local_agent import LocalAgent
from tests.support.nginx import RenderedNginx
from tests.support.programs import require_program

REQUESTS = 30
"""Requests per look through nginx: enough that round robin over 3 reaches each."""


def nginx_binary() -> str:
    return require_program("nginx")


async def served(stack: RenderedNginx, http: httpx.AsyncClient) -> Counter[int | None]:
    return Counter([await served_by(http, stack.url) for _ in range(REQUESTS)])


async def until_served_by(
    stack: RenderedNginx, http: httpx.AsyncClient, ports: set[int], timeout: float = 20.0
) -> None:
    """Return once a round of requests is answered by exactly ``ports`` (a bounded wait)."""
    seen: Counter[int | None] = Counter()
    with trio.move_on_after(timeout):
        while set(seen) != ports:
            seen = await served(stack, http)
            assert stack.running(), stack.logs()
        return
    raise AssertionError(f"served by {dict(seen)}, not {sorted(ports)}\n{stack.logs()}")


async def test_nginx_upstreams_follow_the_registry(tmp_path: Path) -> None:
    agent = LocalAgent(tmp_path / "agent")
    stack = RenderedNginx(nginx_binary(), tmp_path, agent.api)
    try:
        agent.start()
        stack.start()
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as http:
                backends = Instances(nursery)
                a, b, c = [await backends.start() for _ in range(3)]
                await agent.ready(http)
                await agent.register(http, a)
                await agent.register(http, b)
                await until_served_by(stack, http, {a, b})
                assert "reconfiguring" in stack.nginx.error_log.read_text(), stack.logs()

                await agent.register(http, c)
                await until_served_by(stack, http, {a, b, c})

                await agent.deregister(http, a)
                await until_served_by(stack, http, {b, c})
                before = backends.hits[a], (await stack.attempts()).get(a)
                assert before[1], "nginx's access log shows no request to a"
                assert set(await served(stack, http)) == {b, c}
                after = backends.hits[a], (await stack.attempts()).get(a)
                assert after == before, "a deregistered instance still got requests"
                nursery.cancel_scope.cancel()
    finally:
        try:
            stack.stop()
        finally:
            agent.stop()
    assert "render: ran" in (tmp_path / "render.log").read_text()
