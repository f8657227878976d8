#!/usr/bin/env python3
"""Run the fuzz targets of the test suite for much longer, with fresh seeds.

The targets are ``tests/property/fuzz_targets.py`` (UDP packets into a core,
TCP framing, snapshot files, cluster.toml, HTTP bodies, the merge under
adversarial versions). The suite runs each for 30 derandomized examples;
this script runs them round-robin in batches of ``--batch`` examples, each
batch under its own seed, until ``--minutes`` have passed.

Usage: scripts/fuzz.py [--minutes 10] [--seed S] [--batch 200] [--target NAME ...]
                       [--json PATH]
       scripts/fuzz.py --replay NAME:SEED [--batch N]
Prints examples run per target as it goes; on the first failure prints
hypothesis' falsifying example (and a @reproduce_failure blob), the target,
the batch seed and the --replay command, then exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as with_seed

from tests.property.fuzz_targets import TARGETS, fuzz_test


def batch(name: str, batch_seed: int, examples: int) -> Callable[[], None]:
    """``examples`` examples of target ``name`` drawn from ``batch_seed``."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )(with_seed(batch_seed)(fuzz_test(name)))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, help="seed of the batch seeds (default: random)")
    parser.add_argument("--batch", type=int, default=200, help="examples per target per batch")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("--replay", metavar="NAME:SEED", help="rerun one failed batch")
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args()
    # Corrupt snapshots are logged as they are set aside: expected here, by the thousand.
    logging.getLogger("gossip_registry").setLevel(logging.CRITICAL)

    if args.replay:
        name, _, seed_text = args.replay.partition(":")
        batch(name, int(seed_text), args.batch)()
        print(f"{name}: batch seed {seed_text} passes")
        return 0

    names = args.target or sorted(TARGETS)
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"fuzzing {', '.join(names)} for {args.minutes:g} min, --seed {first}", flush=True)
    seeds = random.Random(first)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    counts = dict.fromkeys(names, 0)
    while time.monotonic() < deadline:
        for name in names:
            batch_seed = seeds.randrange(2**32)
            try:
                batch(name, batch_seed, args.batch)()
            except Exception:
                traceback.print_exc()
                print(
                    f"\nFAILED: target {name}, batch seed {batch_seed}, after {counts[name]} "
                    f"passing examples of it.\nReplay: scripts/fuzz.py --replay "
                    f"{name}:{batch_seed} --batch {args.batch}",
                    file=sys.stderr,
                )
                return 1
            counts[name] += args.batch
            if time.monotonic() >= deadline:
                break
        elapsed = time.monotonic() - started
        print(f"{elapsed:7.0f}s  " + "  ".join(f"{n}={c}" for n, c in counts.items()), flush=True)
    elapsed = time.monotonic() - started
    print(f"no failure in {sum(counts.values())} examples over {elapsed:.0f}s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"seed": first, "seconds": round(elapsed), "examples": counts, "failures": 0}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
