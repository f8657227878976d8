"""Client commands: members, services, register, deregister, check, status, over a node's HTTP API.

Theory of operation: each command is one HTTP request to one node (any node
answers for the whole cluster, since every node holds the whole registry),
rendered as an aligned table, or printed as the API's raw JSON with
``--json`` for scripts. The node is chosen by ``--http``, else by
``--config``/``--node``, else from ./cluster.toml, else 127.0.0.1:8501.

Failures are one line and exit status 1: a node that cannot be reached
("cannot reach node at 127.0.0.1:8501: connection refused") or an API error
(its ``error`` message, which names the field at fault). A bad cluster file
is exit status 2, like any configuration error.

httpx is imported only when a request is made; environment proxies are
ignored (``trust_env=False``): a node's API is local to the cluster, and
sending it through an HTTP_PROXY meant for the internet is never right.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from gossip_registry.cli._common import (
    DEFAULT_CONFIG,
    DEFAULT_HTTP,
    ConfigFailure,
    Failure,
    base_url,
    echo_lines,
    format_address,
    format_pairs,
    load_config,
    render_table,
    split_http,
)

DEFAULT_TIMEOUT = 5.0
"""Seconds for the whole request; a node answers in milliseconds unless it is stuck."""
MEMBER_STATES = ("alive", "suspect", "dead", "left")
LEFT_HIDDEN_AFTER = 300.0
"""Seconds after which ``members`` hides a member that left (``--all`` shows it)."""


def _common_params() -> list[click.Parameter]:
    """--http, --config, --node, --json and --timeout: fresh objects for each command."""
    return [
        click.Option(
            ["--http", "http"],
            metavar="HOST:PORT|URL",
            envvar="GOSSIP_REGISTRY_HTTP",
            help="HTTP API of the node to ask: HOST:PORT or http(s)://HOST:PORT.  "
            "[default: the first node of ./cluster.toml, else "
            f"{format_address(*DEFAULT_HTTP)}; env GOSSIP_REGISTRY_HTTP]",
        ),
        click.Option(
            ["--config", "-c", "config_path"],
            type=click.Path(dir_okay=False, path_type=Path),
            help="Cluster file to find the node in.",
        ),
        click.Option(["--node", "node_name"], metavar="NAME", help="Node of the cluster file."),
        click.Option(["--json", "as_json"], is_flag=True, help="Print the API's JSON as is."),
        click.Option(
            ["--token"],
            envvar="GOSSIP_REGISTRY_TOKEN",
            metavar="TOKEN",
            help="Bearer token for a node that requires one (prefer env GOSSIP_REGISTRY_TOKEN: "
            "flags show in ps).  [default: the node's token in the cluster file, if any]",
        ),
        click.Option(
            ["--ca-cert"],
            envvar="GOSSIP_REGISTRY_CA_CERT",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            help="Talk HTTPS, trusting this PEM certificate (env GOSSIP_REGISTRY_CA_CERT).",
        ),
        click.Option(
            ["--timeout"],
            type=click.FloatRange(min=0, min_open=True),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="Seconds to wait for the node.",
        ),
    ]


class Api:
    """One node's HTTP API, with every failure turned into a one-line ``Failure``."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        token: str | None = None,
        ca_cert: Path | None = None,
        https: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.address = format_address(host, port)
        self.url = base_url(host, port)
        if ca_cert is not None or https:
            self.url = "https" + self.url.removeprefix("http")
        self.timeout = timeout
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.verify: ssl.SSLContext | bool = True
        if ca_cert is not None:
            try:
                self.verify = ssl.create_default_context(cafile=str(ca_cert))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigFailure(f"--ca-cert: cannot load {ca_cert}: {exc}") from None

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON of a 2xx answer.

        Raises:
            Failure: unreachable, timed out, a 4xx/5xx (with the API's message),
                or an answer that is not JSON.
        """
        import httpx

        try:
            with httpx.Client(
                base_url=self.url,
                timeout=self.timeout,
                trust_env=False,
                headers=self.headers,
                verify=self.verify,
            ) as client:
                response = client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise Failure(
                f"cannot reach node at {self.address}: no answer within {self.timeout:g}s"
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            # A gossip listener reads a frame length and hangs up on an HTTP request.
            raise Failure(
                f"cannot reach node at {self.address}: {_reason(exc)}; {self._gossip_hint()}"
            ) from None
        except httpx.HTTPError as exc:
            raise Failure(f"cannot reach node at {self.address}: {_reason(exc)}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and body is not None:
            return body
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            raise Failure(body["error"])
        raise Failure(
            f"unexpected answer from {self.address}: HTTP {response.status_code} "
            f"{response.text[:200]!r}"
        )

    def _gossip_hint(self) -> str:
        """Which HTTP API to ask instead, when ./cluster.toml says this is a gossip port."""
        hint = "this looks like a gossip port, not an HTTP API"
        if not DEFAULT_CONFIG.is_file():
            return hint
        try:
            cluster = load_config(DEFAULT_CONFIG)
        except Failure:
            return hint
        for name, http in cluster.http_addresses.items():
            node = cluster.node(name)
            if node.bind[1] == self.port or (node.advertise or node.bind)[1] == self.port:
                return f"{hint}; the HTTP API of node {name} is on {format_address(*http)}"
        return hint


def _reason(exc: BaseException) -> str:
    """``connection refused`` rather than ``[Errno 111] Connection refused``."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno is not None:
            text = os.strerror(cause.errno)
            return text[:1].lower() + text[1:]
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    if text.startswith("[Errno") and "] " in text:
        text = text.split("] ", 1)[1]
    return text[:1].lower() + text[1:]


def _api(
    http: str | None,
    config_path: Path | None,
    node_name: str | None,
    timeout: float,
    token: str | None = None,
    ca_cert: Path | None = None,
) -> Api:
    """The API to call: --http, else the cluster file's node, else the default address.

    Without --token, a node from the cluster file is called with its own
    write (else read) token, so a secured local cluster needs no extra flags.
    """
    from gossip_registry.config import parse_address

    if http is not None:
        if config_path is not None or node_name is not None:
            raise click.UsageError("--http cannot be combined with --config/--node")
        try:
            scheme, address = split_http(http)
            host, port = parse_address(address)
        except (ValueError, click.BadParameter) as exc:
            raise ConfigFailure(f"--http: {exc}") from None
        return Api(host, port, timeout, token, ca_cert, https=scheme == "https")
    path = config_path
    if path is None and (node_name is not None or DEFAULT_CONFIG.is_file()):
        path = DEFAULT_CONFIG
    if path is None:
        return Api(*DEFAULT_HTTP, timeout, token, ca_cert)
    cluster = load_config(path)
    addresses = cluster.http_addresses
    if node_name is not None:
        try:
            cluster.node(node_name)
        except KeyError as exc:
            raise ConfigFailure(str(exc.args[0])) from None
        if node_name not in addresses:
            raise ConfigFailure(f"{path}: node {node_name} has no http_port")
    elif not addresses:
        raise ConfigFailure(f"{path}: no node has an http_port")
    else:
        node_name = next(iter(addresses))
    node = cluster.node(node_name)
    if token is None:
        token = node.write_token or node.read_token
    return Api(*addresses[node_name], timeout, token, ca_cert)


def client_command(fn: Callable[..., None]) -> click.Command:
    """Make ``fn(api, as_json, **rest)`` a click command that also takes the common options.

    Use it as the outermost decorator, above ``fn``'s own arguments and options.
    """

    @functools.wraps(fn)
    def command(
        http: str | None,
        config_path: Path | None,
        node_name: str | None,
        as_json: bool,
        token: str | None,
        ca_cert: Path | None,
        timeout: float,
        **rest: Any,
    ) -> None:
        fn(_api(http, config_path, node_name, timeout, token, ca_cert), as_json, **rest)

    cmd = click.command(name=fn.__name__.replace("_", "-"))(command)
    cmd.params.extend(_common_params())
    return cmd


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint=flag)
    return key, value


# --- Commands ----------------------------------------------------------------------


@client_command
@click.option(
    "--all", "show_all", is_flag=True, help="Also members that left more than 5 minutes ago."
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(MEMBER_STATES),
    help="Only members in this state (repeatable).",
)
def members(api: Api, as_json: bool, show_all: bool, states: tuple[str, ...]) -> None:
    """List the members the node knows, with their state and incarnation.

    Members that left more than 5 minutes ago are hidden unless --all is
    given (a dead member stays: it may come back, or need force-leave).
    """
    body = api.call("GET", "/v1/members")
    if states:
        body = [m for m in body if m["state"] in states]
    hidden = 0
    if not show_all:
        shown = [m for m in body if not _left_long_ago(m)]
        hidden, body = len(body) - len(shown), shown
    if as_json:
        _print_json(body)
        return
    rows = [
        [
            m["name"],
            format_address(m["address"], m["port"]),
            m["state"],
            m["incarnation"],
            format_pairs(m["meta"]),
        ]
        for m in body
    ]
    echo_lines(render_table(["NAME", "ADDRESS", "STATE", "INCARNATION", "META"], rows))
    if hidden:
        click.echo(f"({hidden} left more than 5 minutes ago; --all shows them)")


def _left_long_ago(member: dict[str, Any]) -> bool:
    gone_for = member.get("gone_for")
    return member["state"] == "left" and gone_for is not None and gone_for > LEFT_HIDDEN_AFTER


@client_command
@click.argument("member", metavar="NODE")
def force_leave(api: Api, as_json: bool, member: str) -> None:
    """Mark dead member NODE left on every node now (Consul's force-leave).

    Its entries, which self-preservation may still serve flagged stale, go at
    once, and members hides it after a few minutes. For a node that will
    not come back; should it still run, it refutes and comes back alive.
    """
    answer = api.call("PUT", f"/v1/members/{quote(member, safe='')}/force-leave")
    if as_json:
        _print_json(answer)
    else:
        click.echo(f"{member} is now left")


@client_command
@click.argument("name", required=False)
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only instances with the tag.")
@click.option(
    "--meta", "meta", multiple=True, metavar="KEY=VALUE", help="Only instances with the pair."
)
@click.option(
    "--passing/--all",
    default=None,
    help="Only instances whose health is passing (the default), or every instance.",
)
def services(
    api: Api,
    as_json: bool,
    name: str | None,
    tags: tuple[str, ...],
    meta: tuple[str, ...],
    passing: bool | None,
) -> None:
    """List services (with no NAME) or the instances of service NAME."""
    if name is None:
        if tags or meta or passing is not None:
            raise click.UsageError("--tag, --meta and --passing filter the instances of a NAME")
        if as_json:  # the plain catalog, as scripts have always had it
            _print_json(api.call("GET", "/v1/services"))
            return
        counts = api.call("GET", "/v1/services", params={"health": "true"})
        if not counts:
            click.echo("no services registered")
        else:
            rows = [
                [service, sum(by.values()), by["passing"], by["warning"], by["critical"]]
                for service, by in sorted(counts.items())
            ]
            headers = ["SERVICE", "INSTANCES", "PASSING", "WARNING", "CRITICAL"]
            echo_lines(render_table(headers, rows))
        return
    params: list[tuple[str, str]] = [("tag", tag) for tag in tags]
    params += [("meta", "{}:{}".format(*_key_value(pair, "--meta"))) for pair in meta]
    if passing is not None:
        params.append(("passing", "true" if passing else "false"))
    instances = api.call("GET", f"/v1/services/{quote(name, safe='')}", params=params)
    if as_json:
        _print_json(instances)
    elif not instances:
        click.echo(_none_shown(api, name, params, passing))
    else:
        rows = [
            [
                i["id"],
                format_address(i["address"], i["port"]),
                # Self-preservation kept it although its node was declared dead.
                f"{i['status']} (stale)" if i.get("stale") else i["status"],
                i["weight"],
                i["node"],
                ",".join(i["tags"]) or "-",
                format_pairs(i["meta"]),
            ]
            for i in instances
        ]
        headers = ["ID", "ADDRESS", "STATUS", "WEIGHT", "NODE", "TAGS", "META"]
        echo_lines(render_table(headers, rows))


def _none_shown(api: Api, name: str, params: list[tuple[str, str]], passing: bool | None) -> str:
    """Why no instance of ``name`` is listed: none at all, or none passing (with how many)."""
    if passing is False:
        return f"no instances of {name}"
    everything = [(k, v) for k, v in params if k != "passing"] + [("passing", "false")]
    instances = api.call("GET", f"/v1/services/{quote(name, safe='')}", params=everything)
    if not instances:
        return f"no instances of {name}"
    statuses = sorted({i["status"] for i in instances})
    counts = ", ".join(f"{sum(i['status'] == s for i in instances)} {s}" for s in statuses)
    noun, them = ("instance", "it") if len(instances) == 1 else ("instances", "them")
    return f"{len(instances)} {noun} of {name}, none passing ({counts}); --all shows {them}"


@client_command
@click.argument("name")
@click.option("--port", "-p", type=int, required=True, help="Port the instance serves on.")
@click.option("--id", "instance_id", help="Instance id.  [default: NAME-<8 hex digits>]")
@click.option("--address", "-a", help="Address to reach it.  [default: the node's host]")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag (repeatable).")
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE", help="Metadata (repeatable).")
@click.option("--weight", "-w", type=int, help="Load-balancing weight.  [default: 1]")
@click.option("--check-http", multiple=True, metavar="URL", help="HTTP check (repeatable).")
@click.option("--check-tcp", multiple=True, metavar="HOST:PORT", help="TCP check (repeatable).")
@click.option("--check-ttl", multiple=True, metavar="DURATION", help="TTL check, e.g. 30s.")
@click.option(
    "--check-id", multiple=True, metavar="ID", help="Check ids, in order: HTTP, TCP, then TTL."
)
@click.option("--check-interval", metavar="DURATION", help="Of every HTTP/TCP check.  [10s]")
@click.option("--check-timeout", metavar="DURATION", help="Of every HTTP/TCP check.  [5s]")
@click.option(
    "--check-deregister-after", metavar="DURATION", help="Deregister if critical that long."
)
def register(
    api: Api,
    as_json: bool,
    name: str,
    port: int,
    instance_id: str | None,
    address: str | None,
    tags: tuple[str, ...],
    meta: tuple[str, ...],
    weight: int | None,
    check_http: tuple[str, ...],
    check_tcp: tuple[str, ...],
    check_ttl: tuple[str, ...],
    check_id: tuple[str, ...],
    check_interval: str | None,
    check_timeout: str | None,
    check_deregister_after: str | None,
) -> None:
    """Register an instance of service NAME, owned by the node asked.

    The instance lives as long as that node does: it is removed from
    everywhere if the node dies or leaves, and comes back with it after a
    restart from the same data directory. With checks, the node runs them
    and the instance is discovered while they pass (they start critical);
    the --check-interval/-timeout/-deregister-after options apply to all.
    """
    body: dict[str, Any] = {"name": name, "port": port}
    if instance_id is not None:
        body["id"] = instance_id
    if address is not None:
        body["address"] = address
    if tags:
        body["tags"] = list(tags)
    if meta:
        body["meta"] = dict(_key_value(pair, "--meta") for pair in meta)
    if weight is not None:
        body["weight"] = weight
    checks: list[dict[str, Any]] = [
        *({"http": url} for url in check_http),
        *({"tcp": target} for target in check_tcp),
        *({"ttl": ttl} for ttl in check_ttl),
    ]
    if len(check_id) > len(checks):
        raise click.UsageError("more --check-id than checks")
    shared = {"interval": check_interval, "timeout": check_timeout}
    for check, given_id in itertools.zip_longest(checks, check_id):
        if given_id is not None:
            check["id"] = given_id
        if "ttl" not in check:
            check.update({k: v for k, v in shared.items() if v is not None})
        if check_deregister_after is not None:
            check["deregister_after"] = check_deregister_after
    if checks:
        body["checks"] = checks
    answer = api.call("PUT", "/v1/services", json=body)
    if as_json:
        _print_json(answer)
    else:
        where = format_address(answer["address"], answer["port"])
        click.echo(
            f"registered {answer['id']} (service {answer['name']}, at {where}), "
            f"owned by node {answer['node']}"
        )
        for check_id in answer.get("checks", ()):
            click.echo(f"  check {check_id}")


@client_command
@click.argument("instance_id", metavar="ID")
@click.option("--service", help="Service, when ID is registered under several on the node.")
def deregister(api: Api, as_json: bool, instance_id: str, service: str | None) -> None:
    """Deregister instance ID; ask the node that registered it (only the owner may)."""
    params = {"service": service} if service is not None else None
    answer = api.call("DELETE", f"/v1/services/{quote(instance_id, safe='')}", params=params)
    if as_json:
        _print_json(answer)
    else:
        click.echo(f"deregistered {instance_id}")


def _preservation_line(state: dict[str, Any]) -> str:
    dead = f"{state.get('dead_in_window')} dead in window, threshold {state.get('threshold')}"
    if state.get("active"):
        since = time.strftime("%H:%M:%S", time.localtime(state.get("since") or 0))
        return f"ACTIVE since {since}, serving stale entries ({dead})"
    return f"off ({dead})"


@client_command
@click.argument("verb", type=click.Choice(["pass", "warn", "fail"]))
@click.argument("check_id", metavar="ID")
@click.option("--note", help="Why (shown as the check's output).")
def check(api: Api, as_json: bool, verb: str, check_id: str, note: str | None) -> None:
    """Report a TTL check's status (pass, warn or fail) to the node that runs it."""
    body = {"output": note} if note is not None else None
    answer = api.call("PUT", f"/v1/checks/{quote(check_id, safe='')}/{verb}", json=body)
    if as_json:
        _print_json(answer)
    else:
        click.echo(f"check {check_id} is {answer['status']}")


@client_command
def status(api: Api, as_json: bool) -> None:
    """Show the node's view: members by state, registry size and digest, counters."""
    body = api.call("GET", "/v1/status")
    if as_json:
        _print_json(body)
        return
    members = body.get("members", {})
    rows: list[list[Any]] = [
        ["name", body.get("name")],
        ["cluster", body.get("cluster")],
        ["address", format_address(body.get("address", "?"), body.get("port", 0))],
        ["incarnation", body.get("incarnation")],
        ["members", ", ".join(f"{count} {state}" for state, count in members.items())],
        ["entries", f"{body.get('entries')} live, {body.get('tombstones')} tombstones"],
        ["digest", body.get("digest")],
    ]
    preservation = body.get("self_preservation")
    if preservation:
        rows.append(["self-preservation", _preservation_line(preservation)])
    echo_lines(render_table(["", ""], rows)[1:])
    stats = body.get("stats", {})
    if stats:
        click.echo("stats:")
        lines = render_table(["", ""], [[k, v] for k, v in sorted(stats.items())])[1:]
        echo_lines(["  " + line for line in lines])
