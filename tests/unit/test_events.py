"""The event bus and the events it carries: no sockets, no node."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import trio
import trio.testing

from gossip_registry.api.events import event_stream
from gossip_registry.core.effects import EntryChanged, MemberChanged
from gossip_registry.core.messages import MemberState
from gossip_registry.registry.entry import CheckKind, CheckState, Entry, Health
from gossip_registry.runtime.events import Event, EventBus, describe, parse_kinds

ADDR = ("127.0.0.1", 7946)
ENTRY = Entry(
    service="web",
    instance_id="web-1",
    address="10.0.0.1",
    port=80,
    tags=("v2",),
    meta={},
    weight=1,
    status=Health.PASSING,
    output="",
    owner="n1",
    owner_incarnation=0,
    stamp=100,
    deleted=False,
)


def member(state: MemberState, previous: MemberState | None) -> MemberChanged:
    return MemberChanged("n2", ADDR, state, 3, previous)


def event(i: int, kind: str = "entry") -> Event:
    return Event(float(i), kind, "registered", {"id": f"web-{i}"})


@pytest.mark.parametrize(
    ("state", "previous", "name"),
    [
        (MemberState.ALIVE, None, "joined"),
        (MemberState.ALIVE, MemberState.DEAD, "joined"),
        (MemberState.ALIVE, MemberState.LEFT, "joined"),
        (MemberState.ALIVE, MemberState.SUSPECT, "alive"),
        (MemberState.ALIVE, MemberState.ALIVE, "alive"),
        (MemberState.SUSPECT, MemberState.ALIVE, "suspect"),
        (MemberState.DEAD, MemberState.SUSPECT, "dead"),
        (MemberState.LEFT, MemberState.ALIVE, "left"),
    ],
)
def test_member_changes_are_named_for_what_a_monitor_cares_about(
    state: MemberState, previous: MemberState | None, name: str
) -> None:
    described = describe(member(state, previous), 5.0)
    assert described is not None
    assert (described.kind, described.event) == ("member", name)
    assert described.as_json() == {
        "time": 5.0,
        "kind": "member",
        "event": name,
        "name": "n2",
        "address": "127.0.0.1",
        "port": 7946,
        "incarnation": 3,
        "previous": previous.label if previous is not None else None,
    }


def test_entry_changes_say_registered_updated_deregistered_or_removed_by_a_fence() -> None:
    moved = replace(ENTRY, port=81, stamp=101)
    cases = [
        (EntryChanged(None, ENTRY), "registered", 80),
        (EntryChanged(ENTRY, moved), "updated", 81),
        (EntryChanged(ENTRY, None), "deregistered", 80),
        (EntryChanged(ENTRY, None, fenced=True), "removed", 80),
    ]
    for change, name, port in cases:
        described = describe(change, 1.0)
        assert described is not None
        assert (described.kind, described.event, described.fields["port"]) == ("entry", name, port)
        assert described.fields["node"] == "n1"


def test_a_change_of_health_only_is_a_check_event_and_a_bare_reassertion_is_none() -> None:
    failing = replace(ENTRY, status=Health.CRITICAL, output="timeout", stamp=101)
    described = describe(EntryChanged(ENTRY, failing), 1.0)
    assert described is not None
    assert (described.kind, described.event) == ("check", "critical")
    assert described.fields["previous"] == "passing"
    assert described.fields["output"] == "timeout"
    reasserted = replace(ENTRY, owner_incarnation=1, stamp=102)
    assert describe(EntryChanged(ENTRY, reasserted), 1.0) is None
    retagged = replace(failing, tags=("v3",), stamp=103)
    described = describe(EntryChanged(failing, retagged), 1.0)
    assert described is not None
    assert described.kind == "entry"


def test_a_check_that_turns_critical_is_a_check_event_though_the_check_list_changed() -> None:
    """The per-check verdicts travel in ``checks``: their change is a health change too."""
    ttl = CheckState("web-ttl", CheckKind.TTL, Health.PASSING, "")
    passing = replace(ENTRY, checks=(ttl,))
    failed = replace(ttl, status=Health.CRITICAL, output="disk full")
    failing = replace(passing, status=Health.CRITICAL, output="disk full", checks=(failed,))
    described = describe(EntryChanged(passing, replace(failing, stamp=101)), 1.0)
    assert described is not None
    assert (described.kind, described.event) == ("check", "critical")
    other = CheckState("web-http", CheckKind.HTTP, Health.CRITICAL, "disk full")
    swapped = replace(failing, checks=(other,), stamp=102)  # another check: a new definition
    described = describe(EntryChanged(passing, swapped), 1.0)
    assert described is not None
    assert (described.kind, described.event) == ("entry", "updated")


def test_parse_kinds_defaults_to_all_and_names_unknown_kinds() -> None:
    assert parse_kinds(None) == {"member", "entry", "check"}
    assert parse_kinds(" member , check") == {"member", "check"}
    with pytest.raises(ValueError, match=r"unknown nodes \(known: member, entry, check\)"):
        parse_kinds("member,nodes")
    with pytest.raises(ValueError, match="none given"):
        parse_kinds(",")


async def test_a_slow_subscriber_loses_the_oldest_events_and_gets_a_dropped_marker() -> None:
    bus = EventBus(capacity=3)
    with trio.fail_after(5):
        async with bus.subscribe() as slow, bus.subscribe(capacity=100) as roomy:
            for i in range(10):
                bus.publish(event(i))  # never blocks, whoever is behind
            received = [await slow.__anext__() for _ in range(4)]
            assert received[0].kind == "dropped"
            assert received[0].fields == {"count": 7}
            assert [e.fields["id"] for e in received[1:]] == ["web-7", "web-8", "web-9"]
            assert [(await roomy.__anext__()).fields["id"] for _ in range(10)] == [
                f"web-{i}" for i in range(10)
            ]
    assert bus.dropped_total == 7
    assert bus.subscribers == 0


async def test_subscribers_get_only_the_kinds_they_asked_for_and_events_in_order() -> None:
    bus = EventBus()
    with trio.fail_after(5):
        async with bus.subscribe({"member"}) as members:
            bus.publish(event(1, "entry"))
            bus.publish(event(2, "member"))
            bus.publish(event(3, "check"))
            bus.publish(event(4, "member"))
            bus.close()
            assert [e.time async for e in members] == [2.0, 4.0]


async def test_a_waiting_subscriber_wakes_on_publish_and_its_iteration_ends_on_close() -> None:
    bus = EventBus()
    seen: list[float] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def consume() -> None:
                async with bus.subscribe() as events:
                    async for e in events:
                        seen.append(e.time)

            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            assert bus.subscribers == 1
            bus.publish(event(1))
            await trio.testing.wait_all_tasks_blocked()
            assert seen == [1.0]
            assert bus.subscribers == 1, "still iterating: the bus is open"
            bus.close()
    assert bus.subscribers == 0
    async with bus.subscribe() as late:
        assert [e async for e in late] == [], "a closed bus ends a new subscription at once"


async def test_notify_publishes_the_described_event_to_subscribers() -> None:
    bus = EventBus()
    reasserted = replace(ENTRY, owner_incarnation=1, stamp=102)
    with trio.fail_after(5):
        async with bus.subscribe() as events:
            bus.notify(EntryChanged(ENTRY, reasserted))  # nothing visible: no event
            bus.notify(member(MemberState.DEAD, MemberState.SUSPECT))
            bus.close()
            assert [(e.kind, e.event) async for e in events] == [("member", "dead")]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        EventBus(capacity=0)


async def test_take_hands_over_every_queued_event_at_once_marker_first_up_to_its_limit() -> None:
    """A subscriber behind by many events catches up in one step, not one wake-up per event."""
    bus = EventBus(capacity=4)
    with trio.fail_after(5):
        async with bus.subscribe() as events:
            for i in range(6):
                bus.publish(event(i))
            first = await events.take(3)
            assert [e.kind for e in first] == ["dropped", "entry", "entry"]
            assert first[0].fields == {"count": 2}
            assert [e.fields["id"] for e in first[1:]] == ["web-2", "web-3"]
            assert [e.fields["id"] for e in await events.take(10)] == ["web-4", "web-5"]
            bus.close()
            assert await events.take(10) == [], "closed and empty: the end"


async def test_the_http_stream_writes_the_events_queued_meanwhile_in_one_chunk() -> None:
    """Each chunk costs the server a send through h11 and the socket, whatever its size."""
    bus = EventBus()
    body = aiter(event_stream(bus, ["entry"]).body_iterator)

    async def next_chunk() -> bytes:
        chunk = await anext(body)
        assert isinstance(chunk, bytes)
        return chunk

    with trio.fail_after(5):
        assert b'"event":"subscribed"' in await next_chunk()
        for i in range(5):
            bus.publish(event(i))
        lines = (await next_chunk()).splitlines()
        assert [json.loads(line)["id"] for line in lines] == [f"web-{i}" for i in range(5)]
        bus.close()
        with pytest.raises(StopAsyncIteration):
            await next_chunk()
