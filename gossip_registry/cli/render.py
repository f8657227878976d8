"""``gossip-registry render``: keep files rendered from the registry (consul-template style).

Theory of operation: parse and check the options here (a usage error is
exit status 2 before anything runs), pick the node(s) as the client
commands do (``--http``, else ``--config``/``--node``, else ./cluster.toml,
else 127.0.0.1:8501), then run ``render.loop.render_loop`` under trio with
one ``AsyncRegistryClient`` for every template. Several ``--http`` are
fail-over nodes. A template error, a node refusing the query, or a file
that cannot be written is one line and exit status 1; so is a failed
command with ``--once``. trio, httpx and Jinja2 are imported only when the
command runs (``cli/_common.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from gossip_registry.cli._common import Failure

if TYPE_CHECKING:
    from gossip_registry.render.loop import Job


def parse_jobs(templates: tuple[str, ...], out: Path | None) -> list[Job]:
    """``--template SRC --out DEST`` (one), or ``--template SRC:DEST`` (one or more).

    Raises:
        click.UsageError: a mix of the forms, a pair without DEST, or one DEST twice.
    """
    from gossip_registry.render.loop import Job

    if out is not None:
        if len(templates) != 1:
            raise click.UsageError(
                "--out takes exactly one --template SRC; for several, "
                "give each as --template SRC:DEST"
            )
        return [Job(Path(templates[0]), out)]
    jobs = []
    for text in templates:
        source, sep, dest = text.partition(":")
        if not (sep and source and dest):
            raise click.UsageError(
                f"--template {text!r}: expected SRC:DEST (or one --template SRC with --out DEST)"
            )
        jobs.append(Job(Path(source), Path(dest)))
    resolved = [job.dest.resolve() for job in jobs]
    for path in resolved:
        if resolved.count(path) > 1:
            raise click.UsageError(f"--template: {path} is rendered twice")
    return jobs


def _wait(text: str) -> tuple[float, float]:
    from gossip_registry.render.settle import parse_wait

    try:
        return parse_wait(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--wait") from None


def _timeout(text: str) -> float:
    from gossip_registry.config.values import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--exec-timeout") from None
    if seconds <= 0:
        raise click.BadParameter("must be more than 0s", param_hint="--exec-timeout")
    return seconds


@click.command()
@click.option(
    "--template",
    "templates",
    multiple=True,
    required=True,
    metavar="SRC[:DEST]",
    help="Jinja2 template to render: SRC with --out DEST, or SRC:DEST (repeatable).",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Where the one SRC renders."
)
@click.option(
    "--exec",
    "command",
    metavar="CMD",
    help="Shell command run after a round that wrote a file (e.g. nginx -s reload); "
    "a failure is reported and the command retried at the next change.",
)
@click.option(
    "--exec-timeout",
    default="60s",
    show_default=True,
    metavar="DURATION",
    help="Kill CMD (and count it failed) after this long.",
)
@click.option(
    "--wait",
    default="0s",
    show_default=True,
    metavar="MIN[:MAX]",
    help="Render once the registry has been quiet for MIN, at the latest MAX after the "
    "first change (default MAX: 4 x MIN).",
)
@click.option("--once", is_flag=True, help="Render once, run CMD if a file changed, and exit.")
@click.option(
    "--http",
    "http",
    multiple=True,
    metavar="HOST:PORT|URL",
    help="HTTP API of a node to follow (repeat for fail-over).  [default: the first node "
    "of ./cluster.toml, else 127.0.0.1:8501]",
)
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Cluster file to find the node in.",
)
@click.option("--node", "node_name", metavar="NAME", help="Node of the cluster file.")
@click.option(
    "--token",
    envvar="GOSSIP_REGISTRY_TOKEN",
    metavar="TOKEN",
    help="Read token, if the node requires one (prefer env GOSSIP_REGISTRY_TOKEN).",
)
def render(
    templates: tuple[str, ...],
    out: Path | None,
    command: str | None,
    exec_timeout: str,
    wait: str,
    once: bool,
    http: tuple[str, ...],
    config_path: Path | None,
    node_name: str | None,
    token: str | None,
) -> None:
    """Render Jinja2 templates from the registry and keep them current.

    \b
    Template functions:
      services()                            [{name, instances}] by name
      service(NAME, tag=None, passing=True) [{id, address, port, tags, meta,
                                             weight, status, node}]
      nodes()                               [{name, address, port, state, meta}]

    \b
    Example (nginx upstreams, reloaded when they change):
      gossip-registry render --template upstreams.conf.j2 \\
          --out /etc/nginx/conf.d/upstreams.conf --wait 1s:5s \\
          --exec 'nginx -s reload'
    """
    import trio

    from gossip_registry.cli.client import _api
    from gossip_registry.client import AsyncRegistryClient
    from gossip_registry.render.loop import RenderFailure, Settings, render_loop
    from gossip_registry.render.template import TemplateFailure

    jobs = parse_jobs(templates, out)
    settings = Settings(
        jobs,
        command=command,
        wait=_wait(wait),
        once=once,
        command_timeout=_timeout(exec_timeout),
    )
    apis = [_api(h, config_path, node_name, 5.0, token) for h in http] or [
        _api(None, config_path, node_name, 5.0, token)
    ]

    def log(line: str) -> None:
        click.echo(line, err=True)

    async def main() -> bool:
        async with AsyncRegistryClient([api.url for api in apis], token=apis[0].token) as client:
            log(f"render: {len(jobs)} template(s) from {', '.join(a.address for a in apis)}")
            return await render_loop(client, settings, log)

    try:
        ok = trio.run(main)
    except TemplateFailure as exc:
        raise Failure(f"template error: {exc}") from None
    except RenderFailure as exc:
        raise Failure(str(exc)) from None
    if not ok:
        raise Failure(f"--exec {command!r} failed")
