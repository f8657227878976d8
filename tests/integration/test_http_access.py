"""HTTP API access: tokens on every route (found by enumerating the app), TLS, the CLI's --token."""

from __future__ import annotations

import datetime
import ipaddress
import math
import re
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from gossip_registry.api.access import dns_exposure_warning, exposure_warning
from gossip_registry.api.auth import Level, required_level
from gossip_registry.api.http import build_app
from gossip_registry.cli import cli
from gossip_registry.core.limits import Limits
from gossip_registry.registry.schema import token_problem
from gossip_registry.runtime.node import Node
from gossip_registry.runtime.threaded import ThreadedNode
from tests.integration import FAST, fast_config

READ, WRITE = "read-secret-1", "write-secret-2"
TIMEOUT = 20


def _routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, concrete path) for every route of the app, mounts included."""
    for route in routes:
        if isinstance(route, Mount):
            yield from _routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            path = re.sub(r"\{[^}]+\}", "x", prefix + route.path)
            for method in sorted(route.methods or ()):
                yield method, path


def endpoints(app: Starlette) -> list[tuple[str, str, Level]]:
    return [(m, p, required_level(m, p)) for m, p in _routes(list(app.routes))]


@asynccontextmanager
async def client_for(
    read_token: str | None, write_token: str | None
) -> AsyncIterator[tuple[httpx.AsyncClient, Starlette]]:
    async with Node(fast_config("auth1")) as node:
        app = build_app(node, read_token=read_token, write_token=write_token)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            yield client, app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


STREAM_OPEN = 200
"""What ``send`` reports for a streaming endpoint still answering after STREAM_GRACE: the
in-process transport buffers whole responses, so an open stream never returns, while a refusal
(401/403) returns at once."""
STREAM_GRACE = 0.5


async def send(client: httpx.AsyncClient, method: str, path: str, token: str | None) -> int:
    headers = bearer(token) if token is not None else {}
    body = {"name": "web", "port": 80} if method in ("PUT", "POST") else None
    with trio.move_on_after(STREAM_GRACE if path == "/v1/events" else math.inf):
        response = await client.request(method, path, headers=headers, json=body)
        return response.status_code
    return STREAM_OPEN


async def test_every_route_needs_the_token_of_its_level() -> None:
    with trio.fail_after(TIMEOUT):
        async with client_for(READ, WRITE) as (client, app):
            found = endpoints(app)
            # The enumeration itself must work, or this test would pass vacuously.
            assert ("PUT", "/v1/services", Level.WRITE) in found
            assert ("DELETE", "/v1/services/x", Level.WRITE) in found
            assert ("GET", "/v1/members", Level.READ) in found
            for method, path, level in found:
                where = f"{method} {path}"
                if level is Level.OPEN:  # answered without a token (/ui redirects, /ui/x is 404)
                    assert await send(client, method, path, None) in (200, 308, 404), where
                    continue
                response = await client.request(method, path)  # refused at once, even a stream
                assert response.status_code == 401, where
                assert response.headers["www-authenticate"].startswith("Bearer"), where
                if method != "HEAD":  # no body
                    assert "Authorization: Bearer" in response.json()["error"], where
                assert await send(client, method, path, "wrong") == 403, where
                assert await send(client, method, path, WRITE) not in (401, 403), where
                read_status = await send(client, method, path, READ)
                if level is Level.WRITE:
                    assert read_status == 403, where
                else:
                    assert read_status not in (401, 403), where


async def test_a_write_with_the_write_token_takes_effect_and_without_it_does_not() -> None:
    with trio.fail_after(TIMEOUT):
        async with client_for(None, WRITE) as (client, _):
            assert await send(client, "PUT", "/v1/services", None) == 401
            assert (await client.get("/v1/services")).json() == {}  # reads stay open
            assert await send(client, "PUT", "/v1/services", WRITE) == 200
            assert (await client.get("/v1/services")).json() == {"web": 1}


async def test_without_tokens_everything_but_key_changes_is_open() -> None:
    with trio.fail_after(TIMEOUT):
        async with client_for(None, None) as (client, app):
            for method, path, _ in endpoints(app):
                if method == "POST" and path.startswith("/v1/keyring/"):
                    continue  # see the next test
                assert await send(client, method, path, None) not in (401, 403)


@pytest.mark.parametrize("read_token", [None, READ])
async def test_key_changes_are_refused_with_403_naming_the_reason_without_a_write_token(
    read_token: str | None,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with client_for(read_token, None) as (client, _):
            for op in ("install", "use", "remove"):
                for token in (None, READ):
                    headers = bearer(token) if token is not None else {}
                    response = await client.post(
                        f"/v1/keyring/{op}", headers=headers, json={"key": "x"}
                    )
                    assert response.status_code == 403, op
                    assert "no write token configured" in response.json()["error"]
            # Listing stays under the ordinary rules: open here, or with the read token.
            listed = await client.get("/v1/keyring", headers=bearer(READ))
            assert listed.status_code not in (401, 403)
        async with client_for(read_token, WRITE) as (client, _):
            allowed = await client.post("/v1/keyring/use", headers=bearer(WRITE), json={"key": "x"})
            assert allowed.status_code not in (401, 403)


async def test_with_only_a_read_token_it_also_guards_writes() -> None:
    with trio.fail_after(TIMEOUT):
        async with client_for(READ, None) as (client, _):
            assert await send(client, "PUT", "/v1/services", None) == 401
            assert await send(client, "PUT", "/v1/services", READ) == 200


@pytest.mark.parametrize(
    ("method", "path", "level"),
    [
        ("GET", "/healthz", Level.OPEN),
        ("GET", "/metrics", Level.READ),
        ("HEAD", "/v1/members", Level.READ),
        ("GET", "/v1/keyring", Level.WRITE),
        ("GET", "/v1/keyring/list", Level.WRITE),
        ("GET", "/v1/checks/c1", Level.WRITE),
        ("GET", "/v1/checksum", Level.READ),
        ("POST", "/v1/anything", Level.WRITE),
        ("OPTIONS", "/v1/members", Level.WRITE),
        ("GET", "/ui", Level.OPEN),
        ("GET", "/ui/", Level.OPEN),
        ("GET", "/ui/app.js", Level.OPEN),
        ("GET", "/uikit", Level.READ),
        ("GET", "/v1/ui/overview", Level.READ),
    ],
)
def test_required_level_by_method_and_path(method: str, path: str, level: Level) -> None:
    assert required_level(method, path) is level


def test_tokens_must_be_visible_ascii() -> None:
    assert token_problem("abc-DEF_123.~+/=") is None
    for bad in ("", "has space", "é", "x" * 513, None):
        assert token_problem(bad) is not None


def test_an_api_beyond_loopback_without_a_write_token_is_warned_about() -> None:
    assert exposure_warning(("0.0.0.0", 8500), None) is not None
    assert exposure_warning(("10.1.2.3", 8500), None) is not None
    assert exposure_warning(("node.example", 8500), None) is not None
    assert exposure_warning(("0.0.0.0", 8500), "t") is None
    assert exposure_warning(("127.0.0.1", 8500), None) is None
    # DNS has no tokens: it matters only when reads are meant to be private.
    assert dns_exposure_warning(("0.0.0.0", 8600), "r") is not None
    assert dns_exposure_warning(("127.0.0.1", 8600), "r") is None
    assert dns_exposure_warning(("0.0.0.0", 8600), None) is None
    assert dns_exposure_warning(None, "r") is None
    assert exposure_warning(("::1", 8500), None) is None
    assert exposure_warning(None, None) is None


def test_agent_warns_loudly_when_it_exposes_an_api_with_open_writes() -> None:
    # The gossip port is taken, so the agent stops right after its start-up checks.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        base = ["agent", "--name", "n1", "--bind", bind, "--http", "0.0.0.0:0"]
        exposed = CliRunner().invoke(cli, base)
        assert exposed.exit_code == 1
        assert "SECURITY WARNING" in exposed.output
        guarded = CliRunner(env={"GOSSIP_REGISTRY_WRITE_TOKEN": WRITE}).invoke(cli, base)
        assert guarded.exit_code == 1
        assert "SECURITY WARNING" not in guarded.output
    bad = CliRunner().invoke(cli, ["agent", "--name", "n1", "--write-token", "has space"])
    assert bad.exit_code == 2
    assert "--write-token" in bad.output


# --- TLS ------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, valid for a day, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gossip-registry test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_the_api_serves_https_with_the_configured_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    config = fast_config(
        "tls1", http=("127.0.0.1", 0), tls_cert=cert, tls_key=key, write_token=WRITE
    )
    trusted = ssl.create_default_context(cafile=str(cert))
    with trio.fail_after(TIMEOUT):
        async with Node(config) as node:
            assert node.http_addr is not None
            port = node.http_addr[1]
            async with httpx.AsyncClient(verify=trusted, trust_env=False) as client:
                response = await client.get(f"https://127.0.0.1:{port}/healthz")
                assert response.json()["name"] == "tls1"
                put = await client.put(
                    f"https://127.0.0.1:{port}/v1/services",
                    json={"name": "web", "port": 80},
                    headers=bearer(WRITE),
                )
                assert put.status_code == 200
            async with httpx.AsyncClient(trust_env=False) as client:  # system CAs only
                with pytest.raises(httpx.ConnectError):
                    await client.get(f"https://127.0.0.1:{port}/healthz")
                with pytest.raises(httpx.HTTPError):  # plain HTTP gets no answer
                    await client.get(f"http://127.0.0.1:{port}/healthz")


def test_cli_sends_the_token_and_trusts_the_given_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    config = fast_config("tls2", http=("127.0.0.1", 0), tls_cert=cert, tls_key=key, read_token=READ)
    with ThreadedNode(config) as node:
        assert node.http_addr is not None
        http = f"127.0.0.1:{node.http_addr[1]}"
        runner = CliRunner(env={"GOSSIP_REGISTRY_TOKEN": None, "GOSSIP_REGISTRY_CA_CERT": None})
        refused = runner.invoke(cli, ["members", "--http", http, "--ca-cert", str(cert)])
        assert refused.exit_code == 1
        assert "needs a token" in refused.output
        args = ["members", "--http", http, "--ca-cert", str(cert), "--token", READ]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "tls2" in result.output
        monkeypatch.setenv("GOSSIP_REGISTRY_TOKEN", READ)
        result = CliRunner().invoke(cli, ["status", "--http", http, "--ca-cert", str(cert)])
        assert result.exit_code == 0, result.output


async def test_a_registration_beyond_the_per_owner_limit_is_a_400_naming_the_limit() -> None:
    protocol = FAST.with_(limits=Limits(max_entries_per_owner=1))
    with trio.fail_after(TIMEOUT):
        async with Node(fast_config("cap1", protocol=protocol)) as node:
            transport = httpx.ASGITransport(app=build_app(node))
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                first = await client.put("/v1/services", json={"name": "a", "port": 1})
                assert first.status_code == 200
                second = await client.put("/v1/services", json={"name": "b", "port": 1})
                assert second.status_code == 400
                assert "max_entries_per_owner" in second.json()["error"]
