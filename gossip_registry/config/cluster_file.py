"""cluster.toml: one file that describes a whole cluster, loaded into NodeConfigs.

Theory of operation: the file has a ``[cluster]`` table (its name), a
``[defaults]`` table shared by every node, and one ``[[nodes]]`` table per
node. A node's settings are layered: the protocol preset named by
``profile`` (``lan``, ``wan``, ``local``; see ``core/config.py``), then the
``[defaults]`` values, then the node's own. ``meta`` tables merge key by key
(the node wins); every other key replaces.

Everything is checked here, before any socket opens, and every error is one
``ConfigError`` naming the file, the key path (``nodes[2].gossip_port``) and
the problem. A typo fails at startup with a "did you mean" rather than being
ignored: an unknown key is far more often a misspelt real one than a future
one, and a node silently running with a default probe interval is the kind
of misconfiguration that only shows as flapping months later.

Durations are strings with a unit (``"500ms"``, ``"1s"``, ``"1m30s"``,
``"2h"``); bare numbers are refused, because ``probe_interval = 500`` is
more often meant as milliseconds than as eight minutes. Relative paths are
relative to the directory of the file, not the working directory, so that
``gossip-registry agent --config some/dir/cluster.toml`` means the same from
anywhere.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from gossip_registry.config.node import NodeConfig
from gossip_registry.config.values import parse_address, parse_duration
from gossip_registry.config.values import show as _show
from gossip_registry.core.config import DRIVER_FIELDS, ProtocolConfig
from gossip_registry.core.limits import Limits
from gossip_registry.core.messages import Address
from gossip_registry.errors import ConfigError
from gossip_registry.registry.preservation import PreservationConfig
from gossip_registry.registry.schema import (
    MAX_NAME_LEN,
    FieldError,
    is_host,
    is_name,
    meta_problem,
    name_problem,
    port_problem,
    token_problem,
)

__all__ = [
    "PROFILES",
    "ClusterConfig",
    "ConfigError",
    "load_cluster",
]

PROFILES: dict[str, Callable[[], ProtocolConfig]] = {
    "lan": ProtocolConfig.lan,
    "wan": ProtocolConfig.wan,
    "local": ProtocolConfig.local,
}
"""Protocol presets by the name ``profile`` takes (memberlist's three configs)."""

MAX_DNS_TTL = 86400
"""Largest dns_ttl, seconds (the DNS server's own bound)."""
DEFAULT_HOST = "127.0.0.1"
"""Bind host when neither [defaults] nor the node sets one: loopback, never exposed by accident."""

# --- The cluster file ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A loaded cluster.toml: the cluster's name and one NodeConfig per node, in file order."""

    name: str
    path: Path
    nodes: tuple[NodeConfig, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    @property
    def http_addresses(self) -> dict[str, Address]:
        """HTTP API address of each node that serves one, by node name (clients, the CLI)."""
        return {n.name: n.http for n in self.nodes if n.http is not None}

    @property
    def dns_addresses(self) -> dict[str, Address]:
        """DNS address (UDP and TCP) of each node that serves one, by node name."""
        return {n.name: n.dns for n in self.nodes if n.dns is not None}

    @property
    def gossip_addresses(self) -> dict[str, Address]:
        """The address peers reach each node at (advertised, else bound), by node name."""
        return {n.name: n.advertise or n.bind for n in self.nodes}

    def node(self, name: str) -> NodeConfig:
        """The node called ``name``.

        Raises:
            KeyError: no such node; the message lists the names there are.
        """
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} in {self.path}; nodes: {', '.join(self.names)}")


def load_cluster(path: Path | str) -> ClusterConfig:
    """Read and check a cluster file.

    Raises:
        ConfigError: unreadable file, TOML syntax (with tomllib's line and
            column), or any invalid value; the message names the file and key.
    """
    path = Path(path)
    label = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=label) from exc
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", file=label) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=label) from exc
    return _Loader(label, path.absolute().parent).cluster(doc, path)


# --- Keys, derived from the config dataclasses ------------------------------
# A NodeConfig field is a key of its own name, allowed in [defaults] and in
# [[nodes]] and parsed by its annotation (``_Loader.plain``), unless it is set
# through other keys (``_SET_THROUGH``) or never from a file
# (``NOT_IN_CLUSTER_FILE``). Protocol, limits and self-preservation keys are read
# off their dataclasses the same way. A new setting is configurable without
# touching this file, and tests/unit/test_config_keys.py fails for a field that
# is neither.
_PROTOCOL_TYPES: dict[str, type] = {
    f.name: get_type_hints(ProtocolConfig)[f.name]
    for f in fields(ProtocolConfig)
    if f.name != "limits"  # its own [limits] table
    and f.name not in DRIVER_FIELDS
}
_LIMIT_TYPES: dict[str, type] = {f.name: get_type_hints(Limits)[f.name] for f in fields(Limits)}
_PRESERVATION_KEYS = {f"self_preservation_{f.name}": f.name for f in fields(PreservationConfig)}
"""Self-preservation (NodeConfig.self_preservation): key -> PreservationConfig field."""
_SET_THROUGH: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "cluster": ("[cluster] name",),
    "bind": ("host", "gossip_port"),
    "advertise": ("advertise",),
    "http": ("host", "http_port"),
    "dns": ("host", "dns_port"),
    "data_dir": ("data_dir", "data_root"),
    "seeds": ("seeds",),
    "protocol": ("profile", *_PROTOCOL_TYPES, "[limits]"),
    "meta": ("meta",),
    "self_preservation": tuple(_PRESERVATION_KEYS),
    "read_token": ("read_token", "read_token_file"),
    "write_token": ("write_token", "write_token_file"),
    "keyring": ("encrypt", "keyring_file"),
}
"""NodeConfig fields set through keys of other names, layered, or checked across keys."""
NOT_IN_CLUSTER_FILE: dict[str, str] = {
    "unsafe_test_faults": "chaos testing only: the agent's --unsafe-test-faults flag sets it",
}
"""NodeConfig fields no cluster.toml key sets, and why."""
_PLAIN_TYPES: dict[str, Any] = {
    name: hint
    for name, hint in get_type_hints(NodeConfig, localns={"Keyring": object}).items()
    if name not in _SET_THROUGH and name not in NOT_IN_CLUSTER_FILE
}
"""Fields that are keys of their own name, with their annotation (Keyring is only
imported for type checking; that field is set through ``encrypt``)."""
KEYS_BY_FIELD: dict[str, tuple[str, ...]] = {
    f.name: _SET_THROUGH.get(f.name, (f.name,))
    for f in fields(NodeConfig)
    if f.name not in NOT_IN_CLUSTER_FILE
}
"""The cluster.toml keys that set each NodeConfig field (``[table] key`` for another table)."""
_NODE_ONLY_KEYS = frozenset(
    {"name", "gossip_port", "http_port", "dns_port", "advertise", "data_dir"}
)
"""Keys that make sense for one node only: the same port or data dir twice is a clash."""
_SHARED_KEYS = (
    frozenset(k for keys in KEYS_BY_FIELD.values() for k in keys if not k.startswith("["))
    - _NODE_ONLY_KEYS
)
"""Keys allowed in [defaults] and in each [[nodes]] table."""
_NODE_KEYS = _SHARED_KEYS | _NODE_ONLY_KEYS
_NODE_FIELDS = {f.name: f for f in fields(NodeConfig)}
_TOP_KEYS = frozenset({"cluster", "defaults", "nodes", "limits"})
_CLUSTER_KEYS = frozenset({"name"})
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True, slots=True)
class _Binding:
    """One listening port, for the clash check."""

    index: int
    node: str
    key: str  # gossip_port | http_port | dns_port
    host: str
    port: int


class _Loader:
    """Turns the parsed TOML document into a ClusterConfig; each check raises with its key path."""

    def __init__(self, file: str, base: Path) -> None:
        self.file = file
        self.base = base

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(problem, file=self.file, key=key)

    # -- structure --

    def cluster(self, doc: dict[str, Any], path: Path) -> ClusterConfig:
        self.check_keys(doc, _TOP_KEYS, "")
        cluster = self.table(doc.get("cluster", {}), "cluster")
        self.check_keys(cluster, _CLUSTER_KEYS, "cluster")
        name = self.name(cluster.get("name", "default"), "cluster.name")
        defaults_table = self.table(doc.get("defaults", {}), "defaults")
        for key in defaults_table:
            if key in _NODE_ONLY_KEYS:
                raise self.fail(f"defaults.{key}", "only allowed in a [[nodes]] table")
        self.check_keys(defaults_table, _SHARED_KEYS, "defaults")
        defaults = self.shared(defaults_table, "defaults")
        limits = self.limits(self.table(doc.get("limits", {}), "limits"))

        raw_nodes = doc.get("nodes")
        if raw_nodes is None:
            raise self.fail("nodes", "no nodes: add at least one [[nodes]] table")
        if not isinstance(raw_nodes, list) or not all(isinstance(t, dict) for t in raw_nodes):
            raise self.fail("nodes", "must be an array of tables, written [[nodes]]")
        if not raw_nodes:
            raise self.fail("nodes", "no nodes: add at least one [[nodes]] table")

        drafts = [self.node(i, t, defaults) for i, t in enumerate(raw_nodes)]
        self.check_unique([config for config, _ in drafts])
        first = drafts[0][0]
        nodes = []
        for i, (config, seeds) in enumerate(drafts):
            if seeds is None:  # no seeds key anywhere: join through the first node
                seeds = () if i == 0 else (self.default_seed(first),)
            own = {config.bind, config.advertise or config.bind}
            unique = tuple(s for s in dict.fromkeys(seeds) if s not in own)
            protocol = replace(config.protocol, limits=limits)
            nodes.append(replace(config, cluster=name, seeds=unique, protocol=protocol))
        return ClusterConfig(name=name, path=path, nodes=tuple(nodes))

    def default_seed(self, first: NodeConfig) -> Address:
        """The first node's gossip address: what a node that lists no seeds joins through."""
        if first.advertise is not None:
            return first.advertise
        if first.bind[0] in _WILDCARDS:
            raise self.fail(
                "nodes[0].advertise",
                "required when host is a wildcard address and other nodes "
                "use this node as their default seed",
            )
        return first.bind

    def node(
        self, index: int, table: dict[str, Any], defaults: dict[str, Any]
    ) -> tuple[NodeConfig, tuple[Address, ...] | None]:
        """The node at ``nodes[index]``, and its seeds (None: not given, settled later)."""
        at = f"nodes[{index}]"
        self.check_keys(table, _NODE_KEYS, at)
        if "name" not in table:
            raise self.fail(f"{at}.name", "required")
        name = self.name(table["name"], f"{at}.name", node=True)
        if "gossip_port" not in table:
            raise self.fail(f"{at}.gossip_port", "required")
        gossip_port = self.port(table["gossip_port"], f"{at}.gossip_port")
        http_port = None
        if "http_port" in table:
            http_port = self.port(table["http_port"], f"{at}.http_port")
        own = self.shared({k: v for k, v in table.items() if k in _SHARED_KEYS}, at)

        merged = {**defaults, **own}
        merged["meta"] = {**defaults.get("meta", {}), **own.get("meta", {})}
        layered = meta_problem(merged["meta"])  # each table alone passed; together?
        if layered is not None:
            raise self.fail(f"{at}.meta", f"{layered[1]} with [defaults].meta")
        host: str = merged.get("host", DEFAULT_HOST)

        advertise = None
        if "advertise" in table:
            try:
                advertise = parse_address(table["advertise"], default_port=gossip_port)
            except ValueError as exc:
                raise self.fail(f"{at}.advertise", str(exc)) from None

        data_dir: Path | None = None
        if "data_dir" in table:
            data_dir = self.path(table["data_dir"], f"{at}.data_dir")
        elif "data_root" in merged:
            data_dir = merged["data_root"] / name

        protocol = self.protocol(at, table, defaults, own, merged)
        kwargs: dict[str, Any] = {k: v for k, v in merged.items() if k in _PLAIN_TYPES}
        kwargs.update(self.preservation(at, own, merged))
        kwargs.update(self.access(at, own, defaults, merged))
        if "dns_port" in table:  # the DNS interface's port is per node, like the others
            kwargs["dns"] = (host, self.port(table["dns_port"], f"{at}.dns_port"))
        kwargs.update(self.gossip_keys(at, own, defaults, merged))
        config = NodeConfig(
            name=name,
            bind=(host, gossip_port),
            advertise=advertise,
            http=(host, http_port) if http_port is not None else None,
            data_dir=data_dir,
            seeds=merged.get("seeds", ()),
            protocol=protocol,
            meta=merged["meta"],
            **kwargs,
        )
        return config, merged.get("seeds")

    def preservation(
        self, at: str, own: Mapping[str, Any], merged: Mapping[str, Any]
    ) -> dict[str, PreservationConfig]:
        """``self_preservation=`` for NodeConfig when any of its keys is set; range errors
        name the key at whichever table set it."""
        given = {field: merged[k] for k, field in _PRESERVATION_KEYS.items() if k in merged}
        if not given:
            return {}
        try:
            return {"self_preservation": PreservationConfig(**given)}
        except FieldError as exc:
            key = f"self_preservation_{exc.fields[0]}"
            raise self.fail(f"{at if key in own else 'defaults'}.{key}", exc.problem) from None

    def protocol(
        self,
        at: str,
        table: Mapping[str, Any],
        defaults: Mapping[str, Any],
        own: Mapping[str, Any],
        merged: Mapping[str, Any],
    ) -> ProtocolConfig:
        """The preset, then defaults, then the node's fields, applied at once.

        At once, because a combination can be valid where an intermediate
        one is not (defaults shorten probe_interval, the node shortens
        probe_timeout to match). ProtocolConfig's own checks name the field
        at fault; the error is reported at whichever table set it.
        """
        profile = merged.get("profile", "lan")
        overrides = {k: v for k, v in merged.items() if k in _PROTOCOL_TYPES}
        try:
            return replace(PROFILES[profile](), **overrides)
        except FieldError as exc:
            key = at
            for source, prefix in ((own, at), (defaults, "defaults")):
                hit = next((f for f in exc.fields if f in source), None)
                if hit is not None:
                    key = f"{prefix}.{hit}"
                    break
            else:
                if "profile" in table or "profile" not in defaults:
                    key = f"{at}.profile" if "profile" in table else at
                else:
                    key = "defaults.profile"
            raise self.fail(key, f"invalid protocol setting: {exc}") from None

    def limits(self, table: Mapping[str, Any]) -> Limits:
        """The [limits] table: one set for the whole cluster, since nodes that
        drop different things never agree on a digest."""
        self.check_keys(table, _LIMIT_TYPES, "limits")
        values: dict[str, Any] = {}
        for key, value in table.items():
            if _LIMIT_TYPES[key] is float:
                values[key] = self.duration(value, f"limits.{key}")
            elif type(value) is not int:
                raise self.fail(f"limits.{key}", f"must be an integer, got {_show(value)}")
            else:
                values[key] = value
        try:
            return Limits(**values)
        except FieldError as exc:
            raise self.fail(f"limits.{exc.fields[0]}", str(exc)) from None

    def access(
        self,
        at: str,
        own: Mapping[str, Any],
        defaults: Mapping[str, Any],
        merged: Mapping[str, Any],
    ) -> dict[str, Any]:
        """NodeConfig's tokens, which may come inline or from a file; TLS files go in pairs.

        A node that gives a token in either form overrides both forms in [defaults].
        """
        out: dict[str, Any] = {}
        for kind in ("read", "write"):
            inline, file = f"{kind}_token", f"{kind}_token_file"
            source, prefix = (own, at) if inline in own or file in own else (defaults, "defaults")
            if inline in source and file in source:
                raise self.fail(f"{prefix}.{file}", f"give {inline} or {file}, not both")
            if inline in source:
                out[inline] = source[inline]
            elif file in source:
                out[inline] = self.token_file(source[file], f"{prefix}.{file}")
        if ("tls_cert" in merged) != ("tls_key" in merged):
            raise self.fail(f"{at}.tls_key", "tls_cert and tls_key go together")
        return out

    def token_file(self, path: Path, where: str) -> str:
        """A token kept out of the config file (and out of ``ps``): the file's one line."""
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise self.fail(where, f"cannot read {path}: {exc}") from None
        return self.token(token, where)

    def token(self, value: Any, where: str) -> str:
        problem = token_problem(value)
        if problem is not None:
            raise self.fail(where, problem)
        return str(value)

    # -- checks across nodes --

    def check_unique(self, drafts: list[NodeConfig]) -> None:
        seen_names: dict[str, int] = {}
        seen_advertise: dict[Address, int] = {}
        bindings: list[_Binding] = []
        for i, d in enumerate(drafts):
            if d.name in seen_names:
                raise self.fail(
                    f"nodes[{i}].name",
                    f"duplicate node name {d.name!r} (also nodes[{seen_names[d.name]}])",
                )
            seen_names[d.name] = i
            if d.advertise is not None:
                if d.advertise in seen_advertise:
                    raise self.fail(
                        f"nodes[{i}].advertise",
                        f"{_fmt(d.advertise)} is also advertised by "
                        f"nodes[{seen_advertise[d.advertise]}]",
                    )
                seen_advertise[d.advertise] = i
            mine = [_Binding(i, d.name, "gossip_port", *d.bind)]
            if d.http is not None:
                mine.append(_Binding(i, d.name, "http_port", *d.http))
            if len(mine) == 2 and mine[0].port == mine[1].port:
                raise self.fail(
                    f"nodes[{i}].http_port",
                    f"{mine[1].port} is also this node's gossip_port (TCP clash)",
                )
            if d.dns is not None:  # DNS takes UDP and TCP: it clashes with gossip and HTTP
                for own in mine:
                    if own.port == d.dns[1]:
                        raise self.fail(
                            f"nodes[{i}].dns_port", f"{d.dns[1]} is also this node's {own.key}"
                        )
                mine.append(_Binding(i, d.name, "dns_port", *d.dns))
            for b in mine:
                for other in bindings:
                    if other.port == b.port and _hosts_overlap(other.host, b.host):
                        raise self.fail(
                            f"nodes[{i}].{b.key}",
                            f"port {b.port} on {b.host} is already used by "
                            f"nodes[{other.index}] ({other.node}) {other.key}",
                        )
            bindings.extend(mine)

    # -- values --

    def check_keys(self, table: Mapping[str, Any], allowed: Iterable[str], at: str) -> None:
        allowed = sorted(allowed)
        for key in table:
            if key not in allowed:
                import difflib  # only to word an error: not paid by every agent's start

                where = f"{at}.{key}" if at else key
                close = difflib.get_close_matches(key, allowed, n=1)
                if close:
                    raise self.fail(where, f"unknown key; did you mean {close[0]!r}?")
                raise self.fail(where, f"unknown key (allowed: {', '.join(allowed)})")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, got {_show(value)}")
        return value

    def shared(self, table: Mapping[str, Any], at: str) -> dict[str, Any]:
        """Typed values of the keys [defaults] and [[nodes]] share; errors at ``at.key``."""
        out: dict[str, Any] = {}
        for key, value in table.items():
            where = f"{at}.{key}"
            if key in _PLAIN_TYPES:
                out[key] = self.plain(key, value, where)
            elif key == "host":
                if not isinstance(value, str) or not is_host(value):
                    raise self.fail(
                        where, f"must be an IP address or host name, got {_show(value)}"
                    )
                out[key] = value
            elif key == "profile":
                if not isinstance(value, str) or value not in PROFILES:
                    raise self.fail(
                        where, f"must be one of {', '.join(PROFILES)}, got {_show(value)}"
                    )
                out[key] = value
            elif key == "seeds":
                out[key] = self.seeds(value, where)
            elif key == "meta":
                out[key] = self.meta(value, where)
            elif key == "self_preservation_threshold":
                if type(value) not in (int, float):
                    raise self.fail(where, f"must be a number in (0, 1], got {_show(value)}")
                out[key] = float(value)
            elif key in _PRESERVATION_KEYS:
                out[key] = self.duration(value, where)
            elif key in ("read_token", "write_token"):
                out[key] = self.token(value, where)
            elif key == "encrypt":
                if not isinstance(value, str):
                    raise self.fail(where, f"must be a base64 key string, got {_show(type(value))}")
                out[key] = value  # checked with the keyring, in gossip_keys
            elif key.endswith("_file") or key == "data_root":  # token and keyring files
                out[key] = self.path(value, where)
            else:
                out[key] = self.protocol_value(key, value, where)
        return out

    def plain(self, key: str, value: Any, where: str) -> Any:
        """A NodeConfig field of the key's own name, parsed by the field's annotation."""
        kind = _PLAIN_TYPES[key]
        if key == "dns_domain":
            return self.dns_domain(value, where)
        if key == "dns_trusted_networks":
            return self.networks(value, where)
        if kind is float:
            seconds = self.duration(value, where)
            if key == "dns_ttl" and seconds > MAX_DNS_TTL:
                raise self.fail(where, f"at most {MAX_DNS_TTL // 3600}h, got {_show(value)}")
            return seconds
        if kind is bool:
            return self.boolean(value, where)
        if kind is int:
            least = _NODE_FIELDS[key].metadata.get("minimum", 1)
            if type(value) is not int or value < least:
                raise self.fail(where, f"must be an integer >= {least}, got {_show(value)}")
            return value
        if kind == Path | None:
            return self.path(value, where)
        raise AssertionError(f"NodeConfig.{key}: no cluster.toml parser for {kind!r}")

    def protocol_value(self, key: str, value: Any, where: str) -> Any:
        kind = _PROTOCOL_TYPES[key]
        if kind is float:
            return self.duration(value, where)
        if kind is bool:
            return self.boolean(value, where)
        if kind is int:
            if type(value) is not int:
                raise self.fail(where, f"must be an integer, got {_show(value)}")
            return value
        raise AssertionError(f"ProtocolConfig.{key} has an unsupported type {kind!r}")

    def gossip_keys(
        self,
        at: str,
        own: Mapping[str, Any],
        defaults: Mapping[str, Any],
        merged: Mapping[str, Any],
    ) -> dict[str, Any]:
        """NodeConfig's keyring; a bad key is reported where it was set.

        As with tokens, a node that gives its keys in either form (``encrypt`` or
        ``keyring_file``) overrides both forms in [defaults].
        """
        from gossip_registry.crypto.keyring import KeyringError
        from gossip_registry.crypto.keyring_file import configured_keyring

        forms = ("encrypt", "keyring_file")
        source, prefix = (own, at) if any(k in own for k in forms) else (defaults, "defaults")
        try:
            return {
                "keyring": configured_keyring(source.get("encrypt"), source.get("keyring_file"))
            }
        except KeyringError as exc:
            key = next((k for k in forms if k in source), "encrypt")
            raise self.fail(f"{prefix}.{key}", str(exc)) from None

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"must be true or false, got {_show(value)}")
        return value

    def duration(self, value: Any, where: str) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None

    def dns_domain(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or value in ("", ".") or not is_host(value):
            raise self.fail(where, f"must be a DNS domain such as 'registry.', got {_show(value)}")
        return value

    def name(self, value: Any, where: str, *, node: bool = False) -> str:
        # Node names become directory names (data_root/<name>): no '/', no '..'.
        if is_name(value) and (not node or _NODE_NAME.fullmatch(value)):
            return value
        if node:
            problem = (
                f"must be 1..{MAX_NAME_LEN} letters, digits, '.', '_' or '-', "
                f"starting with a letter or digit, got {_show(value)}"
            )
        else:
            problem = name_problem(value) or ""
        raise self.fail(where, problem)

    def networks(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(
                where, f"must be a list of networks such as '10.0.0.0/8', got {_show(value)}"
            )
        for i, item in enumerate(value):
            try:
                ipaddress.ip_network(item)
            except (TypeError, ValueError):
                raise self.fail(
                    f"{where}[{i}]", f"must be a network such as '10.0.0.0/8', got {_show(item)}"
                ) from None
        return tuple(value)

    def port(self, value: Any, where: str) -> int:
        problem = port_problem(value)
        if problem is not None:
            raise self.fail(where, problem)
        return int(value)

    def path(self, value: Any, where: str) -> Path:
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"must be a non-empty path string, got {_show(value)}")
        return self.base / Path(value).expanduser()

    def seeds(self, value: Any, where: str) -> tuple[Address, ...]:
        if not isinstance(value, list):
            raise self.fail(where, f"must be a list of 'host:port' strings, got {_show(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(parse_address(item))
            except ValueError as exc:
                raise self.fail(f"{where}[{i}]", str(exc)) from None
        return tuple(out)

    def meta(self, value: Any, where: str) -> dict[str, str]:
        """Node metadata travels in every alive message: the codec's limits apply here."""
        problem = meta_problem(value)
        if problem is not None:
            inside, why = problem
            raise self.fail(f"{where}{inside}", why)
        return dict(value)


def _hosts_overlap(a: str, b: str) -> bool:
    """Whether two bind hosts can clash on one port: the same host, or a wildcard."""
    return a == b or a in _WILDCARDS or b in _WILDCARDS


def _fmt(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
