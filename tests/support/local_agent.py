"""One agent process on free loopback ports, with the calls a test or bench makes to it.

It registers instances of service ``web`` named ``web-PORT`` at
127.0.0.1:PORT, as the backends of ``tests/support/backends.py`` listen.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any

import httpx
import trio

from gossip_registry.chaos.processes import agent_argv, spawn, stop_processes
from tests.support.processes import free_ports

__all__ = ["LocalAgent"]


class LocalAgent:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._gossip, http = free_ports(2)
        self.api = f"http://127.0.0.1:{http}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the agent; its API may not answer yet (``ready``)."""
        argv = agent_argv(
            "--name", "n0", "--bind", f"127.0.0.1:{self._gossip}",
            "--http", self.api, "--profile", "local",
        )  # fmt: skip
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = spawn(argv, self.workdir / "agent.log", self.workdir)

    def stop(self) -> None:
        if self.process is not None:
            stop_processes([self.process], grace=5.0)
            self.process = None

    async def ready(self, http: httpx.AsyncClient, timeout: float = 20.0) -> None:
        """Return once the API answers (a bounded poll)."""
        with trio.fail_after(timeout):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(self.api + "/healthz")).status_code == 200:
                        return
                await trio.sleep(0.05)

    async def register(self, http: httpx.AsyncClient, port: int, **fields: Any) -> None:
        body = {"name": "web", "id": f"web-{port}", "address": "127.0.0.1", "port": port}
        (await http.put(self.api + "/v1/services", json={**body, **fields})).raise_for_status()

    async def deregister(self, http: httpx.AsyncClient, port: int) -> None:
        (await http.delete(f"{self.api}/v1/services/web-{port}")).raise_for_status()

    async def passing(self, http: httpx.AsyncClient) -> set[int]:
        """Ports of the passing ``web`` instances, as this node sees them."""
        answer = await http.get(self.api + "/v1/services/web", params={"passing": "true"})
        answer.raise_for_status()
        return {int(i["port"]) for i in answer.json()}
