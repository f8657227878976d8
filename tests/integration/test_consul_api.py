"""The real py-consul client against real agent processes: the Consul-compatible API end to end.

Two agents (``python -m gossip_registry agent``, started and killed by PID
through ``test_processes``' helpers) on loopback ports found free at run
time. py-consul is the published client (PyPI ``py-consul``, in the test
extra); every call below is one it makes against a real Consul agent.
Waits are bounded polls or the client's own blocking queries.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import consul

from tests.integration.test_processes import (
    CHANGE_TIMEOUT,
    Processes,
    processes,
    start_cluster,
    write_cluster,
)

__all__ = ["processes"]  # the fixture, shared with test_processes

BLOCK_WAIT = "30s"
"""The blocking queries' wait: far longer than a registration takes to gossip, so a query
that returns early was woken by the change."""


def service_ids(answer: tuple[str, list[dict[str, Any]]]) -> list[str]:
    return sorted(item["Service"]["ID"] for item in answer[1])


def two_agents(processes: Processes, tmp_path: Path) -> tuple[Any, Any]:
    """Agents n1 and n2 of cluster "test", all alive; a py-consul client for each."""
    cluster = write_cluster(tmp_path, ["n1", "n2"])
    start_cluster(processes, cluster)
    return tuple(consul.Consul(host="127.0.0.1", port=cluster.http[n]) for n in ("n1", "n2"))


def test_py_consul_registers_passes_a_ttl_check_and_a_blocking_query_wakes_on_another_node(
    processes: Processes, tmp_path: Path
) -> None:
    c1, c2 = two_agents(processes, tmp_path)
    assert c1.agent.self()["Config"]["Datacenter"] == "test"

    check = consul.Check.ttl("30s")
    assert c1.agent.service.register("web", service_id="web-1", port=8080, tags=["v1"], check=check)
    assert service_ids(c1.health.service("web", passing=True)) == []  # checks start critical
    assert c1.agent.check.ttl_pass("service:web-1", notes="ready")
    index, _ = c1.health.service("web", passing=True)
    assert service_ids(c1.health.service("web", passing=True)) == ["web-1"]

    returns: list[float] = []

    def wait_for_web_2() -> tuple[float, list[str]]:
        """Blocking queries on n1, as a watcher makes them, until web-2 passes there."""
        last = index
        deadline = time.monotonic() + 2 * CHANGE_TIMEOUT
        while time.monotonic() < deadline:
            last, nodes = c1.health.service("web", passing=True, index=last, wait=BLOCK_WAIT)
            returns.append(time.monotonic())
            ids = sorted(item["Service"]["ID"] for item in nodes)
            if "web-2" in ids:
                return time.monotonic(), ids
        raise AssertionError("web-2 never passed on n1")

    with ThreadPoolExecutor(1) as pool:
        watcher = pool.submit(wait_for_web_2)
        time.sleep(0.5)  # let the first blocking query reach n1 (correctness holds without)
        started = time.monotonic()
        assert c2.agent.service.register("web", service_id="web-2", port=8081, check=check)
        assert c2.agent.check.ttl_pass("service:web-2")
        seen_at, ids = watcher.result(timeout=3 * CHANGE_TIMEOUT)
    assert ids == ["web-1", "web-2"]
    assert returns[0] >= started  # the first query was held until the registration...
    assert seen_at - started < CHANGE_TIMEOUT  # ...and woken by it, not by the 30 s wait

    _, services = c1.catalog.services()
    assert services["web"] == ["v1"]
    nodes = {item["Node"]["Node"]: item["Node"]["ID"] for item in c1.health.service("web")[1]}
    assert sorted(nodes) == ["n1", "n2"]
    assert len(set(nodes.values())) == 2


def test_py_consul_maintenance_and_deregister_reach_every_node(
    processes: Processes, tmp_path: Path
) -> None:
    c1, c2 = two_agents(processes, tmp_path)
    assert c2.agent.service.register("api", service_id="api-1", address="127.0.0.1", port=9000)
    assert c2.agent.service.register("api", service_id="api-2", address="127.0.0.1", port=9001)

    def passing_on_n1() -> list[str]:
        return service_ids(c1.health.service("api", passing=True))

    processes.eventually(lambda: passing_on_n1() == ["api-1", "api-2"], "both pass", CHANGE_TIMEOUT)

    assert c2.agent.service.maintenance("api-1", True, reason="upgrade")
    processes.eventually(lambda: passing_on_n1() == ["api-2"], "api-1 out", CHANGE_TIMEOUT)
    _, checks = c1.health.checks("api")
    assert {(c["ServiceID"], c["Status"], c["Output"]) for c in checks} == {
        ("api-1", "critical", "upgrade")
    }
    assert c2.agent.service.maintenance("api-1", False)
    processes.eventually(lambda: len(passing_on_n1()) == 2, "api-1 back", CHANGE_TIMEOUT)

    assert c2.agent.maintenance(True, reason="reboot")
    processes.eventually(lambda: passing_on_n1() == [], "node n2 out", CHANGE_TIMEOUT)
    assert c2.agent.maintenance(False)
    processes.eventually(lambda: len(passing_on_n1()) == 2, "node n2 back", CHANGE_TIMEOUT)

    assert c2.agent.service.deregister("api-1")
    processes.eventually(
        lambda: service_ids(c1.health.service("api")) == ["api-2"], "api-1 gone", CHANGE_TIMEOUT
    )
    assert c2.agent.service.deregister("api-2")
    processes.eventually(lambda: "api" not in c1.catalog.services()[1], "api gone", CHANGE_TIMEOUT)
