#!/usr/bin/env python3
"""Closed-loop load generator for bench_discovery.py, run as a process of its own.

Usage:
    .venv/bin/python scripts/loadgen.py http HOST:PORT --target PATH [--target PATH ...]
        [--concurrency 16] [--duration 3] [--warmup 0.5]
    .venv/bin/python scripts/loadgen.py dns HOST:PORT --target NAME [--target NAME ...]
        [--qtype A] [--payload 4096] [--concurrency 16] [--duration 3] [--warmup 0.5]

``--concurrency`` requests are in flight: each answer is followed by the
next request (a closed loop: the figure is the server's throughput at that
many requests in flight), picking a random target each time. Requests that
finish during the warm-up are not counted. Prints one JSON object:
``{"requests", "errors", "seconds", "per_s", "p50_us", "p99_us"}``; errors
are non-200 statuses, DNS answers with another id, a non-zero rcode, the TC
bit or a short answer count, and DNS timeouts (then the query is sent
again).

HTTP is plain HTTP/1.1 with keep-alive over trio sockets (one connection
per worker): httpx costs about a millisecond of CPU per request, which would
measure the client. DNS queries are built once with dnspython, then sent
from one blocking UDP socket with a fresh id each, ``--concurrency`` of
them in flight, matched to answers by id.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import time

import dns.message
import trio

DNS_TIMEOUT = 1.0
"""Seconds to wait for a DNS answer before counting an error and asking again."""
MAX_HEADER_BYTES = 64 * 1024


class Tally:
    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.end = end
        self.latencies: list[float] = []
        self.errors = 0

    def record(self, began: float, ok: bool) -> None:
        done = time.perf_counter()
        if began >= self.start and done <= self.end:
            self.latencies.append(done - began)
            self.errors += not ok

    def report(self) -> dict[str, float | int]:
        lat = sorted(self.latencies)
        seconds = self.end - self.start

        def rank(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6 if lat else float("nan")

        return {
            "requests": len(lat),
            "errors": self.errors,
            "seconds": seconds,
            "per_s": len(lat) / seconds,
            "p50_us": rank(0.50),
            "p99_us": rank(0.99),
        }


async def http_worker(
    host: str, port: int, paths: list[str], tally: Tally, rng: random.Random
) -> None:
    """One keep-alive connection at a time, reopened when the server ends it.

    Servers end keep-alive connections on purpose (hypercorn after
    ``keep_alive_max_requests``, 1,000 by default; nginx likewise), closing
    the socket before the next request's answer: that request is sent again
    on a new connection, as HTTP clients do for idempotent requests. The
    reconnection is inside the measured time, so its cost counts.
    """
    while time.perf_counter() < tally.end:
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await _keep_alive(stream, host, paths, tally, rng)


async def _keep_alive(
    stream: trio.SocketStream, host: str, paths: list[str], tally: Tally, rng: random.Random
) -> None:
    """Requests on ``stream`` until the run ends or the server closes it between answers."""
    buffer = b""
    while time.perf_counter() < tally.end:
        began = time.perf_counter()
        path = rng.choice(paths)
        try:
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        except trio.BrokenResourceError:
            return
        while b"\r\n\r\n" not in buffer:
            chunk = await stream.receive_some(65536)
            if not chunk and not buffer:
                return  # closed between answers: the caller reconnects
            if not chunk or len(buffer) > MAX_HEADER_BYTES:
                raise RuntimeError("connection closed or headers too long")
            buffer += chunk
        head, _, body = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise RuntimeError("connection closed mid-body")
            body += chunk
        buffer = body[length:]
        tally.record(began, head[9:12] == b"200")


def dns_queries(names: list[str], qtype: str, payload: int) -> list[bytes]:
    return [
        dns.message.make_query(
            name, qtype, use_edns=0 if payload else -1, payload=payload
        ).to_wire()[2:]  # the id is prepended per query
        for name in names
    ]


def dns_load(
    host: str,
    port: int,
    queries: list[bytes],
    tally: Tally,
    rng: random.Random,
    concurrency: int,
    minimum: int,
) -> None:
    """Keep ``concurrency`` queries in flight on one blocking UDP socket, matched by id.

    Plain blocking calls, not trio: a send and a receive per query is all
    this process should spend, or the figure would measure the client.
    """
    pending: dict[int, float] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        sock.settimeout(DNS_TIMEOUT)

        def send() -> None:
            query_id = rng.getrandbits(16)
            while query_id in pending:
                query_id = rng.getrandbits(16)
            pending[query_id] = time.perf_counter()
            sock.send(struct.pack("!H", query_id) + rng.choice(queries))

        def expire() -> None:
            """Count queries unanswered for DNS_TIMEOUT as errors, and replace them."""
            now = time.perf_counter()
            for query_id, began in list(pending.items()):
                if now - began > DNS_TIMEOUT:
                    del pending[query_id]
                    tally.record(began, False)
                    send()

        for _ in range(concurrency):
            send()
        answered = 0
        while time.perf_counter() < tally.end:
            try:
                reply = sock.recv(65535)
            except TimeoutError:
                expire()
                continue
            began = (
                pending.pop(struct.unpack_from("!H", reply)[0], None) if len(reply) >= 12 else None
            )
            if began is None:
                continue  # a late answer to a query already counted as lost
            flags, _, ancount = struct.unpack_from("!HHH", reply, 2)
            tally.record(began, flags & 0x020F == 0 and ancount >= minimum)  # no TC, rcode 0
            send()
            answered += 1
            if answered % 1000 == 0:
                expire()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("kind", choices=["http", "dns"])
    parser.add_argument("address", metavar="HOST:PORT")
    parser.add_argument("--target", action="append", required=True, help="Path or DNS name.")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=3.0, help="Measured seconds.")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--qtype", default="A")
    parser.add_argument("--payload", type=int, default=4096, help="EDNS0 payload; 0: no EDNS.")
    parser.add_argument("--min-answers", type=int, default=1, help="DNS: fewer is an error.")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


async def generate(args: argparse.Namespace) -> dict[str, float | int]:
    host, _, port_text = args.address.rpartition(":")
    port = int(port_text)
    start = time.perf_counter() + args.warmup
    tally = Tally(start, start + args.duration)
    if args.kind == "dns":
        queries = dns_queries(args.target, args.qtype, args.payload)
        rng = random.Random(args.seed)
        dns_load(host, port, queries, tally, rng, args.concurrency, args.min_answers)
        return tally.report()
    async with trio.open_nursery() as nursery:
        for i in range(args.concurrency):
            rng = random.Random(args.seed * 1000 + i)
            nursery.start_soon(http_worker, host, port, args.target, tally, rng)
    return tally.report()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(json.dumps(trio.run(generate, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
