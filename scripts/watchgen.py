#!/usr/bin/env python3
"""Hold many blocking queries on one agent, for bench_watches_http.py, as a process of its own.

Usage:
    .venv/bin/python scripts/watchgen.py HOST:PORT --service web --count 10000
        [--other-service other --other-count 100] [--wait 60s] [--window 64]
        [--hold 1.0] [--deadline 180] --out FILE

Reads each service's current ``X-Registry-Index`` (one plain GET), then
opens ``--count`` connections, each sending
``GET /v1/services/SERVICE?index=N&wait=WAIT`` at that index, and
``--other-count`` more on ``--other-service`` the same way. Each connection
carries one request and is closed only when the process ends. When every
watcher of ``--service`` has its answer, the process waits ``--hold``
seconds more (an answer on the other service then would be a wrong
wake-up), writes the result to ``--out`` as JSON and exits; after
``--deadline`` seconds it does so anyway, with what it has.

JSON: ``arrivals`` (``time.monotonic()`` when each answer on ``--service``
was complete: CLOCK_MONOTONIC, one clock for every process on the machine,
so the driver can subtract the moment it registered), ``indexes`` and
``statuses`` (answers counted by ``X-Registry-Index`` and by HTTP status),
``other_answers`` (answers on the other service; should be 0),
``waiters_at_end`` (the agent's ``/v1/status`` ``waiters`` at the end of
the hold: the other service's watchers, if none was woken), ``opened``,
``errors`` (by exception type: refused, reset, timed out), ``open_files``
(the soft RLIMIT_NOFILE after raising it to the hard limit).

Raw HTTP/1.1 over trio sockets (gossip_registry.chaos.http11), not httpx:
at 10,000 answers arriving together, httpx's ~1 ms of CPU each would put
seconds of this process's own work into the figures. Connections are
opened at the pace the agent parks them (``Ramp``, ``--window``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip_registry.chaos.http11 import HttpClient, HttpConnection
from gossip_registry.runtime.fdlimit import raise_open_files_limit

INDEX_HEADER = "x-registry-index"
CONNECT_TIMEOUT = 10.0
"""Seconds for one connection attempt (SYN retransmissions included)."""
STATUS_TIMEOUT = 10.0
"""Seconds for one /v1/status answer while pacing (the agent is busy parking)."""
PACE_POLL = 0.005
"""Seconds between /v1/status reads while connections are being opened."""
SPARE_FILES = 64
"""Descriptors this process needs besides its watchers' connections."""


class Watchers:
    """What the watchers saw; ``finished`` is set once every one on the watched service ended."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.opened = 0
        self.arrivals: list[float] = []
        self.indexes: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.other_answers = 0
        self.errors: Counter[str] = Counter()
        self.failed = 0
        self.unopened = 0
        """Connections that could not be opened (refused, timed out)."""
        self.finished = trio.Event()
        self.waiters_at_end: int | None = None
        """The agent's blocking queries in progress after the hold (the other service's)."""

    def answered(self, status: int, headers: dict[str, str]) -> None:
        self.arrivals.append(time.monotonic())
        self.statuses[status] += 1
        self.indexes[headers.get(INDEX_HEADER, "none")] += 1
        self._check_finished()

    def other_answered(self, status: int, headers: dict[str, str]) -> None:
        self.other_answers += 1

    def failure(self, exc: Exception, watched: bool) -> None:
        self.errors[type(exc).__name__] += 1
        if watched:
            self.failed += 1
            self._check_finished()

    def _check_finished(self) -> None:
        if len(self.arrivals) + self.failed == self.count:
            self.finished.set()

    def report(self, open_files: int) -> dict[str, Any]:
        return {
            "count": self.count,
            "opened": self.opened,
            "arrivals": self.arrivals,
            "indexes": dict(self.indexes),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "other_answers": self.other_answers,
            "waiters_at_end": self.waiters_at_end,
            "errors": dict(self.errors),
            "open_files": open_files,
        }


async def get(host: str, port: int, path: str) -> tuple[dict[str, str], Any]:
    """(headers, JSON answer) of a plain GET on a connection of its own; exits on a non-200."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        connection = HttpConnection(stream, host, port)
        await connection.send("GET", path)
        status, headers = await connection.head()
        body = await connection.body()
    if status != 200:
        raise SystemExit(f"GET {path}: {status} {body[:200]!r}")
    return headers, json.loads(body)


async def current_index(host: str, port: int, service: str) -> int:
    """The service's index now, from a plain (non-blocking) read."""
    headers, _ = await get(host, port, f"/v1/services/{service}")
    return int(headers[INDEX_HEADER])


class Ramp:
    """Opens connections only while fewer than ``window`` of them are not yet parked.

    Parked is as the agent counts it (``waiters`` in ``/v1/status``, polled
    on one kept connection). Opening all at once overflows the agent's
    listen backlog (hypercorn's 100): the kernel drops the SYNs and the
    clients retry 1, 3, 7... s later: with 100 attempts in flight, 8,256 of
    10,100 were parked after 40 s, a measure of TCP's back-off rather than
    of the agent.
    """

    def __init__(self, window: int, baseline: int) -> None:
        self.slots = trio.Semaphore(window)
        self.baseline = baseline
        """The agent's waiters before the first connection: someone else's."""

    async def pace(self, host: str, port: int, watchers: Watchers, total: int) -> None:
        """Release a slot per newly parked watcher until every connection has been opened."""
        async with HttpClient(STATUS_TIMEOUT) as http:
            seen = 0
            while watchers.opened + watchers.unopened < total:
                answer = await http.request(host, port, "GET", "/v1/status")
                if answer is not None and answer[0] == 200:
                    parked = answer[1]["waiters"] - self.baseline
                    for _ in range(max(0, parked - seen)):
                        self.slots.release()
                    seen = max(seen, parked)
                await trio.sleep(PACE_POLL)


async def watch(
    host: str, port: int, path: str, ramp: Ramp, watchers: Watchers, watched: bool
) -> None:
    """One connection, one blocking query; the connection stays open until cancelled."""
    on_answer = watchers.answered if watched else watchers.other_answered
    await ramp.slots.acquire()
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        watchers.unopened += 1
        ramp.slots.release()
        watchers.failure(exc, watched)
        return
    try:
        async with stream:
            watchers.opened += 1
            connection = HttpConnection(stream, host, port)
            await connection.send("GET", path)
            status, headers = await connection.head()
            on_answer(status, headers)
            await trio.sleep_forever()
    except (OSError, trio.BrokenResourceError, ValueError) as exc:
        watchers.failure(exc, watched)


async def run(args: argparse.Namespace, open_files: int) -> dict[str, Any]:
    """Park every watcher, wait for the watched service's answers and ``--hold`` more."""
    host, _, port_text = args.address.rpartition(":")
    port = int(port_text)
    watchers = Watchers(args.count)
    with trio.move_on_after(args.deadline):
        paths = [(args.service, args.count, True), (args.other_service, args.other_count, False)]
        _, status = await get(host, port, "/v1/status")
        ramp = Ramp(args.window, status["waiters"])
        async with trio.open_nursery() as nursery:
            for service, count, watched in paths:
                if count == 0:
                    continue
                index = await current_index(host, port, service)
                path = f"/v1/services/{service}?index={index}&wait={args.wait}"
                for _ in range(count):
                    nursery.start_soon(watch, host, port, path, ramp, watchers, watched)
            nursery.start_soon(ramp.pace, host, port, watchers, args.count + args.other_count)
            await watchers.finished.wait()
            await trio.sleep(args.hold)
            _, status = await get(host, port, "/v1/status")
            watchers.waiters_at_end = status["waiters"]
            nursery.cancel_scope.cancel()
    return watchers.report(open_files)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("address", metavar="HOST:PORT")
    parser.add_argument("--service", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--other-service", default="other")
    parser.add_argument("--other-count", type=int, default=0)
    parser.add_argument("--wait", default="60s", help="the blocking queries' wait parameter")
    parser.add_argument("--window", type=int, default=64, help="connections opened, not parked")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds after the last answer")
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds in all, at most")
    parser.add_argument("--out", type=Path, required=True, help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.count < 1 or args.other_count < 0 or args.window < 1:
        parser.error("need --count >= 1, --other-count >= 0, --window >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _, open_files = raise_open_files_limit()
    needed = args.count + args.other_count + SPARE_FILES
    if open_files < needed:
        print(
            f"watchgen: {needed} open files needed, the limit is {open_files} "
            "(RLIMIT_NOFILE, hard): ask for fewer watchers",
            file=sys.stderr,
        )
        return 2
    report = trio.run(run, args, open_files)
    partial = args.out.with_suffix(".partial")
    partial.write_text(json.dumps(report))
    partial.replace(args.out)  # whole or absent, never half-written, for the driver
    answered = len(report["arrivals"])
    print(f"watchgen: {report['opened']} opened, {answered}/{args.count} answered", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
