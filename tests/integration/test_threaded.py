"""ThreadedNode: the trio node behind blocking calls, used from plain threads."""

from __future__ import annotations

import queue
import socket
import threading

import pytest

from gossip_registry.core.messages import MemberState
from gossip_registry.runtime.threaded import ThreadedNode
from tests.integration import eventually, fast_config


def test_registrations_from_four_threads_at_once_all_land_and_spread() -> None:
    with (
        ThreadedNode(fast_config("t1")) as first,
        ThreadedNode(fast_config("t2")) as second,
    ):
        assert second.join([first.advertise_addr]) == 1
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def work(worker: int) -> None:
            try:
                barrier.wait(timeout=5)
                for i in range(10):
                    first.register("web", instance_id=f"w{worker}-{i}", port=8000 + i)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert not errors
        assert not any(t.is_alive() for t in threads)
        assert first.services() == {"web": 40}
        assert len(first.discover("web")) == 40
        eventually(lambda: len(second.discover("web")) == 40)
        assert [m.name for m in second.members()] == ["t1", "t2"]
        assert first.status()["entries"] == 40
        assert first.deregister("w0-0") is not None
        eventually(lambda: len(second.discover("web")) == 39)


def test_stop_is_idempotent_and_calls_after_it_raise() -> None:
    node = ThreadedNode(fast_config("t"))
    node.start()
    assert node.running
    sockets = node.node.transport
    node.stop()
    node.stop()
    assert not node.running
    assert sockets.udp.fileno() == -1
    with pytest.raises(RuntimeError, match="not running"):
        node.members()
    with pytest.raises(RuntimeError, match="not running"):
        node.register("web", port=1)


def test_a_startup_error_is_raised_in_the_caller() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        node = ThreadedNode(fast_config("t", bind=squatter.getsockname()))
        with pytest.raises(OSError, match="in use"):
            node.start()
    assert not node.running
    node.stop()


def test_invalid_arguments_raise_value_error_in_the_calling_thread() -> None:
    with ThreadedNode(fast_config("t")) as node:
        with pytest.raises(ValueError, match="port"):
            node.register("web", port=70000)
        assert node.services() == {}


def test_watch_is_a_blocking_iterator_that_ends_with_the_node() -> None:
    node = ThreadedNode(fast_config("t")).start()
    try:
        watch = node.watch("web")
        assert watch.get(timeout=5) == []
        node.register("web", instance_id="w1", port=80)
        assert [e.instance_id for e in watch.get(timeout=5)] == ["w1"]
        with pytest.raises(queue.Empty):
            watch.get(timeout=0.05)  # nothing changed
        closed = node.watch("db")
        assert closed.get(timeout=5) == []
        closed.close()
        assert list(closed) == []
    finally:
        node.stop()
    assert list(watch) == []  # the node stopped: the iteration ends


def test_leave_from_a_thread_tells_the_others_and_stops() -> None:
    with ThreadedNode(fast_config("stay")) as stay:
        leaver = ThreadedNode(fast_config("go", seeds=(stay.advertise_addr,))).start()
        # Both ways: a node that does not know its peer yet has nobody to say goodbye to.
        eventually(lambda: len(stay.members()) == 2 and len(leaver.members()) == 2)
        leaver.leave()
        assert not leaver.running
        states = {m.name: m.state for m in stay.members()}
        eventually(lambda: {m.name: m.state for m in stay.members()}["go"] is MemberState.LEFT)
        assert states["stay"] is MemberState.ALIVE
