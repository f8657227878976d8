"""Where the chaos agents run, and how packets between them are lost.

Two interchangeable host sets, chosen per run:

- ``NetnsHosts`` (root, ``ip`` and ``nft`` present): a network namespace per
  node, joined by veth pairs to one bridge in the root namespace, with
  addresses from 198.18.0.0/15 (reserved for network benchmarking, so a test
  host is never mistaken for a real one). Faults are nftables rules in each
  node's namespace, on its output path: kernel-level loss and partitions
  that the node cannot tell from a real network's. Every name carries the
  run's prefix (``gr`` + 6 hex digits) and every run takes its own /24, so
  parallel runs never collide and leftovers are recognisable.
- ``LoopbackHosts`` (anywhere): each node on its own 127.x.y.z address, the
  faults applied inside the node's transport from a control file
  (``runtime/faultinject.py``), enabled by the agent's explicit test-only flag.

Only addresses of namespaces this run created, or loopback, are ever used.
``teardown`` removes everything the run created and is safe to call twice; the
runner calls it from ``finally``, and an ``atexit`` hook catches the rest.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = [
    "GOSSIP_PORT",
    "HTTP_PORT",
    "Faults",
    "Hosts",
    "LoopbackHosts",
    "NetnsHosts",
    "make_hosts",
    "netns_available",
    "sweep_stale",
]

GOSSIP_PORT = 7946
HTTP_PORT = 8500
NFT_TABLE = "grchaos"
CONTROLLER_HOST = 254
"""Last octet of the bridge's own address: the runner's side of every HTTP request."""
CMD_TIMEOUT = 20.0
"""Seconds for one ``ip``/``nft`` command."""
RUN_MARKERS = Path("/run/gossip-registry-chaos")
"""One file per netns run in progress, named by its prefix, holding the runner's PID."""


@dataclass(frozen=True)
class Faults:
    """The packet faults in force: a loss rate for every link, and cut (src, dst) links."""

    loss: float = 0.0
    blocked: frozenset[tuple[int, int]] = field(default_factory=frozenset)
    """Node indexes: everything src sends to dst is dropped (one way)."""


class Hosts(Protocol):
    """A set of hosts for n agents: addresses, how to start a command on one, faults."""

    mode: str
    prefix: str
    addresses: list[str]

    def command(self, index: int, argv: list[str]) -> list[str]: ...

    def agent_args(self) -> list[str]: ...

    def apply(self, faults: Faults) -> None: ...

    def teardown(self) -> None: ...

    def leftovers(self) -> list[str]: ...


def new_prefix() -> str:
    return "gr" + secrets.token_hex(3)


def netns_available() -> bool:
    """Root, with iproute2 and nftables installed: namespaces and kernel faults are possible."""
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("nft") is not None


def make_hosts(mode: str, n: int, workdir: Path) -> Hosts:
    """``netns``, ``loopback``, or ``auto`` (netns when available)."""
    if mode == "auto":
        mode = "netns" if netns_available() else "loopback"
    if mode == "netns":
        return NetnsHosts(n)
    if mode == "loopback":
        return LoopbackHosts(n, workdir)
    raise ValueError(f"unknown mode {mode!r} (netns, loopback or auto)")


def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=CMD_TIMEOUT, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _names_with(prefix: str) -> list[str]:
    names = _run(["ip", "netns", "list"]).split() + _run(["ip", "-o", "link", "show"]).split()
    return sorted({name.rstrip(":").split("@")[0] for name in names if name.startswith(prefix)})


def sweep_stale() -> list[str]:
    """Remove what earlier runs left behind (their runner died without teardown, e.g. SIGKILL).

    Only runs whose marker names a process that no longer exists: a run in
    progress, even one just setting up, is never touched.
    """
    removed: list[str] = []
    for marker in sorted(RUN_MARKERS.glob("gr*")) if RUN_MARKERS.is_dir() else []:
        try:
            pid = int(marker.read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(pid):
            continue
        for name in _names_with(marker.name):
            if name.startswith(f"{marker.name}-"):
                _run(["ip", "netns", "del", name], check=False)
            else:
                _run(["ip", "link", "del", name], check=False)
            removed.append(name)
        marker.unlink(missing_ok=True)
    return removed


class NetnsHosts:
    """A namespace per node on a bridge of this run's own; faults by nftables."""

    mode = "netns"

    def __init__(self, n: int) -> None:
        self.prefix = new_prefix()
        self.bridge = f"{self.prefix}br"
        self.namespaces = [f"{self.prefix}-{i}" for i in range(n)]
        self.net = self._free_subnet()
        self.addresses = [f"{self.net}.{i + 1}" for i in range(n)]
        self.controller = f"{self.net}.{CONTROLLER_HOST}"
        self._torn_down = False
        sweep_stale()
        RUN_MARKERS.mkdir(parents=True, exist_ok=True)
        self._marker = RUN_MARKERS / self.prefix
        self._marker.write_text(str(os.getpid()))
        atexit.register(self.teardown)
        try:
            self._setup()
        except BaseException:
            self.teardown()
            raise

    def _free_subnet(self) -> str:
        """A /24 of 198.18.0.0/15 picked by the prefix, skipping any already on this machine."""
        used = _run(["ip", "-o", "-4", "addr", "show"])
        start = int(self.prefix[2:], 16) % 512
        for k in range(512):
            block = (start + k) % 512
            net = f"198.{18 + block // 256}.{block % 256}"
            if f" {net}." not in used:
                return net
        raise RuntimeError("no free /24 left in 198.18.0.0/15")

    def _setup(self) -> None:
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.controller}/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])
        for i, ns in enumerate(self.namespaces):
            outer, inner = f"{self.prefix}h{i}", f"{self.prefix}n{i}"
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner])
            _run(["ip", "link", "set", inner, "netns", ns])
            _run(["ip", "-n", ns, "link", "set", inner, "name", "eth0"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.addresses[i]}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "link", "set", outer, "master", self.bridge])
            _run(["ip", "link", "set", outer, "up"])
        self.apply(Faults())

    def command(self, index: int, argv: list[str]) -> list[str]:
        # ``ip netns exec`` execs the command in place: its PID is the agent's.
        return ["ip", "netns", "exec", self.namespaces[index], *argv]

    def agent_args(self) -> list[str]:
        return []

    def apply(self, faults: Faults) -> None:
        """Replace each namespace's chaos table at once (one ``nft -f`` transaction)."""
        for i, ns in enumerate(self.namespaces):
            rules = []
            cut = sorted(self.addresses[dst] for src, dst in faults.blocked if src == i)
            if cut:
                rules.append(f"ip daddr {{ {', '.join(cut)} }} drop")
            if faults.loss > 0:
                per_mille = round(faults.loss * 1000)
                rules.append(
                    f'oifname "eth0" ip daddr != {self.controller} '
                    f"numgen random mod 1000 < {per_mille} drop"
                )
            script = (
                f"add table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n"
                f"table inet {NFT_TABLE} {{\n chain out {{\n"
                "  type filter hook output priority 0; policy accept;\n"
                + "".join(f"  {rule}\n" for rule in rules)
                + " }\n}\n"
            )
            _run(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=script)

    def teardown(self) -> None:
        """Delete veths, namespaces (their nft tables go with them), then the bridge.

        The veths go first and explicitly: a namespace's own cleanup runs later
        in the kernel, and would leave the outer ends visible for a while.
        """
        if self._torn_down:
            return
        self._torn_down = True
        for i, ns in enumerate(self.namespaces):
            _run(["ip", "link", "del", f"{self.prefix}h{i}"], check=False)
            _run(["ip", "netns", "del", ns], check=False)
        _run(["ip", "link", "del", self.bridge], check=False)
        self._marker.unlink(missing_ok=True)
        atexit.unregister(self.teardown)

    def leftovers(self) -> list[str]:
        """Namespaces and links of this run that still exist (empty after teardown)."""
        return _names_with(self.prefix)


class LoopbackHosts:
    """Each node on its own loopback address; faults written to the agents' control file."""

    mode = "loopback"

    def __init__(self, n: int, workdir: Path) -> None:
        self.prefix = new_prefix()
        block = int(self.prefix[2:], 16)
        a, b = 1 + (block >> 8) % 254, block % 256
        self.addresses = [f"127.{a}.{b}.{i + 1}" for i in range(n)]
        self.control = workdir / "faults.json"
        self.apply(Faults())

    def command(self, index: int, argv: list[str]) -> list[str]:
        return argv

    def agent_args(self) -> list[str]:
        return ["--unsafe-test-faults", str(self.control)]

    def apply(self, faults: Faults) -> None:
        rules = {
            "loss": faults.loss,
            "blocked": [[self.addresses[s], self.addresses[d]] for s, d in sorted(faults.blocked)],
        }
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(json.dumps(rules))
        tmp.replace(self.control)  # atomic: an agent never reads half a file

    def teardown(self) -> None:
        self.control.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        return [str(self.control)] if self.control.exists() else []
