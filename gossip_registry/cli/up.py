"""``gossip-registry up``: every node of a cluster file as its own process, watched live.

Theory of operation: ``up`` is a small supervisor written in trio. For each
node it starts ``sys.executable -m gossip_registry agent --config ABS_PATH
--node NAME`` (same interpreter and package as ``up``; the config path is
made absolute, so ``up`` works from any directory), then runs, in one
nursery:

- a pump per child that copies its output, line by line, prefixed
  ``[name]``, to our stdout;
- a reaper per child that reports an unexpected exit (with its status) and
  leaves the other nodes running;
- a poller that asks every node's ``GET /v1/status`` once a second and
  redraws the status table: members alive/suspect/dead/left as that node
  sees them, entries, short digest, and whether the digests agree.

On a TTY the table stays at the bottom of the screen and is redrawn in
place (plain ANSI: cursor up, clear to end of screen) with logs scrolling
above it. Otherwise the table is printed as plain lines only when it
changes, so a log file stays readable.

Children get their own session (process group), so a Ctrl-C in the
terminal reaches ``up`` only; ``up`` then sends each child one SIGTERM (a
graceful leave) and, after ``STOP_GRACE`` seconds, SIGKILLs the stragglers
by PID; a second Ctrl-C kills at once. Children are also started with
``--exit-with-parent``: if ``up`` itself is SIGKILLed, they notice within a
second and leave on their own instead of running orphaned.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from gossip_registry.cli._common import (
    DEFAULT_CONFIG,
    ConfigFailure,
    Failure,
    base_url,
    format_address,
    load_config,
    render_table,
)

if TYPE_CHECKING:
    import httpx
    import trio

    from gossip_registry.config.cluster_file import ClusterConfig

__all__ = ["Child", "Console", "Supervisor", "describe_exit", "up"]

STOP_GRACE = 10.0
"""Seconds children get, after SIGTERM, to leave before they are SIGKILLed."""
KILL_WAIT = 5.0
"""Seconds to wait for SIGKILLed children to be reaped."""
POLL_INTERVAL = 1.0
"""Seconds between status polls (and table refreshes)."""
POLL_TIMEOUT = 0.8
"""Per-request bound, below POLL_INTERVAL so one stuck node cannot slow the table."""
MAX_LINE = 64 * 1024
"""A child's output line longer than this is passed on in pieces rather than buffered."""


@click.command()
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Cluster file; every [[nodes]] entry becomes a process.",
)
@click.option("--nodes", "subset", metavar="NAME,NAME", help="Start only these nodes.")
@click.option(
    "--fresh",
    is_flag=True,
    help="Empty the nodes' data directories first: no member or registration of an earlier "
    "run comes back.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="The agents' log level.",
)
def up(config_path: Path, subset: str | None, fresh: bool, log_level: str) -> None:
    """Start every node of the cluster file as a process; stream logs and a status table.

    Ctrl-C (or SIGTERM) makes every node leave gracefully, then exits. Nodes
    keep their snapshots in their data directories, so registrations of an
    earlier run come back; --fresh starts from empty ones.
    """
    import trio

    cluster = load_config(config_path)
    names = _choose(cluster, subset)
    taken = ports_in_use(cluster, names)
    if taken:
        raise Failure(
            f"a cluster is already running on these ports ({', '.join(taken)} in use): "
            "stop it first, or give these nodes other ports in the cluster file"
        )
    if fresh:
        for name in names:
            data_dir = cluster.node(name).data_dir
            if data_dir is not None and data_dir.is_dir():
                shutil.rmtree(data_dir)
    out = sys.stdout
    live = out.isatty() and os.environ.get("TERM") != "dumb"
    supervisor = Supervisor(cluster, names, log_level=log_level, console=Console(out, live=live))
    code = trio.run(supervisor.run)
    if code:
        raise SystemExit(code)


def ports_in_use(cluster: ClusterConfig, names: list[str]) -> list[str]:
    """The addresses of ``names`` (gossip UDP+TCP, HTTP, DNS) that cannot be bound now.

    Checked before any node starts: otherwise the status table would show
    the running cluster's nodes while each new one fails to bind.
    """
    taken = []
    for name in names:
        node = cluster.node(name)
        wanted = [(node.bind, True), (node.http, False), (node.dns, True)]
        for address, with_udp in wanted:
            if address is not None and address[1] != 0 and not _bindable(address, with_udp):
                taken.append(format_address(*address))
    return taken


def _bindable(address: tuple[str, int], with_udp: bool) -> bool:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    kinds = [socket.SOCK_STREAM, socket.SOCK_DGRAM] if with_udp else [socket.SOCK_STREAM]
    for kind in kinds:
        with socket.socket(family, kind) as probe:
            if kind == socket.SOCK_STREAM:  # as the listeners do: a TIME_WAIT port is free
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError:
                return False
    return True


def _choose(cluster: ClusterConfig, subset: str | None) -> list[str]:
    if subset is None:
        return list(cluster.names)
    names = [n.strip() for n in subset.split(",") if n.strip()]
    if not names:
        raise click.UsageError("--nodes needs at least one node name")
    for name in names:
        if name not in cluster.names:
            raise ConfigFailure(
                f"--nodes: no node {name!r} in {cluster.path}; nodes: {', '.join(cluster.names)}"
            )
    return list(dict.fromkeys(names))


def describe_exit(code: int) -> str:
    """``exit status 1`` or ``killed by SIGKILL`` (Popen reports a signal as -signum)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


@dataclass
class Child:
    """One node process, as ``up`` sees it."""

    name: str
    url: str | None
    argv: list[str]
    process: trio.Process | None = None
    returncode: int | None = None
    status: dict[str, Any] | None = None
    """The last /v1/status answer; None while the node does not answer."""
    answered: bool = False
    stopping: bool = False
    output_done: trio.Event | None = None
    token: str | None = None
    """The node's read (else write) token, for polling a secured API."""

    @property
    def running(self) -> bool:
        return self.process is not None and self.returncode is None

    @property
    def state(self) -> str:
        if self.process is None:
            return "not started"
        if self.returncode is not None:
            return "exited" if self.returncode == 0 else describe_exit(self.returncode)
        if self.stopping:
            return "stopping"
        if self.status is not None:
            return "running"
        return "no answer" if self.answered else "starting"


class Console:
    """Our stdout: child logs scroll; the status table is redrawn below them or printed on change.

    All writes come from the one trio thread, each as a single ``write``
    (erase, new lines, table), so the terminal never shows a torn table.
    A closed stdout (``up | head``) silences output; the nodes keep running.
    """

    def __init__(self, out: IO[str], *, live: bool) -> None:
        self.out = out
        self.live = live
        self._table: list[str] = []
        self._drawn = 0
        self._broken = False

    def log(self, line: str) -> None:
        if self.live:
            self._write(self._erase() + line + "\n" + self._draw())
        else:
            self._write(line + "\n")

    def event(self, message: str) -> None:
        """A message from ``up`` itself."""
        self.log(f"[up] {message}")

    def show(self, table: list[str]) -> None:
        if self.live:
            self._table = table
            self._write(self._erase() + self._draw())
        elif table != self._table:
            self._table = table
            self._write("".join(line + "\n" for line in table))

    def finish(self, table: list[str]) -> None:
        """Show the last table and leave it on screen."""
        self.show(table)
        self._drawn = 0

    def _erase(self) -> str:
        # Cursor to the start of the table's first line, then clear to the end of the screen.
        return f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""

    def _draw(self) -> str:
        if not self._table:
            return ""
        width = max(20, shutil.get_terminal_size().columns - 1)
        lines = [time.strftime("%H:%M:%S"), *self._table]
        self._drawn = len(lines)
        return "".join(line[:width] + "\n" for line in lines)

    def _write(self, text: str) -> None:
        if self._broken:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
            self._broken = True


class Supervisor:
    """Starts, watches and stops the node processes; ``run`` returns ``up``'s exit status."""

    def __init__(
        self, cluster: ClusterConfig, names: list[str], *, log_level: str, console: Console
    ) -> None:
        self.cluster = cluster
        self.console = console
        config = str(cluster.path.absolute())
        http = cluster.http_addresses
        self.children = [
            Child(
                name=name,
                url=base_url(*http[name]) + "/v1/status" if name in http else None,
                token=cluster.node(name).read_token or cluster.node(name).write_token,
                argv=[
                    sys.executable,
                    "-m",
                    "gossip_registry",
                    "agent",
                    "--config",
                    config,
                    "--node",
                    name,
                    "--log-level",
                    log_level,
                    "--exit-with-parent",
                ],
            )
            for name in names
        ]
        self.stopping = False
        self.exit_code = 0

    # ------------------------------------------------------------ lifetime

    async def run(self) -> int:
        import trio

        self._all_exited = trio.Event()
        self._spawned = False
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                self.console.event(
                    f"starting {len(self.children)} nodes of cluster {self.cluster.name} "
                    f"({self.cluster.path})"
                )
                dns = self.dns_line()
                if dns is not None:
                    self.console.event(dns)
                if await self._spawn_all(nursery):
                    nursery.start_soon(self._poll_loop)
                    await self._wait_for_stop(signals)
                await self._shutdown(signals)
                nursery.cancel_scope.cancel()
        self.console.finish(self.table())
        return self.exit_code

    async def _spawn_all(self, nursery: trio.Nursery) -> bool:
        """Start every child; False, after saying why, if one could not be started."""
        try:
            for child in self.children:
                try:
                    await self._spawn(nursery, child)
                except OSError as exc:
                    self.console.event(f"cannot start {child.name}: {exc}")
                    self.exit_code = 1
                    return False
            return True
        finally:
            self._spawned = True
            self._check_all_exited()

    async def _spawn(self, nursery: trio.Nursery, child: Child) -> None:
        import trio

        child.process = process = await trio.lowlevel.open_process(
            child.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child.output_done = trio.Event()
        self.console.event(f"started {child.name} (pid {process.pid})")
        nursery.start_soon(self._pump, child)
        nursery.start_soon(self._reap, child)

    async def _pump(self, child: Child) -> None:
        """Copy the child's output, a line at a time, prefixed with its name."""
        assert child.process is not None
        assert child.process.stdout is not None
        assert child.output_done is not None
        stream = child.process.stdout
        prefix = f"[{child.name}] "
        pending = b""
        try:
            while chunk := await stream.receive_some(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > MAX_LINE:
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    self.console.log(prefix + line.decode(errors="replace").rstrip())
            if pending:
                self.console.log(prefix + pending.decode(errors="replace").rstrip())
        finally:
            child.output_done.set()

    async def _reap(self, child: Child) -> None:
        assert child.process is not None
        child.returncode = code = await child.process.wait()
        child.status = None
        if child.stopping:
            self.console.event(f"{child.name} stopped ({describe_exit(code)})")
        else:
            running = sum(c.running for c in self.children)
            self.console.event(
                f"{child.name} exited unexpectedly ({describe_exit(code)}); "
                f"{running} other nodes keep running"
            )
        self.console.show(self.table())
        self._check_all_exited()

    def _check_all_exited(self) -> None:
        """Every child started has exited, and no more will be started."""
        if self._spawned and not any(c.running for c in self.children):
            self._all_exited.set()

    async def _wait_for_stop(self, signals: AsyncIterator[int]) -> None:
        """Until SIGINT/SIGTERM, or until every child has exited by itself (exit status 1)."""
        import trio

        async with trio.open_nursery() as nursery:

            async def on_signal() -> None:
                async for signum in signals:
                    self.console.event(
                        f"received {signal.Signals(signum).name}: "
                        "stopping the nodes (again to kill them at once)"
                    )
                    break
                nursery.cancel_scope.cancel()

            async def on_all_exited() -> None:
                await self._all_exited.wait()
                self.console.event("every node has exited")
                self.exit_code = 1
                nursery.cancel_scope.cancel()

            nursery.start_soon(on_signal)
            nursery.start_soon(on_all_exited)

    async def _shutdown(self, signals: AsyncIterator[int]) -> None:
        """SIGTERM everyone, wait up to STOP_GRACE, SIGKILL stragglers by PID, reap them."""
        import trio

        self.stopping = True
        running = [c for c in self.children if c.running]
        for child in running:
            child.stopping = True
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        if running:
            self.console.event(
                f"sent SIGTERM to {len(running)} nodes; SIGKILL after {STOP_GRACE:g}s"
            )
            self.console.show(self.table())
        with trio.move_on_after(STOP_GRACE):
            async with trio.open_nursery() as nursery:

                async def all_exited() -> None:
                    await self._all_exited.wait()
                    nursery.cancel_scope.cancel()

                async def second_signal() -> None:
                    async for signum in signals:
                        self.console.event(f"received {signal.Signals(signum).name} again")
                        break
                    nursery.cancel_scope.cancel()

                nursery.start_soon(all_exited)
                nursery.start_soon(second_signal)
        for child in self.children:
            if child.running:
                assert child.process is not None
                self.console.event(f"{child.name} still running: SIGKILL pid {child.process.pid}")
                child.process.kill()
        with trio.move_on_after(KILL_WAIT):
            await self._all_exited.wait()
        with trio.move_on_after(1.0):  # the last log lines ("left the cluster")
            for child in self.children:
                if child.output_done is not None:
                    await child.output_done.wait()

    def dns_line(self) -> str | None:
        """Where each node answers DNS (the table shows gossip state, not addresses), if any."""
        dns = self.cluster.dns_addresses
        listed = [
            f"{c.name} {format_address(*dns[c.name])}" for c in self.children if c.name in dns
        ]
        return "DNS (UDP and TCP): " + ", ".join(listed) if listed else None

    # ------------------------------------------------------------- status

    async def _poll_loop(self) -> None:
        import httpx
        import trio

        async with httpx.AsyncClient(timeout=POLL_TIMEOUT, trust_env=False) as client:
            deadline = trio.current_time()
            while True:
                async with trio.open_nursery() as nursery:
                    for child in self.children:
                        if child.running and child.url is not None:
                            nursery.start_soon(self._poll, client, child)
                self.console.show(self.table())
                deadline += POLL_INTERVAL
                await trio.sleep_until(max(deadline, trio.current_time()))

    @staticmethod
    async def _poll(client: httpx.AsyncClient, child: Child) -> None:
        import httpx

        assert child.url is not None
        try:
            auth = {"Authorization": f"Bearer {child.token}"} if child.token else {}
            response = await client.get(child.url, headers=auth)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError):
            child.status = None
            return
        if child.running and isinstance(body, dict):
            child.status = body
            child.answered = True

    def table(self) -> list[str]:
        """The status table's lines (no clock: a plain-mode reprint means something changed)."""
        answering = [c.status for c in self.children if c.status is not None]
        digests = Counter(str(s.get("digest", "")) for s in answering)
        majority = digests.most_common(1)[0][0] if digests else None
        rows: list[list[Any]] = []
        for child in self.children:
            pid = child.process.pid if child.process is not None else None
            status = child.status
            if status is None:
                rows.append([child.name, child.state, pid, *[None] * 6, None])
                continue
            members = status.get("members", {})
            digest = str(status.get("digest", ""))
            rows.append(
                [
                    child.name,
                    child.state,
                    pid,
                    *(members.get(s) for s in ("alive", "suspect", "dead", "left")),
                    status.get("entries"),
                    digest[:8],
                    "yes" if digest == majority and len(digests) == 1 else "no",
                ]
            )
        headers = ["NODE", "PROCESS", "PID", "ALIVE", "SUSPECT", "DEAD", "LEFT", "ENTRIES"]
        lines = render_table([*headers, "DIGEST", "AGREE"], rows)
        running = sum(c.running for c in self.children)
        if not running:
            footer = "no node running"
        elif not answering:
            footer = f"{running} of {len(self.children)} nodes running; none answering yet"
        elif len(digests) == 1:
            footer = f"digests agree: {len(answering)} of {running} running nodes answering"
        else:
            footer = (
                f"digests differ: {len(digests)} distinct among {len(answering)} nodes answering"
            )
        return [*lines, footer]
