"""Templates and what they read from the registry.

Rules: no I/O beyond Jinja2 loading the template files; no trio. The data
a rendering reads is handed in as a mapping from ``Dependency`` to the last
answer of that view, so the same template renders identically in tests, in
``--once`` and in the long-running loop.

How a template's views are found (consul-template's approach): rendering
records each call of ``services()``, ``service(...)`` and ``nodes()``. A
call whose view has no answer yet returns an empty list and is reported as
missing; the caller fetches it and renders again. A template that loops
over ``services()`` and calls ``service(s.name)`` thus needs two rounds,
and the set of views it follows changes as services come and go.

Why Jinja2 (the one dependency this adds): it is the template language
Python operators already know (Ansible, Salt, Flask), with loops, filters,
macros and ``include``, precise line numbers in its errors, and no
evaluation of arbitrary Python. Writing our own would be a worse Jinja.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from gossip_registry.client import Instance, Member

__all__ = [
    "NODES",
    "SERVICES",
    "Dependency",
    "Rendering",
    "ServiceSummary",
    "Template",
    "TemplateFailure",
    "load_template",
    "render",
]


class TemplateFailure(Exception):
    """A template that cannot be loaded or rendered; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Dependency:
    """A registry view a template reads: ``services``, ``nodes``, or one ``service`` query."""

    kind: str
    name: str = ""
    tag: str | None = None
    passing: bool = True

    def __str__(self) -> str:
        if self.kind != "service":
            return f"{self.kind}()"
        tag = "" if self.tag is None else f", tag={self.tag!r}"
        return f"service({self.name!r}{tag}, passing={self.passing})"


SERVICES = Dependency("services")
NODES = Dependency("nodes")


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """One entry of ``services()``: a service name and its live instances (any health)."""

    name: str
    instances: int


@dataclass(frozen=True, slots=True)
class Template:
    source: Path
    jinja: jinja2.Template


@dataclass(frozen=True, slots=True)
class Rendering:
    text: str
    needs: frozenset[Dependency]
    """Every view the template read (to follow)."""
    missing: frozenset[Dependency]
    """The views it read that had no answer yet: ``text`` is not final."""


def load_template(source: Path) -> Template:
    """Parse a template file; ``include`` and ``import`` resolve next to it.

    Raises:
        TemplateFailure: unreadable, or a syntax error (file and line named).
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(source.parent),
        undefined=jinja2.StrictUndefined,  # a typo is an error, not an empty upstream
        keep_trailing_newline=True,
        autoescape=False,  # configuration files, not HTML
    )
    try:
        return Template(source, env.get_template(source.name))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateFailure(f"{exc.filename or source}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateFailure(f"{source}: template not found ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateFailure(f"{source}: cannot read: {exc}") from None


def _where(template: Template, exc: BaseException) -> str:
    """``file:line`` of the innermost template frame (Jinja rewrites tracebacks to show them)."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.endswith(".py") and not f.filename.startswith("<")
    ]
    if frames:
        return f"{frames[-1].filename}:{frames[-1].lineno}"
    return str(template.source)


def render(template: Template, data: Mapping[Dependency, Any]) -> Rendering:
    """Render with the answers in ``data``.

    Raises:
        TemplateFailure: the template failed (an undefined name, a bad call,
            an error raised by a filter); the message names the line.
    """
    needs: set[Dependency] = set()
    missing: set[Dependency] = set()

    def read(dep: Dependency, convert: Callable[[Any], list[Any]]) -> list[Any]:
        needs.add(dep)
        if dep not in data:
            missing.add(dep)
            return []
        return convert(data[dep])

    def services() -> list[ServiceSummary]:
        return read(
            SERVICES,
            lambda counts: [ServiceSummary(n, c) for n, c in sorted(counts.items())],
        )

    def service(name: str, tag: str | None = None, passing: bool = True) -> list[Instance]:
        if not isinstance(name, str) or not name:
            raise TypeError(f"service(): name must be a non-empty string, got {name!r}")
        if tag is not None and not isinstance(tag, str):
            raise TypeError(f"service(): tag must be a string or None, got {tag!r}")
        if not isinstance(passing, bool):
            raise TypeError(f"service(): passing must be true or false, got {passing!r}")
        # Sorted, so that an answer in another order renders the same text (and no reload).
        return read(
            Dependency("service", name, tag, passing),
            lambda found: sorted(found, key=lambda i: (i.address, i.port, i.id)),
        )

    def nodes() -> list[Member]:
        return read(NODES, lambda members: sorted(members, key=lambda m: m.name))

    try:
        text = template.jinja.render(services=services, service=service, nodes=nodes)
    except Exception as exc:  # whatever a template does wrong: say where, and stop
        raise TemplateFailure(f"{_where(template, exc)}: {type(exc).__name__}: {exc}") from None
    return Rendering(text, frozenset(needs), frozenset(missing))
