"""``gossip-registry simulate``: the protocol at any size, in virtual time, from one seed.

Theory of operation: one ``SimCluster`` (the real protocol cores over the
simulator's modelled network, ``gossip_registry.sim``) goes through three
phases, each bounded by ``--timeout`` virtual seconds:

1. formation: by real joins through the first node (the default up to 200
   nodes), or bootstrapped (every node starts knowing every other: joins
   cost O(N^2) and say nothing about steady state at 10,000 nodes);
2. spread: one instance is registered on a random node; each node's own
   EntryChanged notification says when it first held it, so the 50 %,
   99 % and 100 % figures are exact event times, not poll times;
3. detection: ``--crash`` random other nodes crash at once; MemberChanged
   notifications say when the first node, and when every live node,
   declared each of them dead. A death of any other node is a false
   positive.

Traffic is counted from the registration to the end, per node per virtual
second. Every random choice (here: the registering node and the victims)
comes from generators seeded by ``--seed``, so a seed always gives the same
figures; only the wall time differs. A progress bar on stderr follows each
phase's progress (nodes reached, detections made) as virtual time advances.

Exit status 1 when a phase did not complete within ``--timeout`` (the
report says which), so scripts can tell "slow" from "fine".
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import click

from gossip_registry.cli._common import echo_lines

if TYPE_CHECKING:
    from gossip_registry.core.config import ProtocolConfig
    from gossip_registry.sim import SimCluster

__all__ = ["SimulationReport", "run_simulation", "simulate"]

BOOTSTRAP_ABOVE = 200
"""Default formation: real joins up to this many nodes, bootstrap above."""
SERVICE = ("demo", "demo-1")
"""The (service, instance id) registered in the spread phase."""
QUANTILES = (0.5, 0.99, 1.0)

Progress = Callable[[str, float, float], None]
"""progress(phase label, fraction done 0..1, virtual seconds into the phase)."""


@dataclass
class SimulationReport:
    """What one run measured; times are virtual seconds from the start of their phase."""

    nodes: int
    seed: int
    loss: float
    profile: str
    bootstrap: bool
    link: str
    protocol: dict[str, Any]
    timeout: float
    formed_s: float | None = None
    origin: str = ""
    spread_s: dict[str, float | None] = field(default_factory=dict)
    crashed: list[str] = field(default_factory=list)
    host_up: bool = False
    """The crashed processes' hosts stayed up and refused their traffic (issue 17)."""
    first_suspicion_s: float | None = None
    first_detection_s: float | None = None
    all_detection_s: float | None = None
    false_positives: int = 0
    traffic_window_s: float = 0.0
    traffic_per_node_per_s: dict[str, float] = field(default_factory=dict)
    virtual_s: float = 0.0
    events: int = 0
    wall_s: float = 0.0

    @property
    def complete(self) -> bool:
        """Every phase finished within the timeout."""
        return (
            (self.bootstrap or self.formed_s is not None)
            and all(v is not None for v in self.spread_s.values())
            and (not self.crashed or self.all_detection_s is not None)
        )


@click.command()
@click.option(
    "--nodes", "-n", type=click.IntRange(2, 64000), default=100, show_default=True, help="Size."
)
@click.option(
    "--loss",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Probability that any datagram (or TCP segment) is lost.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same figures.")
@click.option(
    "--crash",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Nodes to crash at once in the detection phase.",
)
@click.option(
    "--profile",
    type=click.Choice(["lan", "wan", "local"]),
    default="lan",
    show_default=True,
    help="Protocol preset.",
)
@click.option(
    "--bootstrap/--join",
    default=None,
    help=f"Start formed, or form by real joins.  [default: bootstrap above {BOOTSTRAP_ABOVE}]",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Virtual seconds each phase may take.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr.  [default: when stderr is a terminal]",
)
def simulate(
    nodes: int,
    loss: float,
    seed: int,
    crash: int,
    profile: str,
    bootstrap: bool | None,
    timeout: float,
    as_json: bool,
    progress: bool | None,
) -> None:
    """Measure registration spread and failure detection on the deterministic simulator."""
    if crash > nodes - 1:
        raise click.BadParameter(
            f"at most {nodes - 1} of {nodes} nodes (one must stay to observe)", param_hint="--crash"
        )
    if bootstrap is None:
        bootstrap = nodes > BOOTSTRAP_ABOVE
    if progress is None:
        progress = sys.stderr.isatty()
    with _progress_bar(enabled=progress) as bar:
        report = run_simulation(
            nodes,
            seed=seed,
            loss=loss,
            crash=crash,
            profile=profile,
            bootstrap=bootstrap,
            timeout=timeout,
            progress=bar,
        )
    if as_json:
        click.echo(json.dumps(asdict(report), indent=2))
    else:
        echo_lines(render_report(report))
    if not report.complete:
        raise SystemExit(1)


def run_simulation(
    nodes: int,
    *,
    seed: int,
    loss: float = 0.0,
    crash: int = 1,
    profile: str = "lan",
    bootstrap: bool = False,
    timeout: float = 600.0,
    progress: Progress | None = None,
    host_up: bool = False,
) -> SimulationReport:
    """Run the three phases (see the module docstring) and report; deterministic per seed."""
    from gossip_registry.config.cluster_file import PROFILES
    from gossip_registry.core.effects import EntryChanged, MemberChanged
    from gossip_registry.core.messages import MemberState
    from gossip_registry.sim import LinkModel, SimCluster

    started = time.perf_counter()
    config = PROFILES[profile]()
    link = LinkModel(loss=loss)
    report = SimulationReport(
        nodes=nodes,
        seed=seed,
        loss=loss,
        profile=profile,
        bootstrap=bootstrap,
        link=link.describe(),
        protocol=asdict(config),
        timeout=timeout,
    )
    # Our own choices come from a generator of their own: drawing them from the
    # cluster's would shift every link delay after them.
    rng = random.Random(f"simulate:{seed}")
    cluster = SimCluster(nodes, seed=seed, config=config, link=link, bootstrap=bootstrap)
    checks = 0.1 if nodes <= BOOTSTRAP_ABOVE else 0.5

    # 1. Formation.
    if not bootstrap and _advance(
        cluster, "forming", _membership(cluster), timeout, checks, progress
    ):
        report.formed_s = cluster.now

    # 2. Spread.
    names = cluster.names
    origin = report.origin = rng.choice(names)
    since = {"spread": cluster.now, "crash": math.inf}
    reached: dict[str, float] = {origin: 0.0}
    deaths: dict[str, dict[str, float]] = {}
    suspicions: list[float] = []
    false_positives: set[tuple[str, str]] = set()

    def observe(node: str, now: float, event: object) -> None:
        if isinstance(event, EntryChanged):
            if event.new is not None and event.new.key == SERVICE:
                reached.setdefault(node, now - since["spread"])
        elif isinstance(event, MemberChanged):
            if event.state is MemberState.DEAD:
                if event.name in deaths:
                    deaths[event.name].setdefault(node, now - since["crash"])
                else:
                    false_positives.add((node, event.name))
            elif event.state is MemberState.SUSPECT and event.name in deaths:
                suspicions.append(now - since["crash"])

    cluster.on_notify(observe)
    cluster.reset_traffic()
    cluster.register(origin, *SERVICE, port=8080)
    _advance(cluster, "spreading", lambda: len(reached) / nodes, timeout, 0.05, progress)
    arrivals = sorted(reached.values())
    for q in QUANTILES:
        needed = max(1, math.ceil(q * nodes))
        label = f"{q:.0%}"
        report.spread_s[label] = arrivals[needed - 1] if len(arrivals) >= needed else None

    # 3. Detection.
    if crash:
        victims = rng.sample([n for n in names if n != origin], crash)
        report.crashed = victims
        report.host_up = host_up
        since["crash"] = cluster.now
        deaths.update({v: {} for v in victims})
        for victim in victims:
            cluster.crash(victim, host_up=host_up)
        observers = len(cluster.live_names())
        wanted = observers * len(victims)
        _advance(
            cluster,
            "detecting",
            lambda: sum(len(d) for d in deaths.values()) / wanted,
            timeout,
            checks,
            progress,
        )
        seen = [t for d in deaths.values() for t in d.values()]
        report.first_suspicion_s = min(suspicions, default=None)
        report.first_detection_s = min(seen, default=None)
        if all(len(d) == observers for d in deaths.values()):
            report.all_detection_s = max(seen)
    report.false_positives = len(false_positives)

    traffic = cluster.total_traffic()
    per_second = traffic.per_second()
    report.traffic_window_s = traffic.elapsed
    report.traffic_per_node_per_s = {
        "udp_messages": per_second["udp_sent"] / nodes,
        "udp_bytes": per_second["udp_bytes_sent"] / nodes,
        "tcp_frames": per_second["stream_sent"] / nodes,
        "tcp_bytes": per_second["stream_bytes_sent"] / nodes,
    }
    report.virtual_s = cluster.now
    report.events = cluster.events_delivered
    report.wall_s = time.perf_counter() - started
    return report


def _membership(cluster: SimCluster) -> Callable[[], float]:
    """Fraction of (node, member) pairs where the node sees the member alive: 1.0 is formed.

    O(N^2) per call, like ``agree_on_membership``; fine for the join
    formations this is used for (hundreds of nodes, a check per 0.1 s).
    """
    from gossip_registry.core.messages import MemberState

    names = cluster.live_names()
    total = len(names) ** 2

    def fraction() -> float:
        alive = 0
        for name in names:
            states = cluster.states(name)
            alive += sum(states.get(other) is MemberState.ALIVE for other in names)
        return alive / total

    return fraction


def _advance(
    cluster: SimCluster,
    label: str,
    fraction: Callable[[], float],
    timeout: float,
    step: float,
    progress: Progress | None,
) -> bool:
    """Run in steps of ``step`` until ``fraction()`` reaches 1 or ``timeout`` passes."""
    start = cluster.now
    deadline = start + timeout
    done = fraction()
    while done < 1.0 and cluster.now < deadline:
        cluster.run_for(min(step, deadline - cluster.now))
        done = fraction()
        if progress is not None:
            progress(label, done, cluster.now - start)
    return done >= 1.0


@contextlib.contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[Progress | None]:
    """A click progress bar per phase, on stderr, showing the phase's virtual time."""
    if not enabled:
        yield None
        return
    bars: dict[str, Any] = {}
    clock = {"t": 0.0}
    with contextlib.ExitStack() as stack:

        def update(label: str, done: float, elapsed: float) -> None:
            clock["t"] = elapsed
            bar = bars.get(label)
            if bar is None:
                for other in bars.values():
                    other.render_finish()
                bar = bars[label] = stack.enter_context(
                    click.progressbar(
                        length=1000,
                        label=f"{label:<10}",
                        file=sys.stderr,
                        show_eta=False,
                        item_show_func=lambda _: f"virtual {clock['t']:.1f}s",
                    )
                )
            bar.update(max(0, int(done * 1000) - bar.pos))

        yield update


# --- The report ------------------------------------------------------------------


def _seconds(value: float | None, timeout: float) -> str:
    return f"{value:.3f} s" if value is not None else f"not reached within {timeout:g} s"


def format_duration(seconds: float) -> str:
    """``500ms``, ``1.5s``, ``30s``, ``24h``: the cluster file's own notation."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def describe_protocol(config: ProtocolConfig, nodes: int) -> list[str]:
    """Every setting, then what they come to at this size (suspicion, retransmits, push-pull)."""
    from dataclasses import fields

    settings = []
    for f in fields(config):
        value = getattr(config, f.name)
        shown = format_duration(value) if isinstance(value, float) else str(value)
        settings.append(f"{f.name}={shown}")
    low = config.suspicion_min(nodes)
    derived = (
        f"at {nodes} nodes: suspicion timeout {low:.3g}-{low * config.suspicion_max_mult:.3g} s, "
        f"each update sent {config.retransmit_limit(nodes)} times, "
        f"push-pull every {format_duration(config.push_pull_period(nodes))} per node"
    )
    return [*textwrap.wrap(", ".join(settings), 96), derived]


def render_report(report: SimulationReport) -> list[str]:
    """The human-readable report, one figure per line."""
    from gossip_registry.core.config import ProtocolConfig
    from gossip_registry.core.limits import Limits

    # asdict() flattened the nested Limits into a dict; rebuild it.
    settings = {**report.protocol, "limits": Limits(**report.protocol.get("limits", {}))}
    config = ProtocolConfig(**settings)
    formation = "bootstrapped (every node starts knowing every other)"
    if not report.bootstrap:
        formation = f"formed by joins through n00000: {_seconds(report.formed_s, report.timeout)}"
    lines = [
        f"simulated {report.nodes} nodes, seed {report.seed}, profile {report.profile}, "
        f"loss {report.loss:g}",
        f"link model: {report.link}",
        f"protocol ({report.profile}):",
        *("  " + line for line in describe_protocol(config, report.nodes)),
        "",
        f"cluster: {formation}",
        f"spread of {SERVICE[0]}/{SERVICE[1]} registered on {report.origin}:",
    ]
    for label, value in report.spread_s.items():
        count = max(1, math.ceil(float(label.rstrip("%")) / 100 * report.nodes))
        lines.append(
            f"  {label:>4} of nodes ({count:>{len(str(report.nodes))}}): "
            f"{_seconds(value, report.timeout)}"
        )
    if report.crashed:
        shown = ", ".join(report.crashed[:5]) + (" ..." if len(report.crashed) > 5 else "")
        lines += [
            f"failure detection after crashing {len(report.crashed)} node(s) ({shown}):",
            f"  first suspicion:     {_seconds(report.first_suspicion_s, report.timeout)}",
            f"  first node declares: {_seconds(report.first_detection_s, report.timeout)}",
            f"  all nodes declare:   {_seconds(report.all_detection_s, report.timeout)}",
        ]
    lines.append(f"false positives: {report.false_positives} (live nodes declared dead)")
    t = report.traffic_per_node_per_s
    lines += [
        f"traffic per node per second (over {report.traffic_window_s:.1f} virtual s): "
        f"UDP {t['udp_messages']:.2f} messages, {t['udp_bytes']:.0f} bytes; "
        f"TCP {t['tcp_frames']:.3f} frames, {t['tcp_bytes']:.0f} bytes",
        f"wall time {report.wall_s:.2f} s for {report.virtual_s:.1f} virtual s "
        f"({report.events:,} events, {report.virtual_s / max(report.wall_s, 1e-9):.1f}x real time)",
    ]
    return lines
