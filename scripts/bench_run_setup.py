#!/usr/bin/env python3
"""How long a newcomer's first ``scripts/run`` spends installing, and how big its venv is.

    python3 scripts/bench_run_setup.py [--runs 3] [--json bench-results/bench_run_setup.json]

Each run copies the tracked files of this checkout to a temporary directory
(so the real .venv is untouched), then times what ``scripts/run`` does before
the cluster starts: create ``.venv``, install the project without extras,
and load the ``up`` command (``gossip-registry up --help``). The pip cache is
whatever this machine has (warm after the first run). The target (issue 12)
is under 20 s. Figures are medians; the machine may be shared, so the user
and system CPU seconds are printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP = "EXTRAS= ; source scripts/_venv.sh; gossip-registry up --help >/dev/null"
RUN_TIMEOUT = 600.0
"""Seconds one set-up may take before the benchmark gives up on it."""


def _copy_tracked(to: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        target = to / os.fsdecode(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def one_run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-run-setup-") as tmp:
        checkout = Path(tmp)
        _copy_tracked(checkout)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        subprocess.run(
            ["bash", "-c", SETUP],
            cwd=checkout,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=RUN_TIMEOUT,
        )
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "wall_s": wall,
            "user_s": after.ru_utime - before.ru_utime,
            "sys_s": after.ru_stime - before.ru_stime,
            "venv_mb": _size_mb(checkout / ".venv"),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="set-ups to time (median reported)")
    parser.add_argument("--json", type=Path, default=Path("bench-results/bench_run_setup.json"))
    args = parser.parse_args()
    runs = [one_run() for _ in range(max(1, args.runs))]
    summary = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    for i, r in enumerate(runs, 1):
        print(
            f"run {i}: {r['wall_s']:.1f} s wall ({r['user_s']:.1f} s user, {r['sys_s']:.1f} s sys),"
            f" venv {r['venv_mb']:.0f} MB"
        )
    print(
        f"median: {summary['wall_s']:.1f} s wall, venv {summary['venv_mb']:.0f} MB "
        f"(target: under 20 s); load average {os.getloadavg()[0]:.1f}"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": runs, "median": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
