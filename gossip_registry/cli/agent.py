"""``gossip-registry agent``: run one node in this process until told to leave.

Theory of operation: the command builds a ``NodeConfig`` (from cluster.toml,
or from flags), then ``trio.run`` drives one ``Node`` with its HTTP API.
Signals are received inside the run (``trio.open_signal_receiver``), so they
arrive as ordinary events rather than as exceptions at arbitrary points:

- the first SIGTERM or SIGINT starts a graceful leave (``Node.leave``: the
  "left" broadcast spreads for at most ``leave_timeout``), then exit 0;
- a second one stops at once (the snapshot is still written), exit 0;
- ``--exit-with-parent`` (passed by ``up``) also leaves when the parent
  process goes away, so an ``up`` that is SIGKILLed cannot strand its nodes.

Failures before the node runs are one line on stderr: a bad config names
the file and key (exit 2); an address that cannot be bound names which one
and why (exit 1). Anything else is a bug and keeps its traceback.

Only the standard library and click are imported at module level; the node
is imported when the command runs, and nothing the node does not use (httpx,
the CLI's client or ``up`` code, the simulator) is imported at all.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from gossip_registry.api.access import dns_exposure_warning, exposure_warning
from gossip_registry.cli._common import (
    DEFAULT_CONFIG,
    DEFAULT_HTTP,
    ConfigFailure,
    Failure,
    format_address,
    load_config,
    split_http,
)
from gossip_registry.cli.keys import apply_gossip_keys, gossip_key_options
from gossip_registry.registry.schema import token_problem
from gossip_registry.runtime.fdlimit import raise_open_files_limit

if TYPE_CHECKING:
    import trio

    from gossip_registry.config.node import NodeConfig
    from gossip_registry.runtime.node import Node

logger = logging.getLogger("gossip_registry")

PARENT_POLL_INTERVAL = 1.0
"""Seconds between checks that the parent still exists (with --exit-with-parent)."""
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LEVELS = ("debug", "info", "warning", "error")
_FLAG_OPTIONS = (
    "name",
    "bind",
    "advertise",
    "http",
    "join",
    "retry_join_timeout",
    "data_dir",
    "profile",
)
_DNS_FLAG_OPTIONS = ("dns", "dns_domain", "dns_ttl")
DEV_BIND = "127.0.0.1:7946"
DEV_HTTP = format_address(*DEFAULT_HTTP)
"""Where client commands look when there is no cluster.toml."""
DEV_DNS = "127.0.0.1:8601"
ENV = "GOSSIP_REGISTRY_"
"""Prefix of the environment variables that stand for the agent's flags (a container's
only configuration: ``GOSSIP_REGISTRY_ADVERTISE`` from the pod IP, and so on); a flag given
on the command line wins over its variable."""


@gossip_key_options
@click.command()
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Cluster file; the node's settings come from its [[nodes]] table.  "
    "[default: ./cluster.toml when --node is given]",
)
@click.option("--node", "node_name", metavar="NAME", help="Which node of the cluster file to run.")
@click.option(
    "--dev",
    is_flag=True,
    help="One node to try things on: in memory, gossip on 127.0.0.1:7946, HTTP on "
    "127.0.0.1:8501 and DNS on 127.0.0.1:8601 (where the client commands look by default), "
    "with a banner saying so. Flags given override these.",
)
@click.option(
    "--name",
    envvar=f"{ENV}NAME",
    help="Node name (config-less form).  [default: this machine's host name]",
)
@click.option(
    "--bind",
    envvar=f"{ENV}BIND",
    metavar="HOST:PORT",
    help="Gossip address, UDP and TCP; port 0 picks a free one.  [default: 127.0.0.1:7946]",
)
@click.option(
    "--advertise",
    envvar=f"{ENV}ADVERTISE",
    metavar="HOST[:PORT]",
    help="Address peers use (NAT, a pod's IP); the port defaults to the bound one.  "
    "[default: the bound address; for 0.0.0.0, the local address routed towards the seeds]",
)
@click.option(
    "--http",
    envvar=f"{ENV}HTTP_BIND",
    metavar="HOST:PORT|URL",
    help="HTTP API address to listen on, as HOST:PORT or http(s)://HOST:PORT (https needs "
    "--tls-cert); none if not given.",
)
@click.option(
    "--join",
    envvar=f"{ENV}JOIN",
    multiple=True,
    metavar="HOST:PORT",
    help="Seed to join through (repeatable; in the env var, separated by spaces). HOST may be "
    "a DNS name: every address it resolves to is tried, resolved again at each attempt.",
)
@click.option(
    "--retry-join-timeout",
    envvar=f"{ENV}RETRY_JOIN_TIMEOUT",
    metavar="DURATION",
    help="How long a join at start goes on retrying while no seed answers, e.g. 5m.  "
    "[default: 31s]",
)
@click.option(
    "--data-dir",
    envvar=f"{ENV}DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the snapshot is kept; without it a restart starts from nothing.",
)
@click.option(
    "--profile",
    envvar=f"{ENV}PROFILE",
    type=click.Choice(["lan", "wan", "local"]),
    help="Protocol timings (memberlist's presets): lan probes every 1s; wan every 5s, for "
    "links with long round trips; local every 1s with shorter timeouts, for one machine.  "
    "[default: lan]",
)
@click.option(
    "--log-level",
    envvar=f"{ENV}LOG_LEVEL",
    type=click.Choice(LEVELS),
    default="info",
    show_default=True,
    help="Stderr log.",
)
@click.option(
    "--read-token",
    envvar=f"{ENV}READ_TOKEN",
    metavar="TOKEN",
    help="Bearer token reads of the HTTP API need (prefer the env var GOSSIP_REGISTRY_READ_TOKEN: "
    "flags show in ps).  Overrides the cluster file.",
)
@click.option(
    "--write-token",
    envvar=f"{ENV}WRITE_TOKEN",
    metavar="TOKEN",
    help="Bearer token writes need (env GOSSIP_REGISTRY_WRITE_TOKEN).  Overrides the cluster file.",
)
@click.option(
    "--tls-cert",
    envvar=f"{ENV}TLS_CERT",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM certificate: serve the HTTP API over HTTPS (with --tls-key).",
)
@click.option(
    "--tls-key",
    envvar=f"{ENV}TLS_KEY",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM key.",
)
@click.option("--exit-with-parent", is_flag=True, hidden=True)
@click.option(
    "--dns",
    envvar=f"{ENV}DNS_BIND",
    metavar="HOST:PORT",
    help="DNS address (UDP and TCP); none if not given.",
)
@click.option(
    "--dns-domain",
    envvar=f"{ENV}DNS_DOMAIN",
    metavar="DOMAIN",
    help="Zone DNS answers for.  [default: registry.]",
)
@click.option(
    "--dns-ttl",
    envvar=f"{ENV}DNS_TTL",
    metavar="DURATION",
    help="TTL of DNS answers, e.g. 5s.  [default: 5s]",
)
@click.option(
    "--unsafe-test-faults",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="CHAOS TESTING ONLY: drop packets by the rules in FILE (see faultinject.py).",
)
def agent(
    config_path: Path | None,
    node_name: str | None,
    dev: bool,
    name: str | None,
    bind: str | None,
    advertise: str | None,
    http: str | None,
    join: tuple[str, ...],
    retry_join_timeout: str | None,
    data_dir: Path | None,
    profile: str | None,
    log_level: str,
    read_token: str | None,
    write_token: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    exit_with_parent: bool,
    dns: str | None,
    dns_domain: str | None,
    dns_ttl: str | None,
    unsafe_test_faults: Path | None,
    **gossip_keys: Any,
) -> None:
    """Run one node (gossip + HTTP API) until SIGTERM or SIGINT, then leave gracefully.

    \b
    To try it out:        agent --dev
    From a cluster file:  agent --config cluster.toml --node node1
    Without one:          agent --name n1 --bind 127.0.0.1:7946 --http 127.0.0.1:8501 \\
                                --join 127.0.0.1:7947 --data-dir data/n1
    In a container:       the same settings as GOSSIP_REGISTRY_* variables (shown below)
    """
    # Until trio's signal receiver takes over, SIGTERM interrupts as SIGINT does, so
    # that a stop requested during start-up still ends in an orderly exit 0.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if dev:
            if config_path is not None or node_name is not None:
                raise click.UsageError("--dev cannot be combined with --config/--node")
            if data_dir is not None:
                raise click.UsageError("--dev keeps nothing: it cannot take --data-dir")
            bind, http = bind or DEV_BIND, http or DEV_HTTP
            dns = dns or DEV_DNS
            profile = profile or "local"
        config = _node_config(
            config_path,
            node_name,
            name=name,
            bind=bind,
            advertise=advertise,
            http=http,
            join=join,
            retry_join_timeout=retry_join_timeout,
            data_dir=data_dir,
            profile=profile,
            dns_flags={"dns": dns, "dns_domain": dns_domain, "dns_ttl": dns_ttl},
        )
        config = with_access(config, read_token, write_token, tls_cert, tls_key)
        if unsafe_test_faults is not None:  # chaos testing only; cluster.toml cannot set it
            config = dataclasses.replace(config, unsafe_test_faults=unsafe_test_faults.resolve())
        from_file = config_path is not None or node_name is not None
        config = apply_gossip_keys(config, from_file, gossip_keys)
        configure_logging(log_level)
        for warning in (
            exposure_warning(config.http, config.write_token),
            dns_exposure_warning(config.dns, config.read_token),
        ):
            if warning is not None:
                logger.warning("SECURITY WARNING: %s", warning)
        # Every held blocking query is an open connection: see fdlimit.py.
        before, after = raise_open_files_limit()
        logger.debug("open files limit (RLIMIT_NOFILE soft): %d -> %d", before, after)
        run_agent(
            config,
            parent_pid=os.getppid() if exit_with_parent else None,
            banner=dev_banner if dev else None,
        )
    except KeyboardInterrupt:
        # Only before the node runs (then signals are events): nothing to leave.
        click.echo("stopped before the node started", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)


for _option in agent.params:  # every variable is named in --help, next to its flag
    if isinstance(_option, click.Option) and _option.envvar:
        _option.show_envvar = True


def _node_config(
    config_path: Path | None,
    node_name: str | None,
    *,
    name: str | None,
    bind: str | None,
    advertise: str | None,
    http: str | None,
    join: tuple[str, ...],
    data_dir: Path | None,
    profile: str | None,
    dns_flags: dict[str, str | None] | None = None,
    retry_join_timeout: str | None = None,
) -> NodeConfig:
    """The node's config from the file (--config/--node) or from the flags, never a mix."""
    dns_flags = dns_flags or {}
    flags = {
        **{k: dns_flags.get(k) for k in _DNS_FLAG_OPTIONS},
        "name": name,
        "bind": bind,
        "advertise": advertise,
        "http": http,
        "join": join or None,
        "retry_join_timeout": retry_join_timeout,
        "data_dir": data_dir,
        "profile": profile,
    }
    given = [
        f"--{k.replace('_', '-')}"
        for k in (*_FLAG_OPTIONS, *_DNS_FLAG_OPTIONS)
        if flags[k] is not None
    ]
    if config_path is not None or node_name is not None:
        if given:
            raise click.UsageError(
                f"{given[0]} cannot be combined with --config/--node: "
                "the cluster file sets it (or run without --config)"
            )
        if node_name is None:
            raise click.UsageError("--config needs --node NAME: which node of the file to run")
        cluster = load_config(config_path or DEFAULT_CONFIG)
        try:
            return cluster.node(node_name)
        except KeyError as exc:
            raise ConfigFailure(str(exc.args[0])) from None
    return config_from_flags(
        name or default_name(),
        bind=bind or "127.0.0.1:7946",
        advertise=advertise,
        http=http,
        join=join,
        retry_join_timeout=retry_join_timeout,
        data_dir=data_dir,
        profile=profile or "lan",
        **dns_flags,
    )


def default_name() -> str:
    """This machine's host name (its first label), as a node name peers accept."""
    label = socket.gethostname().split(".", 1)[0]
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in label).strip("-")
    return cleaned or "node"


def dev_banner(node: Node) -> None:
    """Where a ``--dev`` agent listens, and the commands that talk to it, on stdout."""
    lines = [
        f"gossip-registry dev agent: node {node.name}, in memory (nothing is kept)",
        f"  gossip  {format_address(*node.gossip_addr)}",
    ]
    if node.http_addr is not None:
        http = format_address(*node.http_addr)
        lines.append(f"  HTTP    http://{http}   try: gossip-registry members --http {http}")
    if node.dns_addr is not None:
        host, port = node.dns_addr
        domain = node.config.dns_domain
        lines.append(
            f"  DNS     {format_address(host, port)}   try: dig @{host} -p {port} "
            f"NAME.service.{domain} SRV"
        )
    lines.append("Ctrl-C leaves and stops.")
    click.echo("\n".join(lines))


def config_from_flags(
    name: str,
    *,
    bind: str,
    advertise: str | None,
    http: str | None,
    join: tuple[str, ...],
    data_dir: Path | None,
    profile: str,
    dns: str | None = None,
    dns_domain: str | None = None,
    dns_ttl: str | None = None,
    retry_join_timeout: str | None = None,
) -> NodeConfig:
    """A NodeConfig from the config-less flags; a bad value is a ConfigFailure naming the flag.

    Bind and HTTP addresses may use port 0 (a free port, logged once bound);
    seeds and the advertised address may not, since peers must reach them.
    """
    from gossip_registry.config.cluster_file import PROFILES
    from gossip_registry.config.node import NodeConfig
    from gossip_registry.config.values import parse_address, parse_duration

    def address(flag: str, text: str, **kwargs: object) -> tuple[str, int]:
        try:
            return parse_address(text, **kwargs)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ConfigFailure(f"{flag}: {exc}") from None

    bound = address("--bind", bind, allow_zero=True)
    protocol = PROFILES[profile]()
    if retry_join_timeout is not None:
        try:
            protocol = protocol.with_(retry_join_timeout=parse_duration(retry_join_timeout))
        except ValueError as exc:
            raise ConfigFailure(f"--retry-join-timeout: {exc}") from None
    return NodeConfig(
        name=name,
        bind=bound,
        advertise=address("--advertise", advertise, default_port=bound[1], allow_zero=True)
        if advertise
        else None,
        http=address("--http", _http_address(http), allow_zero=True) if http else None,
        data_dir=data_dir,
        seeds=tuple(address("--join", seed) for seed in join),
        protocol=protocol,
        **_dns_settings(address, dns, dns_domain, dns_ttl),
    )


def _http_address(text: str) -> str:
    """``--http``'s HOST:PORT, from either form (the scheme is the TLS flags' business)."""
    try:
        return split_http(text)[1]
    except click.BadParameter as exc:
        raise ConfigFailure(f"--http: {exc.message}") from None


def with_access(
    config: NodeConfig,
    read_token: str | None,
    write_token: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> NodeConfig:
    """``config`` with the token and TLS flags applied over it (in either mode)."""
    from dataclasses import replace

    changes: dict[str, object] = {}
    for flag, token in (("--read-token", read_token), ("--write-token", write_token)):
        if token is not None:
            problem = token_problem(token)
            if problem is not None:
                raise ConfigFailure(f"{flag}: {problem}")
            changes[flag[2:].replace("-", "_")] = token
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_cert is not None:
        changes.update(tls_cert=tls_cert, tls_key=tls_key)
    return replace(config, **changes)  # type: ignore[arg-type]


def _dns_settings(
    address: Callable[..., tuple[str, int]],
    dns: str | None,
    domain: str | None,
    ttl: str | None,
) -> dict[str, Any]:
    """NodeConfig's dns fields from --dns, --dns-domain, --dns-ttl (checked like cluster.toml's)."""
    settings: dict[str, Any] = {}
    if dns is not None:
        settings["dns"] = address("--dns", dns, allow_zero=True)
    if domain is None and ttl is None:
        return settings
    # dnspython and what it pulls in (importlib.metadata, email, zipfile) cost an
    # agent ~3 MiB: only when a DNS option is given.
    from gossip_registry.api.dns_answer import MAX_TTL, parse_domain
    from gossip_registry.config.values import parse_duration

    if domain is not None:
        try:
            parse_domain(domain)
        except ValueError as exc:
            raise ConfigFailure(f"--dns-domain: {exc}") from None
        settings["dns_domain"] = domain
    if ttl is not None:
        try:
            settings["dns_ttl"] = parse_duration(ttl)
        except ValueError as exc:
            raise ConfigFailure(f"--dns-ttl: {exc}") from None
        if settings["dns_ttl"] > MAX_TTL:
            raise ConfigFailure(f"--dns-ttl: at most {MAX_TTL} seconds, got {ttl!r}")
    return settings


def configure_logging(level: str) -> None:
    """One line per event on stderr, prefixed with time and level.

    Our loggers ("gossip_registry" and its children) log at ``level``;
    other libraries only at WARNING and above, so a dependency's debug
    chatter never floods a node's log.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logger.setLevel(level.upper())


def run_agent(
    config: NodeConfig,
    *,
    parent_pid: int | None = None,
    banner: Callable[[Node], None] | None = None,
) -> None:
    """Run the node to the end; returns normally after a leave (exit status 0).

    ``banner`` is called once the node listens (``--dev`` prints where).

    Raises:
        ConfigFailure: the node refuses the config (a name peers would refuse).
        Failure: an address could not be bound or resolved at startup.
    """
    import trio

    from gossip_registry.runtime.node import Node

    try:
        node = Node(config)
    except ValueError as exc:
        raise ConfigFailure(f"node {config.name}: {exc}") from None
    started = False

    def mark_started() -> None:
        nonlocal started
        started = True
        sd_notify(f"READY=1\nSTATUS=node {node.name} listening")
        if banner is not None:
            banner(node)

    try:
        trio.run(_serve, node, parent_pid, mark_started)
    except (OSError, BaseExceptionGroup) as exc:
        error = _startup_os_error(exc)
        if started or error is None:
            raise
        message = f"cannot start node {config.name}: {_describe_bind_error(node, error)}"
        raise Failure(message) from None


def sd_notify(state: str) -> bool:
    """Tell systemd (``Type=notify``) our state, when it started us with ``NOTIFY_SOCKET``.

    ``READY=1`` once the node listens (gossip and HTTP), so units ordered
    after this one start when it can serve; ``STOPPING=1`` when it starts to
    leave. One datagram to systemd's socket (a path, or abstract if it starts
    with ``@``); without the variable, or if the send fails, nothing happens
    beyond a warning: the agent runs the same without systemd.

    Returns:
        Whether the state was sent.
    """
    target = os.environ.get("NOTIFY_SOCKET", "")
    if target.startswith("@"):
        target = "\0" + target[1:]
    elif not target.startswith("/"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)  # systemd reads at once; never hold the event loop
            sock.sendto(state.encode(), target)
    except OSError as exc:
        logger.warning("could not notify systemd at %s: %s", target.lstrip("\0"), exc)
        return False
    return True


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


async def _serve(node: Node, parent_pid: int | None, mark_started: Callable[[], None]) -> None:
    """Start the node, wait for a reason to leave, leave; a second signal stops at once."""
    import trio

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(_run_node, node, nursery.cancel_scope)
            mark_started()
            reason = await _leave_requested(signals, parent_pid)
            logger.info("%s: leaving the cluster (signal again to stop at once)", reason)
            sd_notify(f"STOPPING=1\nSTATUS=node {node.name} leaving the cluster")
            nursery.start_soon(_stop_on_second_signal, node, signals)
            await node.leave()
    logger.info("node %s has left; exiting", node.name)


async def _run_node(
    node: Node,
    everything: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[Node],
) -> None:
    """``node.run``; when it returns, for whatever reason, the agent's other tasks end too."""
    try:
        await node.run(task_status=task_status)
    finally:
        everything.cancel()


async def _leave_requested(signals: AsyncIterator[int], parent_pid: int | None) -> str:
    """Wait for SIGTERM/SIGINT, or for the parent to vanish; say which, for the log."""
    import trio

    poll = PARENT_POLL_INTERVAL if parent_pid is not None else math.inf
    while True:
        with trio.move_on_after(poll):
            async for signum in signals:
                return f"received {signal.Signals(signum).name}"
        if os.getppid() != parent_pid:
            return f"parent process {parent_pid} exited"


async def _stop_on_second_signal(node: Node, signals: AsyncIterator[int]) -> None:
    async for signum in signals:
        logger.warning(
            "received %s again: stopping without waiting for the leave to spread",
            signal.Signals(signum).name,
        )
        node.stop()
        return


def _startup_os_error(exc: BaseException) -> OSError | None:
    """The OSError inside ``exc`` (trio nests it in exception groups), if it is all there is."""
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc if isinstance(exc, OSError) else None


def _describe_bind_error(node: Node, error: OSError) -> str:
    """``HTTP address 127.0.0.1:8501: address already in use``.

    The gossip sockets are bound first; if the node holds a transport, the
    failure came after them, from the HTTP listener.
    """
    config = node.config
    try:
        _ = node.transport
    except RuntimeError:
        what, addr = "gossip address", config.bind
    else:
        what, addr = "HTTP address", config.http or ("?", 0)
        if config.dns is not None and (config.http is None or node.http_addr is not None):
            what, addr = "DNS address", config.dns  # DNS binds after HTTP
    reason = error.strerror or str(error)
    return f"{what} {format_address(*addr)}: {reason[:1].lower()}{reason[1:]}"
