"""The render loop: follow the views the templates read, rewrite files, run the command.

Theory of operation: each round renders every template with the answers
at hand (``template.render``). Views it read but has no answer for get a
follower task (``AsyncRegistryClient.watch``, ``watch_services``,
``watch_members``: blocking queries, one per view whatever the number of
templates reading it), and the round is retried when they answer; views no
template reads any more lose theirs. A complete round writes each file
whose text changed (``output.write_if_changed``) and then runs the command
once, if a file was written or the last run failed. The loop then waits for
an answer to change, and for the registry to settle (``settle.Quiescence``).

What stops it (``RenderFailure``, ``TemplateFailure``): a template error, a
node refusing the query (a bad token: no other node would say otherwise),
an unwritable destination; with ``once``, also no node answering. A node
that does not answer while the loop runs, or a failing command, is logged
and retried: the files keep the last good rendering.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from gossip_registry.client import AsyncRegistryClient, NoNodeAvailable, RegistryError
from gossip_registry.render.output import write_if_changed
from gossip_registry.render.settle import Quiescence
from gossip_registry.render.template import (
    NODES,
    SERVICES,
    Dependency,
    Template,
    TemplateFailure,
    load_template,
    render,
)

__all__ = ["Job", "RenderFailure", "Settings", "render_loop", "run_command"]

RETRY_MAX = 10.0
"""Seconds between attempts at most, while no node answers a view's first query."""


class RenderFailure(Exception):
    """Why the renderer cannot go on (one line, for the operator)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One ``--template``: the template file and the file it renders to."""

    source: Path
    dest: Path


@dataclass(frozen=True, slots=True)
class Settings:
    jobs: Sequence[Job]
    command: str | None = None
    """Run through ``/bin/sh -c`` after a round that wrote a file (nginx -s reload)."""
    wait: tuple[float, float] = (0.0, 0.0)
    """Seconds of quiet before rendering, and the most a burst of changes may delay it."""
    once: bool = False
    command_timeout: float = 60.0
    """Seconds before a command still running is killed (and counted as failed)."""


Log = Callable[[str], None]


class Runner(Protocol):
    def __call__(self, command: str, timeout: float, log: Log) -> Awaitable[bool]: ...


async def run_command(command: str, timeout: float, log: Log) -> bool:
    """Run ``command`` with the shell; True if it exited 0 within ``timeout`` seconds.

    Its output goes to ours. A failure is logged, never raised: the caller
    retries at the next change.
    """
    try:
        with trio.move_on_after(timeout) as scope:
            done = await trio.run_process(
                ["/bin/sh", "-c", command], check=False, stdin=subprocess.DEVNULL
            )
    except OSError as exc:
        log(f"render: cannot run {command!r}: {exc}; retrying at the next change")
        return False
    if scope.cancelled_caught:
        log(
            f"render: command {command!r} still running after {timeout:g}s: killed; "
            "retrying at the next change"
        )
        return False
    if done.returncode != 0:
        log(
            f"render: command {command!r} exited with status {done.returncode}; "
            "retrying at the next change"
        )
        return False
    log(f"render: ran {command!r}")
    return True


class _Views:
    """The answers the templates read, kept current by one follower task per view."""

    def __init__(
        self, client: AsyncRegistryClient, nursery: trio.Nursery, log: Log, retry: bool
    ) -> None:
        self.data: dict[Dependency, Any] = {}
        self.changed = trio.Event()
        self.failure: RenderFailure | None = None
        self._client, self._nursery, self._log, self._retry = client, nursery, log, retry
        self._scopes: dict[Dependency, trio.CancelScope] = {}

    def follow(self, deps: frozenset[Dependency]) -> None:
        for dep in deps - self._scopes.keys():
            scope = self._scopes[dep] = trio.CancelScope()
            self._nursery.start_soon(self._follow, dep, scope)

    def only(self, deps: frozenset[Dependency]) -> None:
        """Stop following views outside ``deps`` and forget their answers."""
        for dep in self._scopes.keys() - deps:
            self._scopes.pop(dep).cancel()
            self.data.pop(dep, None)

    def _answers(self, dep: Dependency) -> AsyncGenerator[Any, None]:
        if dep == SERVICES:
            return self._client.watch_services()
        if dep == NODES:
            return self._client.watch_members()
        return self._client.watch(dep.name, dep.tag, dep.passing, shared=False)

    async def _follow(self, dep: Dependency, scope: trio.CancelScope) -> None:
        attempt = 0
        with scope:
            while True:
                try:
                    async with aclosing(self._answers(dep)) as answers:
                        async for value in answers:
                            attempt = 0
                            self.data[dep] = value
                            self._wake()
                except NoNodeAvailable as exc:
                    if not self._retry:
                        return self._fail(f"{dep}: {exc}")
                    attempt += 1
                    delay = min(RETRY_MAX, 0.5 * 2**attempt)
                    self._log(f"render: {dep}: {exc}; trying again in {delay:g}s")
                    await trio.sleep(delay)  # a backoff, not a synchronisation
                except RegistryError as exc:
                    return self._fail(f"{dep}: {exc}")

    def _fail(self, message: str) -> None:
        self.failure = RenderFailure(message)
        self._wake()

    def _wake(self) -> None:
        self.changed.set()

    async def wait(self, deadline: float = float("inf")) -> bool:
        """Wait for an answer to change (True), or ``deadline`` (False).

        Raises:
            RenderFailure: a follower cannot go on.
        """
        with trio.move_on_at(deadline):
            await self.changed.wait()
        self.changed = trio.Event()
        if self.failure is not None:
            raise self.failure
        return trio.current_time() < deadline


async def render_loop(
    client: AsyncRegistryClient,
    settings: Settings,
    log: Log,
    runner: Runner = run_command,
) -> bool:
    """Render ``settings.jobs`` until cancelled; with ``once``, one complete round.

    Returns:
        With ``once``: whether the command (if any) succeeded.

    Raises:
        TemplateFailure: a template cannot be parsed or rendered.
        RenderFailure: a node refused the query, a destination cannot be
            written, or (with ``once``) no node answered.
    """
    templates = [load_template(job.source) for job in settings.jobs]
    failure: TemplateFailure | RenderFailure | None = None
    async with trio.open_nursery() as nursery:
        views = _Views(client, nursery, log, retry=not settings.once)
        try:
            ok = await _rounds(views, templates, settings, log, runner)
        except (TemplateFailure, RenderFailure) as exc:
            failure = exc  # raised outside the nursery: not wrapped in an ExceptionGroup
        nursery.cancel_scope.cancel()  # the followers
    if failure is not None:
        raise failure
    return ok


async def _rounds(
    views: _Views, templates: list[Template], settings: Settings, log: Log, runner: Runner
) -> bool:
    """Render rounds until cancelled; with ``once``, one, and whether its command succeeded."""
    quiet = Quiescence(*settings.wait)
    command_failed = False
    while True:
        views.changed = trio.Event()  # what changes from here on makes another round
        renderings = [render(t, views.data) for t in templates]
        needed = frozenset().union(*(r.needs for r in renderings))
        views.follow(needed)
        if any(r.missing for r in renderings):
            await views.wait()
            continue
        views.only(needed)
        wrote = False
        for job, rendering in zip(settings.jobs, renderings, strict=True):
            try:
                if write_if_changed(job.dest, rendering.text):
                    log(f"render: wrote {job.dest}")
                    wrote = True
            except OSError as exc:
                raise RenderFailure(f"cannot write {job.dest}: {exc}") from None
        if settings.command is not None and (wrote or command_failed):
            command_failed = not await runner(settings.command, settings.command_timeout, log)
        if settings.once:
            return not command_failed
        await views.wait()
        quiet.changed(trio.current_time())
        while await views.wait(quiet.due() or 0.0):
            quiet.changed(trio.current_time())
        quiet.rendered()
