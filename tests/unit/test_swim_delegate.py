"""The registry sits on the failure detector through a delegate seam, not by inheritance.

``Swim`` tells its ``SwimDelegate`` what happened (member changes, registry
news, refutations, suspects that answer, stream messages, probe ticks, the
end of each call) and the delegate answers only through ``Swim``'s public
services. Any layer can sit there; ``Protocol`` is one.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path

from gossip_registry.core import protocol as protocol_module
from gossip_registry.core.codec import encode_packet, encode_stream
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Notify, SetTimer, StreamSend, Synced, TimerKind
from gossip_registry.core.messages import (
    Address,
    Alive,
    Dead,
    EntryUpdate,
    MemberRecord,
    MemberState,
    Packet,
    Ping,
    StreamMessage,
    SyncMore,
)
from gossip_registry.core.protocol import Protocol
from gossip_registry.core.swim import Swim
from gossip_registry.registry.entry import Entry, Health

ME: Address = ("198.18.0.1", 7946)
P1: Address = ("198.18.1.1", 7946)


class Recorder:
    """A delegate that writes down what it is told and answers through the public seam."""

    def __init__(self) -> None:
        self.swim: Swim | None = None
        self.heard: list[tuple[str, object]] = []

    def entry_update(self, now: float, update: EntryUpdate, repeat: bool) -> bool:
        self.heard.append(("entry", update.entry.key))
        return False

    def member_changed(self, now: float, record: MemberRecord, old: MemberRecord | None) -> None:
        self.heard.append(("member", (record.name, record.state)))

    def refuted(self, now: float, accusation: MemberState) -> None:
        self.heard.append(("refuted", accusation))

    def suspect_answered(self, now: float, target: MemberRecord) -> None:
        self.heard.append(("suspect answered", target.name))

    def stream_message(self, now: float, src: Address, message: StreamMessage) -> bytes | None:
        self.heard.append(("stream", type(message).__name__))
        assert self.swim is not None
        self.swim.emit(StreamSend(src, b"finish"))
        self.swim.arm(TimerKind.SYNC, now + 5.0)
        return b"reply"

    def probe_tick(self, now: float) -> None:
        self.heard.append(("probe tick", now))

    def before_drain(self, now: float) -> None:
        assert self.swim is not None
        self.swim.emit(Notify(Synced(P1, agreed=True)))


def swim_with(recorder: Recorder) -> Swim:
    swim = Swim(ProtocolConfig(), "me", ME, rng=random.Random(3), delegate=recorder)
    recorder.swim = swim
    return swim


def test_the_delegate_hears_member_changes_registry_news_and_refutations() -> None:
    recorder = Recorder()
    swim = swim_with(recorder)
    entry = Entry("web", "w1", "198.18.1.1", 80, (), {}, 1, Health.PASSING, "", "p1", 1, 1, False)
    news = (Alive("p1", P1, 1, {}), EntryUpdate(entry), Dead("me", 0, "p1"))
    swim.handle_packet(1.0, P1, encode_packet(Packet(None, news)))
    assert recorder.heard == [
        ("member", ("p1", MemberState.ALIVE)),
        ("entry", ("web", "w1")),
        ("refuted", MemberState.DEAD),
    ]


def test_the_delegate_answers_stream_messages_and_adds_effects_through_the_seam() -> None:
    recorder = Recorder()
    swim = swim_with(recorder)
    reply, effects = swim.handle_stream(1.0, P1, encode_stream(SyncMore(0, ())))
    assert reply == b"reply"
    assert recorder.heard == [("stream", "SyncMore")]
    assert StreamSend(P1, b"finish") in effects
    assert any(isinstance(e, SetTimer) and e.timer.kind is TimerKind.SYNC for e in effects)
    assert effects[-1] == Notify(Synced(P1, agreed=True)), (
        "before_drain runs as the call's effects end"
    )
    ping_reply, _ = swim.handle_stream(1.1, P1, encode_stream(Ping(7, "me", "p1")))
    assert ping_reply is not None
    assert recorder.heard == [("stream", "SyncMore")], "a ping for us is the detector's own"


def test_the_delegate_is_told_of_each_probe_tick() -> None:
    recorder = Recorder()
    swim = swim_with(recorder)
    tick = next(
        e for e in swim.start(0.0) if isinstance(e, SetTimer) and e.timer.kind is TimerKind.PROBE
    )
    swim.handle_timer(tick.at, tick.timer)
    assert ("probe tick", tick.at) in recorder.heard


def test_swim_alone_counts_stream_messages_it_cannot_answer() -> None:
    swim = Swim(ProtocolConfig(), "me", ME, rng=random.Random(3))
    assert swim.handle_stream(1.0, P1, encode_stream(SyncMore(0, ())))[0] is None
    assert swim.stats["unexpected_stream_messages"] == 1


def test_the_registry_composes_the_failure_detector_and_never_reaches_into_it() -> None:
    assert Swim not in Protocol.__mro__
    node = Protocol(ProtocolConfig(), "me", ME, rng=random.Random(3), now=0.0)
    assert node.swim.delegate is node
    tree = ast.parse(Path(protocol_module.__file__).read_text())
    private = [
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and n.attr.startswith("_")
        and isinstance(n.value, ast.Attribute)
        and n.value.attr == "swim"
    ]
    assert private == []
