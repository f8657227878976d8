"""``GET /metrics`` and ``GET /v1/events`` of real nodes on loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from importlib import metadata

import dns.message
import dns.query
import h11
import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from gossip_registry.api.metrics import node_registry
from gossip_registry.core.codec import encode_keyring
from gossip_registry.core.messages import KeyringRequest, MemberState
from gossip_registry.registry.entry import Health
from gossip_registry.registry.health import CheckSpec
from gossip_registry.runtime.node import Node
from tests.integration import fast_config, start_node, wait_until

HTTP = ("127.0.0.1", 0)
VERSION = metadata.version("gossip-registry")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def url(node: Node) -> str:
    assert node.http_addr is not None
    return f"http://127.0.0.1:{node.http_addr[1]}"


async def scrape(node: Node) -> Samples:
    """Every sample of the node's /metrics, keyed by (name, labels), parsed as Prometheus would."""
    async with httpx.AsyncClient(base_url=url(node), trust_env=False) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples[(f"gossip_registry_{metric}", frozenset(labels.items()))]


def node_info(samples: Samples) -> dict[str, str]:
    [(labels, one)] = [(dict(k[1]), v) for k, v in samples.items() if k[0].endswith("node_info")]
    assert one == 1
    return labels


async def test_metrics_of_a_node_pair_exist_and_counters_move_with_registrations_and_a_death() -> (
    None
):
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            a, _ = await start_node(nursery, fast_config("a", http=HTTP))
            seeds = (a.advertise_addr,)
            b, crash_b = await start_node(nursery, fast_config("b", seeds=seeds))
            await wait_until(lambda: len(a.members()) == 2)
            before = await scrape(a)
            assert node_info(before) == {"name": "a", "cluster": "default", "version": VERSION}
            assert value(before, "members", state="alive") == 2
            assert value(before, "members", state="dead") == 0
            assert value(before, "registry_entries") == 0
            for name in ("broadcast_queue_depth", "local_health_score", "registry_tombstones"):
                assert value(before, name) >= 0
            assert value(before, "dropped_input_total", reason="malformed_packet") == 0
            for reason in ("auth_failed", "member_limit", "entry_limit", "clock_skew"):
                assert value(before, "dropped_input_total", reason=reason) == 0
            assert value(before, "messages_total", direction="in", channel="udp", type="entry") == 0

            for i in range(3):
                await b.register("web", instance_id=f"web-{i}", port=8000 + i)
            await wait_until(lambda: len(a.discover("web")) == 3)
            crash_b.cancel()
            await wait_until(lambda: a.members()[1].state is MemberState.DEAD)
            after = await scrape(a)

            assert value(after, "members", state="dead") == 1
            assert value(after, "members_declared_dead_total") == 1
            assert value(after, "entries_fenced_total") == 3
            assert value(after, "registry_entries") == 0
            udp_entry = {"direction": "in", "channel": "udp", "type": "entry"}
            entries_in = value(after, "messages_total", **udp_entry)
            assert entries_in >= 3
            entry_bytes = value(after, "message_bytes_total", **udp_entry)
            assert 40 * entries_in < entry_bytes < 120 * entries_in, "about 50 bytes per entry"
            for name in ("probes_total", "probe_failures_total", "suspicions_raised_total"):
                assert value(after, name) > value(before, name), name
            assert value(after, "tcp_fallback_probes_total") >= 1
            assert value(after, "anti_entropy_answered_total") >= 1
            out_pings = value(after, "messages_total", direction="out", channel="udp", type="ping")
            assert out_pings >= value(after, "probes_total")
            nursery.cancel_scope.cancel()


async def test_a_malformed_datagram_is_counted_as_dropped_and_as_invalid_traffic() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("solo", http=HTTP))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"\xc1 not msgpack", node.gossip_addr)
            await wait_until(lambda: node.protocol.stats["malformed_packets"] == 1)
            samples = await scrape(node)
            assert value(samples, "dropped_input_total", reason="malformed_packet") == 1
            invalid = {"direction": "in", "channel": "udp", "type": "invalid"}
            assert value(samples, "messages_total", **invalid) == 1
            assert value(samples, "message_bytes_total", **invalid) == len(b"\xc1 not msgpack")
            nursery.cancel_scope.cancel()


async def test_a_refused_keyring_frame_is_the_nodes_count_not_the_protocols() -> None:
    # Key management is the node's: it counts its own refusals and never writes
    # into the core's counters (issue 11).
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("solo", http=HTTP))
            frame = encode_keyring(KeyringRequest("list", b""))
            assert await node.transport.request(node.gossip_addr, frame) is None
            assert node.status()["stats"]["keyring_refused"] == 1
            assert "keyring_refused" not in node.protocol.stats
            samples = await scrape(node)
            assert value(samples, "dropped_input_total", reason="keyring_refused") == 1
            nursery.cancel_scope.cancel()


async def test_two_nodes_in_one_process_keep_separate_registries() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            a, _ = await start_node(nursery, fast_config("a", http=HTTP))
            b, _ = await start_node(nursery, fast_config("b", http=HTTP))
            await a.register("only-on-a", port=1)
            first, second = await scrape(a), await scrape(b)
            assert value(first, "registry_entries") == 1
            assert value(second, "registry_entries") == 0
            assert node_info(second)["name"] == "b"
            nursery.cancel_scope.cancel()


async def test_openmetrics_is_served_when_the_scraper_asks_for_it() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("om", http=HTTP))
            accept = "application/openmetrics-text; version=1.0.0"
            async with httpx.AsyncClient(base_url=url(node), trust_env=False) as client:
                response = await client.get("/metrics", headers={"Accept": accept})
            assert response.headers["content-type"].startswith("application/openmetrics-text")
            assert response.text.endswith("# EOF\n")
            assert "gossip_registry_probes_total" in response.text
            nursery.cancel_scope.cancel()


def test_a_registry_has_no_samples_before_the_node_runs() -> None:
    from prometheus_client import generate_latest

    assert generate_latest(node_registry(Node(fast_config("idle")))) == b""


# --- The event stream ---------------------------------------------------------------


class EventReader:
    """A bare HTTP/1.1 client of ``/v1/events`` (h11 over a trio stream).

    Not httpx: its streaming responses are chains of async generators that
    leak when a stream is abandoned mid-way, which is what these tests do.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        self.buffer = b""

    async def request(self, target: str) -> h11.Response:
        request = h11.Request(method="GET", target=target, headers=[("Host", "node")])
        await self.stream.send_all(self.conn.send(request) + self.conn.send(h11.EndOfMessage()))
        response = await self._event()
        assert isinstance(response, h11.Response)
        return response

    async def _event(self) -> object:
        while (event := self.conn.next_event()) is h11.NEED_DATA:
            self.conn.receive_data(await self.stream.receive_some(65536))
        return event

    async def line(self) -> dict[str, object]:
        """The next NDJSON line, decoded."""
        while b"\n" not in self.buffer:
            event = await self._event()
            assert isinstance(event, h11.Data), f"stream ended: {event}"
            self.buffer += event.data
        line, self.buffer = self.buffer.split(b"\n", 1)
        value = json.loads(line)
        assert isinstance(value, dict)
        return value


@asynccontextmanager
async def event_stream(node: Node, target: str = "/v1/events") -> AsyncIterator[EventReader]:
    """A subscribed stream: its "subscribed" line has been read, so every later event arrives."""
    assert node.http_addr is not None
    async with await trio.open_tcp_stream("127.0.0.1", node.http_addr[1]) as stream:
        reader = EventReader(stream)
        response = await reader.request(target)
        assert response.status_code == 200
        assert (b"content-type", b"application/x-ndjson") in response.headers.raw_items()
        hello = await reader.line()
        assert (hello["kind"], hello["event"]) == ("stream", "subscribed")
        yield reader


async def test_a_registration_on_another_node_reaches_the_event_stream() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            a, _ = await start_node(nursery, fast_config("a", http=HTTP))
            b, _ = await start_node(nursery, fast_config("b", seeds=(a.advertise_addr,)))
            await wait_until(lambda: len(a.members()) == 2)
            async with event_stream(a, "/v1/events?kind=entry") as events:
                await b.register("web", instance_id="web-1", port=8080)
                event = await events.line()
            assert {k: event[k] for k in ("kind", "event", "service", "id", "node", "port")} == {
                "kind": "entry",
                "event": "registered",
                "service": "web",
                "id": "web-1",
                "node": "b",
                "port": 8080,
            }
            assert isinstance(event["time"], float)
            nursery.cancel_scope.cancel()


async def test_member_events_arrive_in_order_as_a_peer_joins_and_dies() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            a, _ = await start_node(nursery, fast_config("a", http=HTTP))
            async with event_stream(a, "/v1/events?kind=member") as events:
                b, crash_b = await start_node(nursery, fast_config("b", seeds=(a.advertise_addr,)))
                joined = await events.line()
                assert (joined["event"], joined["name"], joined["port"]) == (
                    "joined",
                    "b",
                    b.advertise_addr[1],
                )
                crash_b.cancel()
                assert [(await events.line())["event"] for _ in range(2)] == ["suspect", "dead"]
            nursery.cancel_scope.cancel()


async def test_a_client_that_disconnects_is_unsubscribed() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("solo", http=HTTP))
            async with event_stream(node):
                assert node.events.subscribers == 1
            await wait_until(lambda: node.events.subscribers == 0, timeout=5)
            nursery.cancel_scope.cancel()


async def test_the_response_completes_when_the_event_bus_closes() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node, crash = await start_node(nursery, fast_config("solo", http=HTTP))
            async with event_stream(node) as events:
                node.events.close()
                end = await events._event()
                assert isinstance(end, h11.EndOfMessage)
            crash.cancel()


async def test_an_unknown_kind_or_parameter_is_a_400_naming_it() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("solo", http=HTTP))
            async with httpx.AsyncClient(base_url=url(node), trust_env=False) as client:
                bad_kind = await client.get("/v1/events", params={"kind": "member,nodes"})
                bad_param = await client.get("/v1/events", params={"since": "1"})
            assert bad_kind.status_code == 400
            assert bad_kind.json()["error"].startswith("kind: unknown nodes")
            assert bad_param.status_code == 400
            assert bad_param.json()["error"].startswith("since: unknown query parameter")
            nursery.cancel_scope.cancel()


async def test_checks_by_status_and_blocking_waiters_are_gauges_that_follow_the_node() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            a, _ = await start_node(nursery, fast_config("a", http=HTTP, dns=HTTP))
            await a.register("job", instance_id="job-1", port=1, checks=[CheckSpec(ttl=30.0)])
            before = await scrape(a)
            assert value(before, "checks", status="critical") == 1
            assert value(before, "checks", status="passing") == 0
            assert value(before, "blocking_queries_waiting") == 0
            assert value(before, "self_preservation_active") == 0
            assert value(before, "stale_entries") == 0
            assert a.dns_addr is not None
            query = dns.message.make_query("job.service.registry.", "A")
            await trio.to_thread.run_sync(
                partial(dns.query.udp, query, a.dns_addr[0], port=a.dns_addr[1], timeout=2)
            )
            assert value(await scrape(a), "dns_total", outcome="queries") == 1
            # The interfaces' limits are counted too (issue 10): a rate-limited DNS source, an
            # HTTP upload abandoned mid-body.
            a.dns_stats["rate_limited"] += 2
            a.http_stats["client_disconnects"] = 3
            scraped = await scrape(a)
            assert value(scraped, "dns_total", outcome="rate_limited") == 2
            assert value(scraped, "http_dropped_total", reason="client_disconnects") == 3

            index = a.index("job")
            nursery.start_soon(a.wait_for_change, "job", index, 10.0)
            await wait_until(lambda: a.status()["waiters"] == 1)
            await a.update_ttl("service:job-1", Health.PASSING)
            during = await scrape(a)
            assert value(during, "checks", status="passing") == 1
            assert value(during, "checks", status="critical") == 0
            await wait_until(lambda: a.status()["waiters"] == 0)
            assert value(await scrape(a), "blocking_queries_waiting") == 0
            nursery.cancel_scope.cancel()
