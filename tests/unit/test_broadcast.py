"""The transmit-limited broadcast queue."""

from gossip_registry.core.broadcast import BroadcastQueue


def test_each_update_is_sent_at_most_the_retransmit_limit() -> None:
    queue = BroadcastQueue(limit=100)
    queue.push("a", b"x" * 10)
    sent = [queue.take(budget=1000, limit=3) for _ in range(5)]
    assert sent == [[b"x" * 10]] * 3 + [[], []]
    assert len(queue) == 0


def test_newer_update_about_the_same_subject_replaces_the_queued_one() -> None:
    queue = BroadcastQueue(limit=100)
    queue.push("a", b"old")
    queue.push("a", b"new")
    assert queue.take(budget=1000, limit=5) == [b"new"]
    assert len(queue) == 1


def test_least_sent_go_first_and_the_budget_is_respected() -> None:
    queue = BroadcastQueue(limit=100)
    queue.push("a", b"a" * 10)
    assert queue.take(budget=1000, limit=5) == [b"a" * 10]
    queue.push("b", b"b" * 10)
    queue.push("c", b"c" * 30)
    # fresh ones first, the larger of equals first; "a" (sent once) does not fit after them.
    assert queue.take(budget=45, limit=5) == [b"c" * 30, b"b" * 10]
    assert queue.take(budget=1000, limit=5) == [b"c" * 30, b"b" * 10, b"a" * 10]


def test_an_update_too_large_for_this_packet_waits_for_the_next() -> None:
    queue = BroadcastQueue(limit=100)
    queue.push("big", b"B" * 500)
    queue.push("small", b"s" * 10)
    assert queue.take(budget=100, limit=5) == [b"s" * 10]
    assert queue.take(budget=1000, limit=5) == [b"B" * 500, b"s" * 10]


def test_queue_is_bounded_by_dropping_the_most_sent() -> None:
    queue = BroadcastQueue(limit=3)
    queue.push("old", b"o")
    queue.take(budget=1000, limit=10)
    for subject in ("x", "y", "z"):
        queue.push(subject, subject.encode())
    assert len(queue) == 3
    assert sorted(queue.take(budget=1000, limit=10)) == [b"x", b"y", b"z"]


def test_take_never_returns_more_updates_than_asked() -> None:
    queue = BroadcastQueue(limit=100)
    for i in range(10):
        queue.push(i, b"u")
    assert len(queue.take(budget=1000, limit=5, most=4)) == 4


def test_beyond_the_limit_the_most_sent_are_dropped_one_per_push() -> None:
    queue = BroadcastQueue(limit=4)
    queue.push("a", b"a")
    queue.take(budget=1000, limit=10)
    queue.push("b", b"b")
    queue.take(budget=1000, limit=10)  # a sent twice, b once
    queue.push("c", b"c")
    queue.push("d", b"d")
    queue.push("e", b"e")  # over the limit: drop a
    assert len(queue) == 4
    assert sorted(queue.take(budget=1000, limit=10)) == [b"b", b"c", b"d", b"e"]
    queue.push("f", b"f")  # now b is the most sent (twice)
    assert sorted(queue.take(budget=1000, limit=10)) == [b"c", b"d", b"e", b"f"]


def test_stale_versions_do_not_pile_up_when_one_subject_is_replaced_over_and_over() -> None:
    queue = BroadcastQueue(limit=10)
    for i in range(10_000):
        queue.push("same", str(i).encode())
    assert len(queue) == 1
    assert queue.take(budget=1000, limit=5) == [b"9999"]
    assert len(queue._heap) + len(queue._drops) <= 4 * len(queue) + 128


def test_news_of_a_lower_rank_goes_first_whatever_its_size_or_transmissions() -> None:
    """Membership before registry news, as memberlist sends its own broadcasts before its
    delegate's: thousands of fresh registrations must not hold back a refutation."""
    queue = BroadcastQueue(limit=100)
    for i in range(50):
        queue.push(("e", i), b"e" * 100, rank=1)
    queue.push(("m", "me"), b"m" * 10)
    assert queue.take(budget=1000, limit=5)[0] == b"m" * 10
    queue.push(("m", "other"), b"o" * 10)
    assert queue.take(budget=1000, limit=5)[:2] == [b"o" * 10, b"m" * 10]


def test_beyond_the_limit_registry_news_is_dropped_before_membership_news() -> None:
    queue = BroadcastQueue(limit=3)
    queue.push(("m", "a"), b"a")
    assert queue.take(budget=1000, limit=9) == [b"a"]  # sent once: the most sent
    for i in range(3):
        queue.push(("e", i), b"e", rank=1)
    assert len(queue) == 3
    assert b"a" in queue.take(budget=1000, limit=9)
