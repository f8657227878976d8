"""A client that finds the echo service through discovery and calls it, round robin.

It embeds its own registry node (``ThreadedNode``), joins the cluster, and
from then on reads instances from its local copy of the registry: a lookup
is a dictionary read, with no request to any server. Calls go round robin
over the passing instances; a call that fails moves on to the next instance
(failover), since the registry can lag a crash by the failure-detection
time.

    python examples/caller.py --join 127.0.0.1:7946 --count 6

Exit status 0 when every call got an answer from some instance.
"""

from __future__ import annotations

import argparse
import itertools
import json
import queue
import sys
import time
import urllib.error
import urllib.request
import uuid

from gossip_registry.config.cluster_file import PROFILES
from gossip_registry.config.node import NodeConfig
from gossip_registry.config.values import parse_address
from gossip_registry.registry.entry import Entry
from gossip_registry.runtime.threaded import ThreadedNode

CALL_TIMEOUT = 2.0
"""Seconds per HTTP call before trying the next instance."""


def wait_for_instances(node: ThreadedNode, service: str, wanted: int, timeout: float) -> bool:
    """Block until ``wanted`` instances are known, using the node's watch (no polling)."""
    deadline = time.monotonic() + timeout
    with node.watch(service) as watch:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                instances = watch.get(timeout=remaining)
            except (queue.Empty, StopIteration):
                return False
            if len(instances) >= wanted:
                return True


def call(instance: Entry, message: str) -> str:
    """POST ``message`` to one instance; returns the instance id it says answered."""
    url = f"http://{instance.address}:{instance.port}/"
    request = urllib.request.Request(url, data=message.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=CALL_TIMEOUT) as response:
        reply = json.load(response)
    if reply.get("echo") != message:
        raise ValueError(f"{instance.instance_id} echoed {reply.get('echo')!r}")
    return str(reply["instance"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--join",
        action="append",
        metavar="HOST:PORT",
        help="gossip address of a cluster node (repeatable; default 127.0.0.1:7946)",
    )
    parser.add_argument("--service", default="echo")
    parser.add_argument("--count", type=int, default=6, help="calls to make")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between calls")
    parser.add_argument(
        "--min-instances", type=int, default=1, help="wait until this many instances are known"
    )
    parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait for them")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="lan")
    args = parser.parse_args(argv)
    seeds = [parse_address(s) for s in args.join or ["127.0.0.1:7946"]]

    config = NodeConfig(
        name=f"caller-{uuid.uuid4().hex[:6]}",
        bind=("127.0.0.1", 0),
        protocol=PROFILES[args.profile](),
    )
    failed = 0
    with ThreadedNode(config) as node:
        if node.join(seeds) == 0:
            print(f"no seed answered ({args.join or '127.0.0.1:7946'}): is the cluster up?")
            return 1
        if not wait_for_instances(node, args.service, args.min_instances, args.wait):
            print(f"fewer than {args.min_instances} instances of {args.service} after {args.wait}s")
            node.leave()
            return 1
        turn = itertools.count()
        for n in range(args.count):
            if n:
                time.sleep(args.interval)
            instances = node.discover(args.service)  # passing only, sorted by id
            start = next(turn)
            for attempt in range(len(instances)):
                instance = instances[(start + attempt) % len(instances)]
                message = f"hello {n}"
                try:
                    answered = call(instance, message)
                except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
                    print(f"call {n}: {instance.instance_id} failed ({exc}); trying the next")
                    continue
                where = f"{instance.address}:{instance.port}"
                print(f"call {n}: {answered} at {where} echoed {message!r}")
                break
            else:
                print(f"call {n}: no instance of {args.service} answered")
                failed += 1
            sys.stdout.flush()
        node.leave()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
