"""Container health check: exit 0 if this container's agent answers GET /healthz, else 1.

Docker's HEALTHCHECK runs it inside the container, so it asks the port of
GOSSIP_REGISTRY_HTTP_BIND (the entry point's default: 0.0.0.0:8500) on loopback when
the agent listens on every interface. Over HTTPS when the agent serves TLS
(GOSSIP_REGISTRY_TLS_CERT): the certificate names the service, not loopback, so it is
not verified here; this checks liveness, not identity. Standard library only, so a
fresh interpreter starts it quickly.

/healthz answers as long as the agent's event loop runs, whatever the cluster looks
like: a node in self-preservation (most peers unreachable at once) stays healthy, so a
restart never makes a network problem worse.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request
from collections.abc import Mapping

TIMEOUT = 2.0
"""Seconds for the whole request; Docker's own --timeout should be longer."""
WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


def healthz_url(environ: Mapping[str, str]) -> str:
    """Where this container's agent answers /healthz."""
    bind = environ.get("GOSSIP_REGISTRY_HTTP_BIND", "0.0.0.0:8500")
    scheme, _, address = bind.rpartition("://")
    host, _, port = address.rstrip("/").rpartition(":")
    if host in WILDCARDS:
        host = "127.0.0.1"
    tls = scheme == "https" or bool(environ.get("GOSSIP_REGISTRY_TLS_CERT"))
    return f"{'https' if tls else 'http'}://{host}:{port}/healthz"


def main() -> int:
    url = healthz_url(os.environ)
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as reply:
            return 0 if reply.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
