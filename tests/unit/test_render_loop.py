"""The render loop: follows the registry, writes on change, debounces, runs the command.

A fake node behind httpx.MockTransport answers /v1/services, /v1/members and
/v1/services/{name} with blocking queries, on trio's autojump clock: debounce
waits and 30 s blocking queries cost no wall time. The command runner is a
fake that records its calls (a real process and a jumping clock do not mix;
``run_command`` itself is tested on the real clock at the end).
"""

from __future__ import annotations

import random
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from gossip_registry.client import AsyncRegistryClient
from gossip_registry.render.loop import Job, RenderFailure, Settings, render_loop, run_command
from gossip_registry.render.template import TemplateFailure
from tests.integration import wait_until

UPSTREAM = (
    "upstream web {\n"
    "{% for i in service('web') %}    server {{ i.address }}:{{ i.port }};\n{% endfor %}"
    "}\n"
)


def instance(port: int, name: str = "web", status: str = "passing") -> dict[str, Any]:
    return {
        "id": f"{name}-{port}",
        "name": name,
        "address": "127.0.0.1",
        "port": port,
        "status": status,
        "node": "n1",
    }


class Registry:
    """One node's answers, blocking on ``index`` as ours does."""

    def __init__(self) -> None:
        self.instances: dict[str, list[dict[str, Any]]] = {"web": [instance(9001)]}
        self.index = 3
        self.changed = trio.Event()
        self.refuse: int | None = None
        self.asked: list[str] = []

    def set(self, name: str, *ports: int) -> None:
        old = {i["port"]: i for i in self.instances.get(name, [])}
        self.instances[name] = [old.get(p, instance(p, name)) for p in ports]
        self.index += 1
        self.changed.set()
        self.changed = trio.Event()

    def touch(self, name: str, **fields: Any) -> None:
        """Change every instance of ``name`` in a way an upstream template does not show."""
        for i in self.instances[name]:
            i.update(fields)
        self.set(name, *[i["port"] for i in self.instances[name]])

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(request.url.path)
        if self.refuse is not None:
            return httpx.Response(self.refuse, json={"error": "token: not allowed"})
        asked = request.url.params.get("index")
        if asked is not None and int(asked) == self.index:
            with trio.move_on_after(float(request.url.params["wait"].removesuffix("s"))):
                await self.changed.wait()
        path = request.url.path
        if path == "/v1/services":
            body: Any = {n: len(i) for n, i in self.instances.items() if i}
        elif path == "/v1/members":
            body = [{"name": "n1", "address": "127.0.0.1", "port": 7946, "state": "alive"}]
        else:
            name = path.removeprefix("/v1/services/")
            passing = request.url.params.get("passing") == "true"
            body = [
                i for i in self.instances.get(name, []) if i["status"] == "passing" or not passing
            ]
        return httpx.Response(200, json=body, headers={"X-Registry-Index": str(self.index)})


class Commands:
    """A fake command runner: records each run, fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.failing = False

    async def __call__(self, command: str, timeout: float, log: Callable[[str], None]) -> bool:
        self.runs.append(command)
        if self.failing:
            log(f"render: command {command!r} exited with status 1")
        return not self.failing


def client(registry: Registry) -> AsyncRegistryClient:
    return AsyncRegistryClient(
        ["http://n1"], rng=random.Random(1), transport=httpx.MockTransport(registry.handler)
    )


def job(tmp_path: Path, text: str = UPSTREAM, name: str = "web") -> Job:
    (tmp_path / f"{name}.j2").write_text(text)
    return Job(tmp_path / f"{name}.j2", tmp_path / f"{name}.conf")


@asynccontextmanager
async def rendering(
    registry: Registry, settings: Settings, commands: Commands
) -> AsyncIterator[None]:
    """The render loop running in the background over ``registry``; stopped on leaving."""
    async with client(registry) as c, trio.open_nursery() as nursery:
        nursery.start_soon(render_loop, c, settings, print, commands)
        yield
        nursery.cancel_scope.cancel()


def servers(dest: Path) -> list[str]:
    if not dest.exists():
        return []
    return [line.split()[1] for line in dest.read_text().splitlines() if "server" in line]


async def test_once_renders_every_template_and_runs_the_command_once(tmp_path: Path) -> None:
    registry = Registry()
    registry.set("api", 7001, 7002)
    jobs = [
        job(tmp_path),
        job(
            tmp_path,
            "{% for s in services() %}{{ s.name }} {% endfor %}"
            "{% for n in nodes() %}{{ n.name }}{% endfor %}",
            "all",
        ),
    ]
    commands, lines = Commands(), list[str]()
    with trio.fail_after(10):
        async with client(registry) as c:
            ok = await render_loop(
                c, Settings(jobs, command="reload", once=True), lines.append, commands
            )
    assert ok is True
    assert servers(jobs[0].dest) == ["127.0.0.1:9001;"]
    assert jobs[1].dest.read_text() == "api web n1"
    assert commands.runs == ["reload"]  # one reload for both files
    assert any("wrote" in line and "web.conf" in line for line in lines)


async def test_once_with_a_failing_command_reports_it_and_returns_false(tmp_path: Path) -> None:
    commands = Commands()
    commands.failing = True
    with trio.fail_after(10):
        async with client(Registry()) as c:
            ok = await render_loop(
                c, Settings([job(tmp_path)], command="reload", once=True), print, commands
            )
    assert ok is False


async def test_the_file_follows_the_registry_through_blocking_queries(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    registry, j, commands = Registry(), job(tmp_path), Commands()
    with trio.fail_after(600):
        async with rendering(registry, Settings([j], command="reload"), commands):
            await wait_until(lambda: servers(j.dest) == ["127.0.0.1:9001;"])
            await trio.sleep(200)  # quiet: blocking queries, no writes, no polling storm
            assert commands.runs == ["reload"]
            assert len(registry.asked) < 20
            registry.set("web", 9001, 9002)
            await wait_until(lambda: servers(j.dest) == ["127.0.0.1:9001;", "127.0.0.1:9002;"])
            await wait_until(lambda: len(commands.runs) == 2)
            registry.set("web", 9002)
            await wait_until(lambda: servers(j.dest) == ["127.0.0.1:9002;"])


async def test_an_unchanged_rendering_is_not_rewritten_and_runs_no_command(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    registry = Registry()
    j = job(tmp_path)
    j.dest.write_text("upstream web {\n    server 127.0.0.1:9001;\n}\n")  # already current
    before = j.dest.stat().st_mtime_ns, j.dest.stat().st_ino
    commands = Commands()
    with trio.fail_after(600):
        async with rendering(registry, Settings([j], command="reload"), commands):
            await wait_until(lambda: "/v1/services/web" in registry.asked)
            registry.touch("web", node="n2")
            await wait_until(lambda: registry.asked.count("/v1/services/web") >= 3)
            await trio.sleep(5)
            assert (j.dest.stat().st_mtime_ns, j.dest.stat().st_ino) == before
            assert commands.runs == []


async def test_wait_debounces_a_burst_into_one_write_min_after_its_last_change(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    registry, j, commands = Registry(), job(tmp_path), Commands()
    settings = Settings([j], command="reload", wait=(5.0, 60.0))
    with trio.fail_after(600):
        async with rendering(registry, settings, commands):
            await wait_until(lambda: len(commands.runs) == 1)
            start = trio.current_time()
            for port in (9002, 9003, 9004):
                registry.set("web", 9001, port)
                await trio.sleep(1)
            last_change = trio.current_time() - 1
            await wait_until(lambda: len(commands.runs) == 2, timeout=60)
            written = trio.current_time()
            assert servers(j.dest) == ["127.0.0.1:9001;", "127.0.0.1:9004;"]
            assert last_change + 5 <= written < last_change + 5.5
            assert written - start < 60


async def test_wait_renders_at_max_when_the_registry_never_settles(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    registry, j, commands = Registry(), job(tmp_path), Commands()
    settings = Settings([j], command="reload", wait=(5.0, 12.0))
    with trio.fail_after(600):
        async with rendering(registry, settings, commands):
            await wait_until(lambda: len(commands.runs) == 1)
            first_change = trio.current_time()
            port = 9002
            while len(commands.runs) == 1 and trio.current_time() < first_change + 30:
                registry.set("web", port)  # a change every 2 s: never quiet for 5 s
                port += 1
                await trio.sleep(2)
            assert len(commands.runs) == 2
            assert trio.current_time() - first_change <= 12 + 2


async def test_a_failed_command_is_retried_at_the_next_change_and_the_loop_goes_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    registry, j, commands = Registry(), job(tmp_path), Commands()
    commands.failing = True
    with trio.fail_after(600):
        async with rendering(registry, Settings([j], command="reload"), commands):
            await wait_until(lambda: len(commands.runs) == 1)
            commands.failing = False
            # A change that leaves the file as it is still retries the failed command.
            registry.touch("web", node="n2")
            await wait_until(lambda: len(commands.runs) == 2)
            registry.set("web", 9009)
            await wait_until(lambda: servers(j.dest) == ["127.0.0.1:9009;"])
            await wait_until(lambda: len(commands.runs) == 3)


async def test_a_view_no_longer_read_is_no_longer_followed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    registry = Registry()
    registry.set("api", 7001)
    j = job(
        tmp_path,
        "{% for s in services() %}{{ s.name }}:{{ service(s.name)|length }} {% endfor %}",
    )
    with trio.fail_after(600):
        async with rendering(registry, Settings([j]), Commands()):
            await wait_until(lambda: j.dest.exists() and j.dest.read_text() == "api:1 web:1 ")
            registry.set("api")
            await wait_until(lambda: j.dest.read_text() == "web:1 ")
            await trio.sleep(1)
            asked = len(registry.asked)
            await trio.sleep(300)
            later = registry.asked[asked:]
            assert "/v1/services/api" not in later
            assert "/v1/services/web" in later


async def test_a_template_error_at_render_time_stops_the_loop(tmp_path: Path) -> None:
    j = job(tmp_path, "{% for i in service('web') %}{{ i.nosuch }}{% endfor %}")
    with trio.fail_after(10), pytest.raises(TemplateFailure, match=r"web\.j2:1: UndefinedError"):
        async with client(Registry()) as c:
            await render_loop(c, Settings([j]), print, Commands())
    assert not j.dest.exists()


async def test_a_node_refusing_the_query_stops_the_loop_with_its_message(tmp_path: Path) -> None:
    registry = Registry()
    registry.refuse = 403
    with trio.fail_after(10), pytest.raises(RenderFailure, match=r"403.*token: not allowed"):
        async with client(registry) as c:
            await render_loop(c, Settings([job(tmp_path)]), print, Commands())


async def test_once_without_a_reachable_node_fails_instead_of_waiting(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    c = AsyncRegistryClient(["http://n1"], transport=httpx.MockTransport(refuse))
    with trio.fail_after(10), pytest.raises(RenderFailure, match="no registry node answered"):
        async with c:
            await render_loop(c, Settings([job(tmp_path)], once=True), print, Commands())


# The real command runner, on the real clock.


async def test_run_command_reports_success_failure_and_timeout() -> None:
    lines: list[str] = []
    with trio.fail_after(20):
        assert await run_command("true", 10, lines.append) is True
        assert await run_command("exit 3", 10, lines.append) is False
        assert (
            await run_command(
                f"{sys.executable} -c 'import time; time.sleep(60)'", 0.5, lines.append
            )
            is False
        )
    assert any("status 3" in line for line in lines)
    assert any("0.5s" in line for line in lines)
