"""The chaos checker on hand-written histories: a good run passes, each kind of violation fails.

Each violating history differs from the passing one by the one thing the
invariant is about, so a failure here points at that invariant's logic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gossip_registry.chaos.checker import check_history, settled
from gossip_registry.chaos.history import History, load_history

NODES = ["n1", "n2", "n3"]
META = {
    "type": "meta",
    "t": 0.0,
    "nodes": NODES,
    "suspicion_min": 3.0,
    "suspicion_max": 18.0,
    "detect_bound": 26.0,
    "converge_bound": 30.0,
    "linger": 30.0,
}
ALIVE = dict.fromkeys(NODES, "alive")
PAUSE = 7
"""Index in ``good_history()`` of the pause; n1's, n2's, n3's views during it follow."""
N1_PAUSED, N2_PAUSED = 8, 9
N3_AFTER_HEAL = 15


def obs(t: float, round_: int, node: str, ids: list[str], **members: str) -> dict[str, Any]:
    return {
        "type": "obs",
        "t": t,
        "round": round_,
        "node": node,
        "members": ALIVE | members,
        "digest": "d-" + ",".join(sorted(ids)),
        "ids": sorted(ids),
    }


def sweep(t: float, round_: int, ids: list[str], **members: str) -> list[dict[str, Any]]:
    return [obs(t + 0.01 * k, round_, n, ids, **members) for k, n in enumerate(NODES)]


def op(kind: str, entry: str, t: float, ok: bool = True, node: str = "n1") -> dict[str, Any]:
    event = {"type": "op", "t": t + 0.1, "op": kind, "node": node, "id": entry, "start": t}
    event["end"] = t + 0.1
    return event | {"ok": ok, "status": 200 if ok else None}


def good_history() -> list[dict[str, Any]]:
    """a, b registered; b deregistered; n2 paused briefly; all converge after the heal."""
    return [
        META,
        op("register", "a", 1.0),
        op("register", "b", 1.5, node="n2"),
        *sweep(2.0, 1, ["a", "b"]),
        op("deregister", "b", 3.0, node="n2"),
        {"type": "fault_start", "t": 4.0, "id": 1, "kind": "pause", "nodes": ["n2"]}
        | {"params": {"seconds": 1.0}},
        *sweep(4.5, 2, ["a"], n2="suspect"),
        {"type": "fault_end", "t": 5.0, "id": 1},
        {"type": "heal", "t": 5.0},
        *sweep(6.0, 3, ["a"]),
        *sweep(7.0, 4, ["a"]),
        {"type": "end", "t": 7.5},
    ]


def failed(events: list[dict[str, Any]]) -> set[str]:
    return {c.name[0] for c in check_history(events).checks if not c.ok}


def test_a_good_history_passes_every_invariant() -> None:
    verdict = check_history(good_history())
    assert verdict.ok, verdict.checks
    assert verdict.figures["false_positives"] == 0
    assert verdict.figures["convergence_s"] is not None
    assert settled(good_history())


def test_a_live_member_seen_dead_is_a_false_positive() -> None:
    events = good_history()
    events[N1_PAUSED] = obs(4.5, 2, "n1", ["a"], n3="dead")  # n3 was never faulted
    assert failed(events) == {"1"}
    assert check_history(events).figures["false_positives"] == 1


def test_a_short_pause_does_not_excuse_a_death_but_a_long_one_does() -> None:
    events = good_history()
    events[N1_PAUSED] = obs(4.5, 2, "n1", ["a"], n2="dead")
    assert failed(events) == {"1"}
    events[PAUSE] = events[PAUSE] | {"params": {"seconds": 20.0}}
    assert failed(events) == set()


def test_a_partition_excuses_deaths_across_it_not_within_a_side() -> None:
    events = good_history()
    events[PAUSE] = {"type": "fault_start", "t": 4.0, "id": 1, "kind": "partition"}
    events[PAUSE] |= {"nodes": NODES, "params": {"groups": [["n1"], ["n2", "n3"]]}}
    events[N1_PAUSED] = obs(4.5, 2, "n1", ["a"], n2="dead", n3="dead")
    assert failed(events) == set()
    events[N2_PAUSED] = obs(4.51, 2, "n2", ["a"], n3="dead")
    assert failed(events) == {"1"}


def test_an_acknowledged_registration_missing_at_the_end_is_lost() -> None:
    events = good_history()
    events[-2] = obs(7.0, 4, "n3", [])
    assert "2" in failed(events)


def test_an_unacknowledged_registration_is_judged_neither_way() -> None:
    events = good_history()
    events.insert(2, op("register", "maybe", 1.2, ok=False))
    assert failed(events) == set()


def test_a_deregistered_entry_that_comes_back_is_a_resurrection() -> None:
    events = good_history()
    events[N3_AFTER_HEAL] = obs(6.02, 3, "n3", ["a", "b"])  # b gone at 4.52 on n3, back
    assert "3" in failed(events)


def test_a_deregistered_entry_a_node_never_held_may_arrive_late_but_must_go() -> None:
    # n3 missed the registration; a peer cut off from the deletion hands it over late.
    events = good_history()
    events[5] = obs(2.02, 1, "n3", ["a"])  # n3 never shows b before its deletion
    events[N3_AFTER_HEAL] = obs(6.02, 3, "n3", ["a", "b"])
    assert failed(events) == set()
    events[-2] = obs(7.02, 4, "n3", ["a", "b"])  # but it must not keep it
    assert "3" in failed(events)


def test_an_entry_shown_again_flagged_stale_is_not_a_resurrection() -> None:
    # Self-preservation: n3 shows b again, but flagged stale (the history keeps it apart).
    events = good_history()
    events[N3_AFTER_HEAL] = obs(6.02, 3, "n3", ["a"]) | {"stale_ids": ["b"]}
    assert failed(events) == set()
    assert check_history(events).figures["stale_answers"] == 1


def test_a_re_registered_entry_may_come_back() -> None:
    events = good_history()
    events.insert(-5, op("register", "b", 5.5, node="n2"))
    for i, e in enumerate(events):
        if e["type"] == "obs" and e["t"] >= 6.0:
            events[i] = obs(e["t"], e["round"], e["node"], ["a", "b"])
    assert failed(events) == set()


def test_entries_of_a_killed_node_must_go_and_stay_gone() -> None:
    events = good_history()
    kill = {"type": "fault_start", "t": 5.5, "id": 2, "kind": "down", "nodes": ["n1"]}
    events.insert(-5, kill | {"params": {"how": "sigkill"}})
    tail = [
        *sweep(6.0, 3, [], n1="dead"),
        *sweep(7.0, 4, [], n1="dead"),
    ]
    events = [e for e in events if not (e["type"] == "obs" and e["t"] >= 6.0)]
    events[-1:-1] = tail
    assert failed(events) == set()
    detection = check_history(events).figures["detection"]["n1"]
    assert detection["first_s"] == 0.51
    events[-2] = obs(7.0, 4, "n3", ["a"], n1="dead")  # a of dead n1 back on n3
    assert "3" in failed(events)


def test_a_kill_never_detected_by_every_survivor_fails_detection() -> None:
    events = good_history()
    kill = {"type": "fault_start", "t": 5.5, "id": 2, "kind": "down", "nodes": ["n3"]}
    events.insert(-5, kill | {"params": {"how": "sigkill"}})
    assert "5" in failed(events)


def test_digests_that_never_agree_after_the_heal_fail_convergence() -> None:
    events = good_history()
    for i, e in enumerate(events):
        if e["type"] == "obs" and e["node"] == "n3" and e["t"] >= 6.0:
            events[i] = e | {"digest": "other"}
    assert failed(events) == {"4"}
    assert not settled(events)


def test_a_last_sweep_cut_short_by_the_end_of_the_run_is_not_a_divergence() -> None:
    events = good_history()
    end = events.pop()
    events += [*sweep(7.5, 5, ["a"])[:1], end | {"t": 7.6}]  # only n1 answered before the end
    assert failed(events) == set()


def test_a_node_that_stops_answering_in_the_last_sweep_is_still_a_divergence() -> None:
    events = good_history()
    end = events.pop()
    last = sweep(7.5, 5, ["a"])
    last[2] = last[2] | {"members": None, "digest": None}
    events += [*last, end | {"t": 7.6}]
    assert failed(events) == {"4"}


def test_a_saved_history_is_checked_the_same_after_loading(tmp_path: Path) -> None:
    history = History(tmp_path / "h.jsonl")
    for event in good_history():
        history.write(dict(event))
    history.close()
    with (tmp_path / "h.jsonl").open("a") as f:
        f.write('{"type": "obs", "t": 9')  # a line cut short by a crash
    events = load_history(tmp_path / "h.jsonl")
    assert json.loads(json.dumps(events)) == good_history()
    assert check_history(events).ok


def test_a_one_way_cut_excuses_only_the_deaths_its_verdicts_can_explain() -> None:
    events = good_history()
    events[PAUSE] = {"type": "fault_start", "t": 4.0, "id": 1, "kind": "partition"}
    events[PAUSE] |= {"nodes": NODES, "params": {"groups": [["n1"], ["n2", "n3"]], "one_way": True}}
    events[N1_PAUSED] = obs(4.5, 2, "n1", ["a"], n2="dead")  # n1's pings to n2 are cut
    events[N2_PAUSED] = obs(4.51, 2, "n2", ["a"], n1="dead")  # n1's acks to n2 are cut
    assert failed(events) == set()
    # n2 and n3 reach each other; only n1 could doubt n2, and n1 cannot tell n3.
    events[N2_PAUSED + 1] = obs(4.52, 2, "n3", ["a"], n2="dead")
    assert failed(events) == {"1"}
