"""An echo service that makes itself discoverable by embedding a registry node.

The process runs two things: a tiny HTTP echo server (standard library
only, on a free port) and a ``ThreadedNode`` that joins the cluster and
registers the server as an instance of service ``echo``. Any node of the
cluster can then find it (``gossip-registry services echo``), and so can
``examples/caller.py``.

The instance belongs to this process's node, which is the point: if the
process dies, the cluster declares its node dead and drops the instance
everywhere, without anyone deregistering it. On SIGTERM or Ctrl-C it
deregisters, leaves gracefully and exits 0.

    python examples/echo_service.py --join 127.0.0.1:7946

Endpoints: ``POST /`` echoes the body; ``GET /?msg=hi`` echoes ``hi``; both
answer JSON ``{"instance": ..., "echo": ...}``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import parse_qs, urlsplit

from gossip_registry.config.cluster_file import PROFILES
from gossip_registry.config.node import NodeConfig
from gossip_registry.config.values import parse_address
from gossip_registry.runtime.threaded import ThreadedNode

MAX_BODY = 64 * 1024
"""Largest body echoed; an example server still should not buffer whatever it is sent."""


def make_handler(instance_id: str) -> type[BaseHTTPRequestHandler]:
    class EchoHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            self._reply(200, {"instance": instance_id, "echo": query.get("msg", [""])[0]})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._reply(413, {"error": f"body larger than {MAX_BODY} bytes"})
                return
            body = self.rfile.read(length).decode(errors="replace")
            self._reply(200, {"instance": instance_id, "echo": body})

        def _reply(self, status: int, payload: dict[str, str]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request would drown the example's own output

    return EchoHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--join",
        action="append",
        metavar="HOST:PORT",
        help="gossip address of a cluster node (repeatable; default 127.0.0.1:7946)",
    )
    parser.add_argument("--service", default="echo", help="service name to register under")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve and advertise")
    parser.add_argument("--port", type=int, default=0, help="echo server port (0: a free one)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="lan")
    args = parser.parse_args(argv)
    seeds = [parse_address(s) for s in args.join or ["127.0.0.1:7946"]]

    instance_id = f"{args.service}-{uuid.uuid4().hex[:6]}"
    server = ThreadingHTTPServer((args.host, args.port), make_handler(instance_id))
    port = server.server_address[1]
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    config = NodeConfig(
        name=instance_id,  # one node per process: its name may as well be the instance's
        bind=(args.host, 0),
        protocol=PROFILES[args.profile](),
    )
    with ThreadedNode(config) as node:
        if node.join(seeds) == 0:
            print(f"no seed answered ({args.join or '127.0.0.1:7946'}): is the cluster up?")
            server.server_close()
            return 1
        serving = threading.Thread(target=server.serve_forever, name="echo", daemon=True)
        serving.start()
        node.register(args.service, instance_id=instance_id, address=args.host, port=port)
        print(f"{instance_id} serving on http://{args.host}:{port}/ as service {args.service}")
        sys.stdout.flush()
        stop.wait()
        print(f"{instance_id} stopping: deregister, leave")
        node.deregister(instance_id)
        node.leave()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
