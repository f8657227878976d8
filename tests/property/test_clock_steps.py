"""A node's wall clock stepped forwards and backwards (NTP) while it writes.

The driver tells the core the wall clock before every call (``observe_wall``).
Within the skew limit a step back never makes a version go down: the HLC
keeps counting above what it issued. A step back beyond the limit is taken for
a correction (the clock was that far ahead, so peers refused what it stamped):
the node resets its HLC and restamps those versions; a local write is never
lost to a version of its own, and once the clock is right and one push-pull
has run, a peer with the true clock holds exactly the node's versions.
"""

from __future__ import annotations

import random

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gossip_registry.core.codec import encode_packet
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Effect, SetTimer, Timer, TimerKind
from gossip_registry.core.messages import Address, EntryUpdate, Packet
from gossip_registry.core.protocol import Protocol
from gossip_registry.registry.entry import Entry

ME: Address = ("198.18.0.1", 7946)
PEER: Address = ("198.18.0.2", 7946)
WALL = 1_800_000_000.0
SKEW = ProtocolConfig().limits.max_clock_skew
INSTANCES = ("a", "b", "c")

Op = tuple[str, float | str]
"""("step", clock error in seconds) | ("register" | "deregister", instance) | ("tick", "")."""


def operations(max_error: float) -> st.SearchStrategy[list[Op]]:
    return st.lists(
        st.one_of(
            st.tuples(st.just("step"), st.floats(-max_error, max_error)),
            st.tuples(st.sampled_from(["register", "deregister"]), st.sampled_from(INSTANCES)),
            st.tuples(st.just("tick"), st.just("")),
        ),
        max_size=40,
    )


class Driver:
    """Drives one core with a wall clock ``error`` seconds off, one second per operation."""

    def __init__(self, name: str, addr: Address) -> None:
        self.now = 0.0
        self.error = 0.0
        self.node = Protocol(
            ProtocolConfig(), name, addr, rng=random.Random(1), now=0.0, wall_offset=WALL
        )
        self.probe: Timer | None = None
        self.track(self.node.start(0.0))

    def track(self, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, SetTimer) and e.timer.kind is TimerKind.PROBE:
                self.probe = e.timer

    def apply(self, op: Op) -> int | None:
        """Carry out ``op``; returns the stamp of the local write it made, if any."""
        self.now += 1.0
        kind, arg = op
        entry: Entry | None
        if kind == "step":
            assert isinstance(arg, float)
            self.error = arg
        self.node.observe_wall(self.now, WALL + self.now + self.error)
        if kind == "register":
            entry, effects = self.node.register(self.now, "web", str(arg), "198.18.1.1", 80)
        elif kind == "deregister":
            gone, effects = self.node.deregister(self.now, ("web", str(arg)))
            stored = self.node.table.get(("web", str(arg)))
            entry = stored if gone is not None and stored is not None else None
        elif kind == "tick" and self.probe is not None:
            self.track(self.node.handle_timer(self.now, self.probe))
            return None
        else:
            return None
        self.track(effects)
        if entry is None:
            return None
        assert self.node.table.get(entry.key) == entry, "a local write lost to our own version"
        return entry.stamp


@settings(max_examples=150, deadline=None)
@given(operations(max_error=SKEW * 0.4))
def test_a_step_back_within_the_skew_limit_never_makes_a_version_go_down(ops: list[Op]) -> None:
    driver = Driver("me", ME)
    issued: list[int] = []
    last = driver.node.clock.last
    for op in ops:
        stamp = driver.apply(op)
        if stamp is not None:
            issued.append(stamp)
        assert driver.node.clock.last >= last
        last = driver.node.clock.last
    assert issued == sorted(set(issued))  # strictly increasing
    assert driver.node.stats["clock_resets"] == 0


@settings(max_examples=150, deadline=None)
@given(operations(max_error=15 * 60.0))
@example(  # one version kept within the limit, one restamped: the next write must win
    [
        ("step", 50.0),
        ("register", "a"),
        ("step", 600.0),
        ("register", "b"),
        ("step", 0.0),
        ("register", "a"),
    ]
)
def test_after_any_steps_a_peer_with_the_true_clock_holds_the_nodes_versions(
    ops: list[Op],
) -> None:
    driver = Driver("me", ME)
    peer = Protocol(ProtocolConfig(), "peer", PEER, rng=random.Random(2), now=0.0)
    peer.start(0.0)

    def send(to: Protocol, src: Address, entries: list[Entry]) -> None:
        for entry in entries:
            to.handle_packet(driver.now, src, encode_packet(Packet(None, (EntryUpdate(entry),))))

    def push_pull() -> None:  # each side sends the other every version of the node's keys
        peer.observe_wall(driver.now, WALL + driver.now)
        send(driver.node, PEER, peer.table.owned_by("me"))
        send(peer, ME, driver.node.table.owned_by("me"))

    for op in ops:
        driver.apply(op)
        push_pull()
    driver.apply(("step", 0.0))  # NTP corrects the clock ...
    driver.apply(("tick", ""))  # ... and one probe period later
    push_pull()
    ours = driver.node.table.owned_by("me")
    assert [peer.table.get(e.key) for e in ours] == ours
