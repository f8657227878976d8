#!/bin/sh
# Container entry point: one gossip-registry agent, configured by environment variables alone.
#
# Every agent flag has a variable (GOSSIP_REGISTRY_NAME, _BIND, _ADVERTISE, _HTTP_BIND, _JOIN,
# _RETRY_JOIN_TIMEOUT, _DATA_DIR, _PROFILE, _LOG_LEVEL, _DNS_BIND, _READ_TOKEN, _WRITE_TOKEN,
# _ENCRYPT, ...; see `gossip-registry agent --help`). This script only fills in what a
# container needs and the agent's own defaults do not give: listen on every interface (the
# agent then advertises the address routed towards its seeds, or GOSSIP_REGISTRY_ADVERTISE,
# the pod IP from the downward API) and keep the snapshot in the data volume.
#
# exec: the agent replaces this shell, so it is the process the runtime signals (PID 1 in
# the container). Its first SIGTERM starts a graceful leave and it exits 0 once the leave has
# spread (at most leave_timeout, 3 s); a second signal stops it at once.
set -eu

: "${GOSSIP_REGISTRY_BIND:=0.0.0.0:7946}"
: "${GOSSIP_REGISTRY_HTTP_BIND:=0.0.0.0:8500}"
: "${GOSSIP_REGISTRY_DATA_DIR:=/var/lib/gossip-registry}"
export GOSSIP_REGISTRY_BIND GOSSIP_REGISTRY_HTTP_BIND GOSSIP_REGISTRY_DATA_DIR

exec "${GOSSIP_REGISTRY_PYTHON:-python3}" -m gossip_registry agent "$@"
