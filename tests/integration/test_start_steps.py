"""No step of a node's start grows with the snapshot it restores (issue 15).

Counted, not timed (as ``tests/unit/test_scale_work.py``): every function
call (Python and C) each task step of the event loop makes while a node
starts from a snapshot, the largest step at twice the size against once.
Restamping the instances in one step was 1.7-1.9 s at 50,000; restarting
their health checks in one more was 0.7 s at 20,000.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import FrameType

import trio

from gossip_registry.registry.entry import CheckKind, CheckState, Health
from gossip_registry.registry.health import CheckSpec
from gossip_registry.runtime.node import Node
from gossip_registry.runtime.storage.snapshot import Snapshot, write_snapshot
from tests.integration import fast_config
from tests.integration.test_snapshot import entry
from tests.unit.test_scale_work import STEP_GROWTH_AT_TWICE_THE_SIZE


class CallsPerStep(trio.abc.Instrument):
    """The function calls of every task step, as a list."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self._count = 0

    def _profile(self, frame: FrameType, event: str, arg: object) -> None:
        if event in ("call", "c_call"):
            self._count += 1

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._count = 0
        sys.setprofile(self._profile)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        sys.setprofile(None)
        self.steps.append(self._count)


def snapshot_with_checks(data_dir: Path, count: int) -> None:
    """Our ``count`` instances, each with a TTL check, as the previous life saved them."""
    entries, checks = [], []
    for i in range(count):
        key = (f"svc{i % 50}", f"i{i:05}")
        state = CheckState(f"c{i}", CheckKind.TTL, Health.PASSING, "")
        entries.append(entry(key[1], service=key[0], status=Health.PASSING, checks=(state,)))
        checks.append((key, (CheckSpec(ttl=3600.0, check_id=f"c{i}"),)))
    write_snapshot(data_dir, Snapshot("n1", 2, (), tuple(entries), tuple(sorted(checks))))


async def largest_start_step(data_dir: Path, count: int) -> int:
    snapshot_with_checks(data_dir, count)
    meter = CallsPerStep()
    trio.lowlevel.add_instrument(meter)
    try:
        async with Node(fast_config("n1", data_dir=data_dir)) as node:
            assert node.protocol.table.live_count == count
            assert sum(node.check_counts().values()) == count
    finally:
        # Removed within this task's step, the meter never sees that step end.
        trio.lowlevel.remove_instrument(meter)
        sys.setprofile(None)
    return max(meter.steps)


async def test_no_step_of_a_restart_grows_with_the_snapshot(tmp_path: Path) -> None:
    with trio.fail_after(60):
        small = await largest_start_step(tmp_path / "small", 1500)
        large = await largest_start_step(tmp_path / "large", 3000)
    assert large / small < STEP_GROWTH_AT_TWICE_THE_SIZE
    # A profiler left installed slowed every later test of the suite about tenfold.
    assert sys.getprofile() is None


FRESH_START = """
import sys, trio
from gossip_registry.config.node import NodeConfig
from gossip_registry.runtime.node import Node
steps = []
class Calls(trio.abc.Instrument):
    count = 0
    def profile(self, frame, event, arg):
        if event in ("call", "c_call"):
            self.count += 1
    def before_task_step(self, task):
        self.count = 0
        sys.setprofile(self.profile)
    def after_task_step(self, task):
        sys.setprofile(None)
        steps.append(self.count)
async def main():
    trio.lowlevel.add_instrument(Calls())
    async with Node(NodeConfig("n1", bind=("127.0.0.1", 0), http=("127.0.0.1", 0))):
        pass
trio.run(main)
print(max(steps))
"""

FRESH_IMPORT = """
import sys
import gossip_registry.runtime.node
count = 0
def profile(frame, event, arg):
    global count
    if event in ("call", "c_call"):
        count += 1
sys.setprofile(profile)
import gossip_registry.api.http
sys.setprofile(None)
print(count)
"""


def calls_in_a_fresh_interpreter(code: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.split()[-1])


def test_no_step_of_a_start_imports_the_http_interfaces() -> None:
    """Imported lazily (optional dependencies) inside the start: one step of 117 ms CPU,
    the longest of every preloaded node in ``bench_scale.py`` (300-750 ms under load)."""
    largest = calls_in_a_fresh_interpreter(FRESH_START)
    assert largest < calls_in_a_fresh_interpreter(FRESH_IMPORT) / 2
