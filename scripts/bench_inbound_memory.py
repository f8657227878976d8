#!/usr/bin/env python3
"""Benchmark: the RSS of a node while peers flood it with large, unfinished TCP frames.

Issue 10, finding 2: 128 connections each announcing a 32 MiB frame took a
node to 2.99 GB before the transport had one budget for what it buffers.
By default the frames are as large as the node accepts (``max_stream_bytes``,
8 MiB): a larger one is refused at its header.
This starts one node in a child process (loopback, port 0; ``--sealed``
requires AES-GCM sealed gossip, and the attacker, without the key, sends
well-formed chunked frame headers followed by noise; ``--max-frame-mib`` its frame limit, which
is also its buffer budget), reads its idle RSS, then opens
``--connections`` connections at once, each announcing a ``--frame-mib``
frame and sending it whole, for ``--rounds`` rounds, sampling the child's RSS
throughout. ``--contrast`` repeats the run with the budget lifted (as before
the fix) on ``--contrast-connections`` connections (few: it really does
buffer them all), so both figures come from one run on one machine.

Usage: scripts/bench_inbound_memory.py [--connections 128] [--frame-mib 8] [--rounds 2]
           [--max-frame-mib 8] [--sealed] [--contrast] [--contrast-connections 8]
           [--json PATH]
Prints idle and peak RSS and their ratio, and writes JSON
(default bench-results/bench_inbound_memory.json). Every process it starts is
stopped by its PID; all traffic is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KEY = b"\x07" * 32
MIB = 1 << 20


def rss_kib(pid: int) -> int:
    """Resident set of ``pid`` now, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


async def serve(sealed: bool, unbounded: bool, max_frame_mib: int) -> None:
    """The child: one node; prints its gossip port, runs until stdin closes."""
    from gossip_registry.config.node import NodeConfig
    from gossip_registry.core.config import ProtocolConfig
    from gossip_registry.crypto.keyring import Keyring
    from gossip_registry.runtime.node import Node

    config = NodeConfig(
        "victim",
        keyring=Keyring([KEY]) if sealed else None,
        protocol=ProtocolConfig(max_stream_bytes=max_frame_mib * MIB),
    )
    async with Node(config) as node:
        if unbounded:
            node.transport.max_buffered = 1 << 62
        print(node.gossip_addr[1], flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)


def attack_frame_start(sealed: bool) -> bytes:
    """What the attacker's frame body starts with, the strongest it can do without the key.

    Sealed: a well-formed chunked header and a full first chunk's header (then noise).
    Plaintext: a well-formed envelope of a push-pull finish whose entry list (as many items
    as a peer accepts) is the filler, empty maps: nothing is refused before the budget, and
    built whole the frame would cost 64 bytes of dict per byte."""
    if not sealed:
        from gossip_registry.core.codec import MAX_SYNC_ITEMS
        from gossip_registry.core.messages import PROTOCOL_VERSION, MsgType

        entries = b"\xdd" + MAX_SYNC_ITEMS.to_bytes(4, "big")
        return bytes((0x92, PROTOCOL_VERSION, 0x93, MsgType.SYNC_FINISH, 0xC0)) + entries
    from gossip_registry.crypto.keyring import CHUNK_SIZE, FRAME_HEADER, FRAME_VERSION, SEAL_VERSION

    header = bytes((SEAL_VERSION, FRAME_VERSION)) + b"\x5a" * (FRAME_HEADER - 2)
    return header + CHUNK_SIZE.to_bytes(4, "big")


def attack_filler(sealed: bool) -> bytes:
    """The byte the rest of the attacker's frame repeats: noise after a sealed header,
    empty maps (one byte each, 64 bytes built) in a plaintext entry list."""
    return b"\xc1" if sealed else b"\x80"


async def flood(port: int, connections: int, frame: int, sealed: bool) -> int:
    """``connections`` connections at once, each sending one ``frame``-byte frame; sent bytes."""
    sent = 0
    start = attack_frame_start(sealed)
    filler = attack_filler(sealed)
    body = start + filler * (MIB - len(start))
    rest = filler * MIB

    async def one() -> None:
        nonlocal sent
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(frame.to_bytes(4, "big"))
                for i in range(frame // MIB):
                    await stream.send_all(rest if i else body)
                    sent += MIB
        except (OSError, trio.BrokenResourceError):
            pass  # dropped by the victim: what the budget is for

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(one)
    return sent


async def measure(args: argparse.Namespace, connections: int, *, unbounded: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--serve", "--max-frame-mib", str(args.max_frame_mib)]
    command += ["--sealed"] if args.sealed else []
    command += ["--unbounded"] if unbounded else []
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        samples = [rss_kib(child.pid) for _ in range(5)]
        idle = max(samples)
        peak = idle
        sent = 0
        with trio.fail_after(args.timeout):
            async with trio.open_nursery() as nursery:

                async def sample() -> None:
                    nonlocal peak
                    while True:
                        peak = max(peak, rss_kib(child.pid))
                        await trio.sleep(0.02)

                nursery.start_soon(sample)
                for _ in range(args.rounds):
                    sent += await flood(port, connections, args.frame_mib * MIB, args.sealed)
                peak = max(peak, rss_kib(child.pid))
                nursery.cancel_scope.cancel()
        return {
            "unbounded": unbounded,
            "connections": connections,
            "idle_rss_mib": round(idle / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1),
            "ratio": round(peak / idle, 2),
            "bytes_sent_mib": round(sent / MIB),
        }
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = [await measure(args, args.connections, unbounded=False)]
    if args.contrast:
        results.append(await measure(args, args.contrast_connections, unbounded=True))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=128)
    from gossip_registry.core.config import ProtocolConfig

    limit = ProtocolConfig().max_stream_bytes // MIB
    parser.add_argument("--frame-mib", type=int, default=limit, help="what the attacker announces")
    parser.add_argument(
        "--max-frame-mib", type=int, default=limit, help="the node's max_stream_bytes (and budget)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sealed", action="store_true")
    parser.add_argument("--contrast", action="store_true")
    parser.add_argument("--contrast-connections", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--json", type=Path, default=Path("bench-results/bench_inbound_memory.json")
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--unbounded", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, args.sealed, args.unbounded, args.max_frame_mib)
        return 0
    results = trio.run(main_async, args)
    mode = "sealed" if args.sealed else "plaintext"
    print(f"{'budget':>9} {'conns':>5} {'idle MiB':>9} {'peak MiB':>9} {'ratio':>6}  ({mode})")
    for r in results:
        budget = "lifted" if r["unbounded"] else "default"
        print(
            f"{budget:>9} {r['connections']:>5} {r['idle_rss_mib']:>9} "
            f"{r['peak_rss_mib']:>9} {r['ratio']:>6}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "mode": mode,
        "frame_mib": args.frame_mib,
        "max_frame_mib": args.max_frame_mib,
        "rounds": args.rounds,
        "runs": results,
    }
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
