"""A private nginx for tests and benchmarks: its own prefix, config and logs, stopped by PID.

The master runs in the foreground (``daemon off``) as our child, so its PID
is the ``Popen``'s; nothing here touches the system's nginx service, its
config or its logs (``-p``, ``-c`` and ``-e`` point into our directory).
The server proxies every request on ``127.0.0.1:PORT`` to upstream ``web``,
whose block comes from ``upstreams.conf`` (rendered by ``gossip-registry
render`` from ``examples/nginx/upstreams.conf.j2``), and tries the next
server on a refused connection, as the example's site config does.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from gossip_registry.chaos.processes import ROOT, spawn, stop_processes
from tests.support.processes import free_ports

__all__ = ["PLACEHOLDER", "Nginx", "RenderedNginx"]

PLACEHOLDER = "upstream web {\n    server 127.0.0.1:1 down;\n}\n"
"""What ``upstreams.conf`` holds before the first rendering (nginx needs one server)."""
START_TIMEOUT = 10.0
"""Seconds for nginx to accept connections after it was started."""

CONFIG = """\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 512; }}
http {{
    log_format upstreams '$msec $upstream_addr $status';
    access_log {prefix}/access.log upstreams;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    include {prefix}/upstreams.conf;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://web;
            proxy_connect_timeout 1s;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, binary: str, prefix: Path, port: int) -> None:
        self.binary, self.prefix, self.port = binary, prefix.resolve(), port
        self.conf = self.prefix / "nginx.conf"
        self.upstreams = self.prefix / "upstreams.conf"
        self.error_log = self.prefix / "error.log"
        self.access_log = self.prefix / "access.log"
        self.process: subprocess.Popen[bytes] | None = None

    def argv(self, *extra: str) -> list[str]:
        return [
            self.binary, "-p", f"{self.prefix}/", "-c", str(self.conf),
            "-e", str(self.error_log), *extra,
        ]  # fmt: skip

    @property
    def reload_command(self) -> str:
        """The shell command ``render --exec`` runs: re-read the config, gracefully."""
        return shlex.join(self.argv("-s", "reload"))

    def start(self) -> None:
        """Write the config (and the placeholder upstream), start the master, wait for the port.

        Raises:
            RuntimeError: nginx exited or did not listen in time (its error log quoted).
        """
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONFIG.format(prefix=self.prefix, port=self.port))
        if not self.upstreams.exists():
            self.upstreams.write_text(PLACEHOLDER)
        self.process = spawn(self.argv(), self.prefix / "nginx.out", self.prefix)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)  # a bounded poll for the port, not a synchronisation guess
        self.stop()
        raise RuntimeError(f"nginx did not start; {self.error_log}:\n{self.log_tail()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.error_log.read_text().splitlines()[-lines:])
        return "(no error log)"

    def workers(self) -> list[tuple[int, str]]:
        """(PID, start time) of the master's children, its workers, from /proc."""
        if self.process is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    fields = _stat(int(entry.name))
                    if int(fields[1]) == self.process.pid:
                        found.append((int(entry.name), fields[19]))
        return found

    def stop(self) -> None:
        """SIGTERM the master (fast shutdown: it stops its workers), SIGKILL if it lingers.

        A worker left behind by a killed master is killed by its PID, if that
        PID still has the worker's start time (else it is another process now).
        """
        if self.process is None:
            return
        workers = self.workers()
        stop_processes([self.process], grace=5.0)
        for pid, started in workers:
            with contextlib.suppress(OSError, IndexError):
                if _stat(pid)[19] == started:
                    os.kill(pid, signal.SIGKILL)
        self.process = None


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after "(comm)": [state, ppid, ...]; index 19 is the start time."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


class RenderedNginx:
    """A private nginx and ``gossip-registry render`` keeping its upstream ``web`` current.

    render follows the node API at ``api``, writes ``upstreams.conf`` from
    ``examples/nginx/upstreams.conf.j2`` and reloads nginx; requests to
    ``url`` go through nginx. Both processes are ours, started in ``start``
    and stopped by PID in ``stop``. Shaped as a balancer of
    ``scripts/bench_integrations.py`` (``port``, ``attempts()``, ``stop()``).
    """

    def __init__(self, binary: str, workdir: Path, api: str, wait: str = "100ms:1s") -> None:
        self.workdir = workdir
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.nginx = Nginx(binary, workdir / "nginx", self.port)
        self._api, self._wait = api, wait
        self._render: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._attempts: Counter[int] = Counter()

    def start(self) -> None:
        self.nginx.start()
        render = [
            sys.executable, "-m", "gossip_registry", "render", "--http", self._api,
            "--template", str(ROOT / "examples" / "nginx" / "upstreams.conf.j2"),
            "--out", str(self.nginx.upstreams), "--wait", self._wait,
            "--exec", self.nginx.reload_command,
        ]  # fmt: skip
        self._render = spawn(render, self.workdir / "render.log", self.workdir)

    def stop(self) -> None:
        try:
            if self._render is not None:
                stop_processes([self._render], grace=5.0)
                self._render = None
        finally:
            self.nginx.stop()

    def running(self) -> bool:
        return self._render is not None and self._render.poll() is None and self.nginx.running()

    def logs(self) -> str:
        """render's log and nginx's error log, for a failure message."""
        render = (self.workdir / "render.log").read_text(errors="replace")[-3000:]
        return f"render.log:\n{render}\nnginx error.log:\n{self.nginx.log_tail()}"

    async def attempts(self) -> dict[int, int]:
        """Requests nginx sent so far to each instance port (retries included), from its
        access log's ``$upstream_addr``."""
        with open(self.nginx.access_log, "rb") as log:
            log.seek(self._log_offset)
            chunk = log.read()
        complete = chunk.rfind(b"\n") + 1
        self._log_offset += complete
        for line in chunk[:complete].decode(errors="replace").splitlines():
            for address in line.split(" ", 1)[-1].rsplit(" ", 1)[0].split(", "):
                host, _, port = address.strip().rpartition(":")
                if host and port.isdigit():
                    self._attempts[int(port)] += 1
        return dict(self._attempts)
