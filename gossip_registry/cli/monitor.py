"""``gossip-registry monitor``: print a node's events as they happen.

Theory of operation: one long-lived ``GET /v1/events`` (NDJSON, see
``api/events.py``) read line by line; each event becomes one aligned,
human-readable line, or is printed as it came with ``--json``. The node
is chosen like every client command's (``--http``, ``--config``/``--node``,
./cluster.toml). Ctrl-C ends the monitor quietly; so does the end of the
stream, which happens when the node stops (cleanly, or by dropping the
connection): exit status 0 with one line on stderr. Only a node that cannot
be reached, or refuses the request, is a failure (exit status 1).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from gossip_registry.cli._common import Failure, format_address
from gossip_registry.cli.client import Api, client_command


def _kinds(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Checked here, so a typo is a usage error before any connection is made."""
    if value is None:
        return None
    from gossip_registry.runtime.events import parse_kinds

    try:
        return ",".join(sorted(parse_kinds(value)))
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("kind: ")) from None


def format_event(event: dict[str, Any]) -> str:
    """One event as a line: local time, kind, event, then what it is about."""
    when = datetime.fromtimestamp(float(event.get("time", 0))).strftime("%H:%M:%S.%f")[:-3]
    kind, name = str(event.get("kind", "?")), str(event.get("event", "?"))
    if kind == "member":
        where = format_address(str(event.get("address")), int(event.get("port", 0)))
        previous = event.get("previous")
        was = f"  (was {previous})" if previous else ""
        detail = f"{event.get('name')}  {where}  incarnation {event.get('incarnation')}{was}"
    elif kind in ("entry", "check"):
        where = format_address(str(event.get("address")), int(event.get("port", 0)))
        detail = f"{event.get('service')}/{event.get('id')}  {where}  on {event.get('node')}"
        if kind == "check":
            output = f": {event['output']}" if event.get("output") else ""
            detail += f"  (was {event.get('previous')}){output}"
        elif name != "deregistered" and name != "removed":
            detail += f"  {event.get('status')}"
    elif kind == "dropped":
        kind, name, detail = (
            "--",
            "dropped",
            f"{event.get('count')} events (this monitor fell behind)",
        )
    else:
        detail = json.dumps({k: v for k, v in event.items() if k not in ("time", "kind", "event")})
    return f"{when}  {kind:<6}  {name:<12}  {detail}".rstrip()


def _stream(api: Api, kinds: str | None, as_json: bool) -> str:
    """Print events until the stream ends; returns why it ended.

    Raises:
        Failure: the node cannot be reached, or answers with an error.
    """
    import httpx

    from gossip_registry.client.node_api import reason_in_words

    params = {"kind": kinds} if kinds else None
    timeout = httpx.Timeout(api.timeout, read=None)  # events may be minutes apart
    subscribed = False
    try:
        with (
            httpx.Client(
                base_url=api.url,
                timeout=timeout,
                trust_env=False,
                headers=api.headers,  # the read token, when the node wants one
                verify=api.verify,  # --ca-cert
            ) as client,
            client.stream("GET", "/v1/events", params=params) as response,
        ):
            if not response.is_success:
                response.read()
                raise Failure(f"node at {api.address}: HTTP {response.status_code} {response.text}")
            for line in response.iter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("kind") == "stream":
                    subscribed = True
                    if not as_json:
                        click.echo(f"monitoring {api.address} (Ctrl-C to stop)", err=True)
                        continue
                click.echo(line if as_json else format_event(event))
    except httpx.TimeoutException:
        raise Failure(
            f"cannot reach node at {api.address}: no answer within {api.timeout:g}s"
        ) from None
    except (httpx.HTTPError, ValueError) as exc:
        if not subscribed:
            raise Failure(f"cannot reach node at {api.address}: {reason_in_words(exc)}") from None
        return f"stream from {api.address} lost ({reason_in_words(exc)}): the node stopped?"
    return f"node at {api.address} ended the stream (it stopped)"


@client_command
@click.option(
    "--kind",
    "kinds",
    metavar="KINDS",
    callback=_kinds,
    help="Only these kinds, comma-separated: member, entry, check.  [default: all]",
)
def monitor(api: Api, as_json: bool, kinds: str | None) -> None:
    """Print the node's events as they happen: joins, suspicions, deaths,
    registrations, check changes. Ctrl-C stops; so does the node stopping."""
    try:
        why = _stream(api, kinds, as_json)
    except KeyboardInterrupt:
        return
    click.echo(why, err=True)
