"""The deployment files under deploy/ say what docs/deploy.md promises.

No cluster, Docker engine or systemd manager runs here, so what can be
checked is checked statically: the manifests parse and hold the fields that
make joining, probing and leaving work (and refer to each other correctly);
the Dockerfile copies files that exist and runs as a non-root user; the
systemd unit passes ``systemd-analyze verify`` and its offline security
review. That the entry point really runs an agent from the environment is
``tests/integration/test_deploy_entrypoint.py``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from gossip_registry.config.node import NodeConfig
from tests.support.programs import require_program

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GOSSIP_PORT = 7946
DATA_DIR = "/var/lib/gossip-registry"
UID = 10001


def documents(name: str) -> dict[str, dict[str, Any]]:
    """The manifests of ``deploy/kubernetes/NAME``, by kind (each kind once) or kind/name."""
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()))
    out: dict[str, dict[str, Any]] = {}
    for doc in docs:
        for key in ("apiVersion", "kind", "metadata"):
            assert key in doc, f"{name}: a document without {key}"
        assert doc["metadata"]["name"], f"{name}: a {doc['kind']} without a name"
        key = doc["kind"]
        if key in out:
            key = f"{doc['kind']}/{doc['metadata']['name']}"
        out[key] = doc
    return out


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def headless(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (service,) = [
        d for d in docs.values() if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"
    ]
    return service


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_gossip_ports(service: dict[str, Any], container: dict[str, Any]) -> None:
    """Gossip is UDP and TCP on one port, in the headless service and the container."""
    protocols = {p["protocol"] for p in service["spec"]["ports"] if p["port"] == GOSSIP_PORT}
    assert protocols == {"TCP", "UDP"}
    ports = {(p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert {(GOSSIP_PORT, "TCP"), (GOSSIP_PORT, "UDP")} <= ports


def check_join_and_leave(
    pod: dict[str, Any], container: dict[str, Any], service: dict[str, Any], node_ip: str
) -> None:
    env = env_of(container)
    # Joins through the headless service's DNS name (in the pod's own namespace).
    name = service["metadata"]["name"]
    assert env["GOSSIP_REGISTRY_JOIN"] == f"{name}.$(POD_NAMESPACE).svc:{GOSSIP_PORT}"
    assert "POD_NAMESPACE" in env
    assert list(env).index("POD_NAMESPACE") < list(env).index("GOSSIP_REGISTRY_JOIN")
    assert env["GOSSIP_REGISTRY_ADVERTISE"] == {"fieldRef": {"fieldPath": node_ip}}
    assert env["GOSSIP_REGISTRY_BIND"] == f"0.0.0.0:{GOSSIP_PORT}"
    assert env["GOSSIP_REGISTRY_DATA_DIR"] == DATA_DIR
    assert re.fullmatch(r"\d+m", env["GOSSIP_REGISTRY_RETRY_JOIN_TIMEOUT"])
    # Pods must resolve each other before any is ready.
    assert service["spec"]["publishNotReadyAddresses"] is True
    # SIGTERM leaves within the grace period, with room to spare.
    assert pod["terminationGracePeriodSeconds"] >= 3 * NodeConfig("x").leave_timeout
    # Probes on /healthz; liveness tolerates a minute (self-preservation never fails it).
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz", probe
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 60
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert DATA_DIR in mounts
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]


def test_the_statefulset_joins_by_its_headless_service_and_leaves_within_its_grace() -> None:
    docs = documents("statefulset.yaml")
    assert set(docs) == {"Service", "Service/gossip-registry", "PodDisruptionBudget", "StatefulSet"}
    sts = docs["StatefulSet"]
    service = headless(docs)
    assert sts["apiVersion"] == "apps/v1"
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert sts["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert sts["spec"]["minReadySeconds"] >= 5  # the new pod is heard of before the next goes
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert selects(sts["spec"]["selector"]["matchLabels"], labels)
    assert selects(service["spec"]["selector"], labels)
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    check_gossip_ports(service, container)
    check_join_and_leave(pod, container, service, "status.podIP")
    assert env_of(container)["GOSSIP_REGISTRY_NAME"] == "$(POD_NAME)"
    # Probes name ports the container has.
    names = {p["name"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in names, probe
    # The data volume is a claim per pod; the pod runs as the image's non-root user.
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[DATA_DIR] == claim["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    # A drain takes at most one node at a time.
    pdb = docs["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels)
    # Clients reach the HTTP API through the other service.
    client = docs["Service/gossip-registry"]
    assert selects(client["spec"]["selector"], labels)
    assert [p["targetPort"] for p in client["spec"]["ports"]] == ["http"]


def test_the_daemonset_runs_one_agent_per_host_on_the_hosts_network() -> None:
    docs = documents("daemonset.yaml")
    assert set(docs) == {"Service", "DaemonSet"}
    ds = docs["DaemonSet"]
    service = headless(docs)
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert selects(ds["spec"]["selector"]["matchLabels"], labels)
    assert selects(service["spec"]["selector"], labels)
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"  # resolves the service's name
    (container,) = pod["containers"]
    check_gossip_ports(service, container)
    check_join_and_leave(pod, container, service, "status.hostIP")
    env = env_of(container)
    assert env["GOSSIP_REGISTRY_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    # The API is the host's own: loopback, probed there by the kubelet.
    assert env["GOSSIP_REGISTRY_HTTP_BIND"] == "127.0.0.1:8500"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["host"] == "127.0.0.1"
        assert container[probe]["httpGet"]["port"] == 8500
    assert container["securityContext"]["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts[DATA_DIR]]["hostPath"]["path"] == DATA_DIR


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage and the build stage, continuations joined."""
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    out = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_dockerfile_runs_the_entry_point_as_a_non_root_user_with_a_healthcheck() -> None:
    steps = dockerfile()
    bases = [args for word, args in steps if word == "FROM"]
    assert bases
    assert all(re.match(r"python:3\.1[1-9]-slim\b", base) for base in bases)
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    final = steps[last:]
    one = dict(final)
    user = one["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert int(user) == UID
    assert one["VOLUME"] == f'["{DATA_DIR}"]'
    assert set(one["EXPOSE"].split()) == {"7946/udp", "7946/tcp", "8500/tcp"}
    assert "--interval=" in one["HEALTHCHECK"]
    assert "healthcheck.py" in one["HEALTHCHECK"]
    assert one["ENTRYPOINT"] == '["/usr/local/bin/gossip-registry-entrypoint"]'
    assert f"GOSSIP_REGISTRY_DATA_DIR={DATA_DIR}" in one["ENV"]
    # Every file copied from the build context exists (the context is the repository).
    for word, args in steps:
        if word == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
    copied = {args.split()[0] for word, args in final if word == "COPY"}
    assert {"deploy/docker/entrypoint.sh", "deploy/docker/healthcheck.py"} <= copied
    assert os.access(DEPLOY / "docker" / "entrypoint.sh", os.X_OK)


def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "healthcheck", DEPLOY / "docker" / "healthcheck.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "http://127.0.0.1:8500/healthz"),
        ({"GOSSIP_REGISTRY_HTTP_BIND": "0.0.0.0:9000"}, "http://127.0.0.1:9000/healthz"),
        ({"GOSSIP_REGISTRY_HTTP_BIND": "[::]:9000"}, "http://127.0.0.1:9000/healthz"),
        ({"GOSSIP_REGISTRY_HTTP_BIND": "10.0.0.5:9000"}, "http://10.0.0.5:9000/healthz"),
        ({"GOSSIP_REGISTRY_HTTP_BIND": "https://0.0.0.0:8443"}, "https://127.0.0.1:8443/healthz"),
        (
            {"GOSSIP_REGISTRY_HTTP_BIND": "0.0.0.0:8443", "GOSSIP_REGISTRY_TLS_CERT": "/c.pem"},
            "https://127.0.0.1:8443/healthz",
        ),
    ],
)
def test_the_health_check_asks_the_agents_own_http_address(env: dict[str, str], url: str) -> None:
    assert healthcheck().healthz_url(env) == url


def unit_lines() -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting in the systemd unit, in order."""
    section, out = "", []
    for raw in (DEPLOY / "systemd" / "gossip-registry.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key, value))
    return out


def test_the_systemd_unit_restarts_on_failure_keeps_data_under_var_lib_and_is_hardened() -> None:
    settings = {(s, k): v for s, k, v in unit_lines()}
    service = {k: v for (s, k), v in settings.items() if s == "Service"}
    assert (
        service["Type"] == "notify"
    )  # the agent sends READY=1 (tests/integration/test_sd_notify.py)
    assert service["NotifyAccess"] == "main"
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].endswith("gossip-registry agent")
    assert service["StateDirectory"] == "gossip-registry"
    assert f"GOSSIP_REGISTRY_DATA_DIR={DATA_DIR}" in [
        v for s, k, v in unit_lines() if (s, k) == ("Service", "Environment")
    ]
    assert service["KillSignal"] == "SIGTERM"
    assert service["TimeoutStopSec"] == "30s"
    for key, value in {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    assert settings[("Install", "WantedBy")] == "multi-user.target"


def systemd_analyze() -> str:
    return require_program("systemd-analyze", "systemd")


def verifiable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's console script.

    ``verify`` checks that the command exists; the packaged path
    (/usr/local/bin) is not where the test environment installed it.
    """
    command = Path(sys.executable).parent / "gossip-registry"
    assert command.exists(), command
    text = (DEPLOY / "systemd" / "gossip-registry.service").read_text()
    unit = tmp_path / "gossip-registry.service"
    unit.write_text(text.replace("/usr/local/bin/gossip-registry", str(command)))
    return unit


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    unit = verifiable_unit(tmp_path)
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # Unknown or misplaced keys are only warnings, with status 0: any output fails too.
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_the_systemd_units_offline_security_review_rates_it_well_exposed_at_most_2(
    tmp_path: Path,
) -> None:
    analyze = systemd_analyze()
    unit = verifiable_unit(tmp_path)
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "Overall exposure level" in result.stdout
