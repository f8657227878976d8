"""Debian's real Prometheus discovers and scrapes what the registry holds (HTTP SD).

An agent process, a test service serving ``/metrics`` (a small Python HTTP
server process) registered on it, and ``prometheus`` started by the test
with its config and TSDB in ``tmp_path``, listening on a free loopback
port, with ``http_sd_configs`` pointed at the agent's
``/v1/prometheus/targets``. Prometheus' own ``/api/v1/targets`` must show
the service's target up (scraped) with our labels, and drop it once the
instance is deregistered. Every process is stopped by its PID.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

from gossip_registry.chaos.processes import spawn, stop_processes
from tests.integration.test_processes import (
    START_TIMEOUT,
    Processes,
    api,
    processes,
    start_cluster,
    write_cluster,
)
from tests.support.processes import free_ports
from tests.support.programs import require_program

__all__ = ["processes"]  # the fixture, shared with test_processes

SD_TIMEOUT = 40.0
"""Seconds for Prometheus to start, refresh its discovery (every 1 s) and scrape (every 1 s)."""
METRICS_SERVER = """
import http.server, sys
class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"demo_requests_total 7\\n"
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Metrics).serve_forever()
"""


def targets(port: int) -> list[dict[str, Any]]:
    """Prometheus' active targets ([] while it is not answering yet)."""
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/targets", timeout=2.0, trust_env=False
        )
        active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
    except (httpx.HTTPError, ValueError, KeyError):
        return []
    return active


def test_prometheus_discovers_scrapes_and_drops_a_registered_service(
    processes: Processes, tmp_path: Path
) -> None:
    binary = require_program("prometheus")
    prom_port = free_ports(1)[0]
    cluster = write_cluster(tmp_path / "cluster", ["n1"])
    start_cluster(processes, cluster)
    http = cluster.http["n1"]
    metrics_port = free_ports(1)[0]
    processes.start("metrics", "-c", METRICS_SERVER, str(metrics_port))
    instance = {"name": "demo", "id": "demo-1", "address": "127.0.0.1", "port": metrics_port}
    assert api(http, "/v1/services", "PUT", json={**instance, "tags": ["prod"]}) is not None

    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: registry\n    http_sd_configs:\n"
        f"      - url: http://127.0.0.1:{http}/v1/prometheus/targets\n"
        "        refresh_interval: 1s\n"
    )
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]
    server: list[subprocess.Popen[bytes]] = []
    try:
        server.append(spawn(argv, processes.logs / "prometheus.log", tmp_path))

        def demo_up() -> bool:
            return any(
                t["discoveredLabels"].get("__meta_registry_service_id") == "demo-1"
                and t["health"] == "up"
                for t in targets(prom_port)
            )

        processes.eventually(demo_up, "Prometheus scrapes demo-1", START_TIMEOUT + SD_TIMEOUT)
        (target,) = targets(prom_port)
        assert target["scrapeUrl"] == f"http://127.0.0.1:{metrics_port}/metrics"
        assert target["discoveredLabels"]["__meta_registry_tags"] == ",prod,"
        assert target["discoveredLabels"]["__meta_registry_node"] == "n1"

        assert api(http, "/v1/services/demo-1", "DELETE") is not None
        processes.eventually(lambda: targets(prom_port) == [], "demo-1 dropped", SD_TIMEOUT)
    finally:  # the agent and the metrics server are stopped by the fixture, by PID too
        stop_processes(server, grace=5.0)
