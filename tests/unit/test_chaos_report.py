"""The chaos report without the `chaos` extra: plots are optional, the verdict and report are not.

`gossip-registry-chaos` installed without matplotlib (``scripts/run`` installs
only what a cluster needs) ran a whole scenario, then crashed while writing
its plot, before printing the verdict.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gossip_registry.chaos.checker import check_history
from gossip_registry.chaos.report import write_report, write_timeline
from tests.unit.test_chaos_checker import META, good_history

RUN_META = META | {
    "scenario": "partition",
    "mode": "loopback",
    "prefix": "t1",
    "profile": "local",
    "seed": 1,
    "command": "gossip-registry-chaos partition --seed 1",
}


def test_without_matplotlib_the_timeline_is_skipped_and_the_report_has_no_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [RUN_META, *good_history()[1:]]
    verdict = check_history(events)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError

    plot = write_timeline(tmp_path / "timeline.png", events, verdict)
    write_report(tmp_path / "report.md", events, verdict, plot)

    assert plot is None
    assert not (tmp_path / "timeline.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "PASS" in report
    assert "![timeline]" not in report
    assert "gossip-registry[chaos]" in report  # says how to get the plot
