"""Server-side discovery on loopback: agents with DNS, web instances, and a real HAProxy.

Shared by the HAProxy test (tests/integration/test_haproxy.py) and
scripts/bench_integrations.py (whose nginx backend uses the agents and
instances too). Every process here is started by this module
and stopped by its PID (``stop_processes``), never by name; HAProxy runs in
the foreground (``-db``) with its config, stats socket and log in a work
directory, so no system service is involved.

- ``Registry``: two agents, ``n1`` answering DNS on the ``consul.`` domain
  (what HAProxy asks) and ``n2`` owning the registrations and running their
  health checks, so every change reaches HAProxy through gossip.
- ``WebFleet``: instances of service ``web``, one stdlib HTTP server process
  each, answering ``GET /`` with its own id; registered on ``n2`` with an
  HTTP check.
- ``HAProxy``: a ``resolvers`` section on n1's DNS port and a
  ``server-template`` on ``_web._tcp.service.consul``; its view through the
  stats socket (``show servers state``, ``show stat``).
- ``Traffic``: HTTP requests through the proxy, counted by the id that
  answered.

HAProxy settings and why (read from HAProxy 2.6's ``src/resolvers.c`` and
checked on the Debian 2.6.12 binary): ``accepted_payload_size 8192`` is the
EDNS0 size it advertises (we answer up to 4096 bytes; larger answers it
drops as ``too_big``); ``hold obsolete 0s`` takes a server whose record is
gone out at the next resolution; ``resolve-opts allow-dup-ip`` because
instances sharing an address (one host, several ports) share one SRV target,
and without it HAProxy gives that address to one server only; ``retry-on
conn-failure empty-response response-timeout`` with ``option redispatch``
sends a request whose server died to another one.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import trio

from gossip_registry.chaos.http11 import HttpClient, HttpConnection
from gossip_registry.chaos.processes import KILL_WAIT, agent_argv, spawn, stop_processes
from tests.support.processes import free_ports

__all__ = [
    "DOMAIN",
    "SERVICE",
    "HAProxy",
    "HAProxySettings",
    "HarnessError",
    "Registry",
    "Traffic",
    "WebFleet",
    "WebInstance",
    "haproxy_config",
]

HOST = "127.0.0.1"
DOMAIN = "consul."
SERVICE = "web"
SRV_NAME = f"_{SERVICE}._tcp.service.{DOMAIN}".rstrip(".")
STOP_GRACE = 5.0
"""Seconds processes get after SIGTERM before SIGKILL (agents leave in well under it)."""
START_TIMEOUT = 30.0
"""Seconds for the agents to answer and join (Python imports take most of it)."""
REQUEST_TIMEOUT = 2.0
"""Seconds per request through the proxy or to an agent; later is a failed request."""
CHECK = {"interval": "500ms", "timeout": "300ms", "failures_before_critical": 1}
"""The instances' HTTP check on their owner n2: a dead instance is critical within 0.8 s."""
FAST_PROTOCOL = 'probe_interval = "200ms"\nprobe_timeout = "100ms"\nsuspicion_mult = 2\n'

# The one program each instance runs: stdlib only, so it starts in a few tens of milliseconds.
_INSTANCE = """
import http.server, sys
body = sys.argv[1].encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
"""


class HarnessError(Exception):
    """A process did not start or answer in time; the message says which and where its log is."""


# --- Agents ---------------------------------------------------------------------------------


@dataclass
class Registry:
    """Agents n1 (DNS for ``consul.``) and n2 (owner of the instances), from one cluster file."""

    workdir: Path
    gossip: dict[str, int] = field(default_factory=dict)
    http: dict[str, int] = field(default_factory=dict)
    dns_port: int = 0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        ports = free_ports(5)
        self.gossip = {"n1": ports[0], "n2": ports[1]}
        self.http = {"n1": ports[2], "n2": ports[3]}
        self.dns_port = ports[4]
        text = f'[cluster]\nname = "lb"\n[defaults]\ndata_root = "data"\n{FAST_PROTOCOL}'
        text += f'dns_domain = "{DOMAIN}"\ndns_ttl = "0s"\n'
        for name in ("n1", "n2"):
            text += f'[[nodes]]\nname = "{name}"\ngossip_port = {self.gossip[name]}\n'
            text += f"http_port = {self.http[name]}\n"
            if name == "n1":
                text += f"dns_port = {self.dns_port}\n"
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "cluster.toml"
        config.write_text(text)
        for name in ("n1", "n2"):
            argv = agent_argv("--config", str(config), "--node", name, "--exit-with-parent")
            self.processes.append(spawn(argv, self.workdir / f"{name}.log", self.workdir))

    async def wait_joined(self, api: HttpClient) -> None:
        """Until n1 lists both nodes alive."""
        with trio.move_on_after(START_TIMEOUT):
            while True:
                for p in self.processes:
                    if p.poll() is not None:
                        raise HarnessError(f"an agent exited ({p.returncode}); see {self.workdir}")
                answer = await api.request(HOST, self.http["n1"], "GET", "/v1/members")
                if answer is not None and answer[0] == 200 and _alive(answer[1]) == 2:
                    return
                await trio.sleep(0.1)
        raise HarnessError(f"agents did not join within {START_TIMEOUT}s; see {self.workdir}")

    async def passing(self, api: HttpClient) -> set[str]:
        """Ids of the passing ``web`` instances n1 (the node HAProxy asks) knows."""
        answer = await api.request(HOST, self.http["n1"], "GET", f"/v1/services/{SERVICE}")
        if answer is None or answer[0] != 200:
            return set()
        return {i["id"] for i in answer[1]}

    def stop(self) -> None:
        stop_processes(self.processes, STOP_GRACE)


def _alive(members: list[dict[str, str]]) -> int:
    return sum(m["state"] == "alive" for m in members)


# --- Web instances --------------------------------------------------------------------------


@dataclass
class WebInstance:
    id: str
    port: int
    process: subprocess.Popen[bytes] | None = None


class WebFleet:
    """The instance processes; ``stop`` kills every one still running, by PID."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "instances.log"
        self.instances: list[WebInstance] = []

    def start(self, count: int) -> list[WebInstance]:
        """``count`` more instances, listening once this returns (the check would wait anyway)."""
        started = []
        for port in free_ports(count):
            instance = WebInstance(f"web-{len(self.instances) + 1}", port)
            # The directory as a last (unused) argument: a leftover process names its run.
            argv = [sys.executable, "-S", "-c", _INSTANCE, instance.id, str(port), str(self.log)]
            instance.process = spawn(argv, self.log, self.log.parent)
            self.instances.append(instance)
            started.append(instance)
        return started

    async def wait_listening(self, instances: list[WebInstance]) -> None:
        """Until each of ``instances`` accepts connections (its first check then passes)."""
        with trio.move_on_after(START_TIMEOUT):
            for instance in instances:
                while True:
                    if instance.process is None or instance.process.poll() is not None:
                        raise HarnessError(f"{instance.id} exited; see {self.log}")
                    try:
                        stream = await trio.open_tcp_stream(HOST, instance.port)
                    except OSError:
                        await trio.sleep(0.02)
                        continue
                    await stream.aclose()
                    break
            return
        raise HarnessError(f"instances not listening within {START_TIMEOUT}s; see {self.log}")

    def kill(self, instance: WebInstance) -> None:
        """SIGKILL by PID (``Popen`` never signals a reaped PID) and reap."""
        if instance.process is not None and instance.process.poll() is None:
            instance.process.kill()
            instance.process.wait(timeout=KILL_WAIT)

    def stop(self) -> None:
        stop_processes([i.process for i in self.instances if i.process is not None], 0.0)

    @staticmethod
    async def register(api: HttpClient, registry: Registry, instance: WebInstance) -> None:
        """Register ``instance`` on n2, with its HTTP check (it starts critical)."""
        check = {"http": f"http://{HOST}:{instance.port}/", **CHECK}
        body = {"name": SERVICE, "id": instance.id, "address": HOST, "port": instance.port}
        body["checks"] = [check]
        answer = await api.request(HOST, registry.http["n2"], "PUT", "/v1/services", body)
        if answer is None or answer[0] != 200:
            raise HarnessError(f"registering {instance.id} on n2: {answer!r}")

    @staticmethod
    async def deregister(api: HttpClient, registry: Registry, instance: WebInstance) -> None:
        path = f"/v1/services/{instance.id}"
        answer = await api.request(HOST, registry.http["n2"], "DELETE", path)
        if answer is None or answer[0] != 200:
            raise HarnessError(f"deregistering {instance.id} on n2: {answer!r}")


# --- HAProxy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HAProxySettings:
    """How often HAProxy asks DNS and checks servers, and the EDNS0 size it advertises."""

    resolve: str = "1s"
    check_inter: str = "1s"
    accepted_payload_size: int = 8192


def haproxy_config(
    *, dns_port: int, listen_port: int, socket: Path, slots: int, settings: HAProxySettings
) -> str:
    """The configuration docs/integrations.md shows, with this run's ports and settings."""
    return f"""\
global
    stats socket {socket} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode http
    log global
    timeout connect 500ms
    timeout client 5s
    timeout server 5s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout

resolvers registry
    nameserver n1 {HOST}:{dns_port}
    accepted_payload_size {settings.accepted_payload_size}
    resolve_retries 3
    timeout resolve {settings.resolve}
    timeout retry {settings.resolve}
    hold valid 10s
    hold obsolete 0s

frontend fe_web
    bind {HOST}:{listen_port}
    default_backend be_web

backend be_web
    balance roundrobin
    server-template web {slots} {SRV_NAME} resolvers registry resolve-prefer ipv4 \
resolve-opts allow-dup-ip init-addr none check inter {settings.check_inter} fall 1 rise 1
"""


@dataclass(frozen=True)
class ServerState:
    """One server slot as ``show servers state`` gives it."""

    name: str
    address: str
    port: int
    op_state: int
    admin_state: int

    @property
    def serving(self) -> bool:
        """Up (operational state 2: running), in no maintenance and not draining.

        Admin state bits (HAProxy's ``SRV_ADMF_*``): 0x01/0x02/0x04 forced,
        inherited and configured maintenance, 0x08/0x10 drain, 0x20 DNS
        maintenance (its record is gone); 0x40 only says the FQDN came from
        DNS or the CLI, every slot of a server-template has it.
        """
        return self.op_state == 2 and not self.admin_state & 0x3F

    @property
    def resolved(self) -> bool:
        """Holding an address from DNS, not in DNS maintenance (record gone, 0x20)."""
        return not self.admin_state & 0x20 and self.port != 0


class HAProxy:
    """A foreground haproxy process on a free loopback port; ``stop`` ends it by PID."""

    def __init__(self, workdir: Path, binary: str) -> None:
        self.workdir = workdir
        self.binary = binary
        self.socket = workdir / "haproxy.sock"
        self.log = workdir / "haproxy.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(
        self, dns_port: int, slots: int, settings: HAProxySettings = HAProxySettings()
    ) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        config = self.workdir / "haproxy.cfg"
        text = haproxy_config(
            dns_port=dns_port,
            listen_port=self.port,
            socket=self.socket,
            slots=slots,
            settings=settings,
        )
        config.write_text(text)
        check = subprocess.run(
            [self.binary, "-c", "-q", "-f", str(config)],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise HarnessError(f"haproxy -c refused {config}: {check.stdout}{check.stderr}")
        self.process = spawn([self.binary, "-db", "-f", str(config)], self.log, self.workdir)

    async def wait_ready(self) -> None:
        """Until the stats socket answers."""
        with trio.move_on_after(START_TIMEOUT):
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise HarnessError(f"haproxy exited; see {self.log}")
                try:
                    await self.command("show info")
                    return
                except OSError:
                    await trio.sleep(0.05)
        raise HarnessError(f"haproxy's stats socket did not answer; see {self.log}")

    async def command(self, line: str) -> str:
        """One stats-socket command's output (the socket closes after each)."""
        stream = await trio.open_unix_socket(str(self.socket))
        async with stream:
            await stream.send_all(line.encode() + b"\n")
            chunks = []
            while chunk := await stream.receive_some(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    async def servers(self, backend: str = "be_web") -> list[ServerState]:
        """``show servers state``: fields by the header line it prints."""
        lines = (await self.command(f"show servers state {backend}")).splitlines()
        header = next(line[2:].split() for line in lines if line.startswith("# "))
        out = []
        for line in lines:
            fields = line.split()
            if len(fields) != len(header) or line.startswith("#"):
                continue
            row = dict(zip(header, fields, strict=True))
            out.append(
                ServerState(
                    row["srv_name"],
                    row["srv_addr"],
                    int(row["srv_port"]),
                    int(row["srv_op_state"]),
                    int(row["srv_admin_state"]),
                )
            )
        return out

    async def attempts(self, backend: str = "be_web") -> dict[int, int]:
        """Per instance port, the requests HAProxy sent to it so far (``show stat``).

        ``stot`` counts the sessions given to a server; a connection refused
        by a dead instance and retried elsewhere counts in its ``econ``
        (redispatched) or ``wretr`` (retried on it). A slot gets its port
        from the SRV record, so slots are mapped to ports through
        ``show servers state``.
        """
        ports = {s.name: s.port for s in await self.servers(backend)}
        text = await self.command("show stat")
        lines = text.splitlines()
        header = lines[0].lstrip("# ").split(",")
        counts: dict[int, int] = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") != backend or row.get("svname") not in ports:
                continue
            total = sum(int(row.get(k) or 0) for k in ("stot", "econ", "wretr"))
            port = ports[row["svname"]]
            counts[port] = counts.get(port, 0) + total
        return counts

    async def resolver_counters(self, section: str = "registry") -> dict[str, int]:
        """``show resolvers``: per counter (valid, invalid, too_big, truncated...), summed."""
        counters: Counter[str] = Counter()
        for line in (await self.command(f"show resolvers {section}")).splitlines():
            name, _, value = line.strip().partition(":")
            if value.strip().isdigit():
                counters[name] += int(value)
        return dict(counters)

    def stop(self) -> None:
        if self.process is not None:
            stop_processes([self.process], STOP_GRACE)


# --- Traffic --------------------------------------------------------------------------------


@dataclass
class Traffic:
    """Requests through the proxy: which instance answered each, and how many failed."""

    port: int
    served: Counter[str] = field(default_factory=Counter)
    first_seen: dict[str, float] = field(default_factory=dict)
    failed: int = 0

    async def one(self) -> str | None:
        """One ``GET /`` through the proxy, on a fresh connection; the id that answered, or None."""
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                stream = await trio.open_tcp_stream(HOST, self.port)
                async with stream:
                    connection = HttpConnection(stream, HOST, self.port)
                    await connection.send("GET", "/")
                    status, _ = await connection.head()
                    body = await connection.body()
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, ValueError):
            status, body = 0, b""
        if status != 200:
            self.failed += 1
            return None
        ident = body.decode(errors="replace")
        self.served[ident] += 1
        self.first_seen.setdefault(ident, time.monotonic())
        return ident

    async def run(self, pause: float, clients: int = 2) -> None:
        """Send requests until cancelled, ``clients`` at a time, ``pause`` seconds apart each."""

        async def client() -> None:
            while True:
                await self.one()
                await trio.sleep(pause)

        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(client)
