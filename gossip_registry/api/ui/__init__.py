"""The web view: ``GET /ui/`` serves a page that shows this node's view of the cluster.

Theory of operation: the page is three static files shipped in the package
(``static/``: HTML, CSS, a small script; no build step, nothing fetched from
elsewhere, so it works offline). They hold no data and are served without a
token (``api/auth.py``); the script then reads the API with the token the user
typed, kept in the tab's session storage and sent as a Bearer header:

- ``GET /v1/ui/overview`` (``overview`` below): this node, its members with
  the time since each last changed state and the outcome of its last push-pull
  with each (did the peer hold the same versions), the services with instance
  counts by health and their tags, self-preservation and the data's age;
- ``GET /v1/ui/services/{name}``: one service's instances, every health,
  with stale flags and the time of each instance's last write;
- ``GET /v1/events``: the event stream, which both fills the live feed and
  tells the page when to read the two above again, so it updates without a
  reload; a slow poll covers a stream that dropped.

Cost: ``overview`` visits every live instance (like ``/v1/services?health=true``),
for an operator's page, not a hot path. It lets other tasks run between services,
so the event loop is held for one service's instances at a time (10 to 15 ms per
10,000 instances on the 2-core test machine); the page asks again after events,
never more often than every 200 ms nor than 4 times its last read's duration.
"""

from __future__ import annotations

from collections import Counter
from importlib.resources import files
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import trio
from starlette.responses import RedirectResponse, Response

from gossip_registry.registry.entry import Health

if TYPE_CHECKING:  # node.py starts the HTTP API, which imports this module
    from gossip_registry.runtime.node import Node

__all__ = ["MAX_TAGS_SHOWN", "overview", "static_file"]

MAX_TAGS_SHOWN = 32
"""Tags listed per service in the overview (sorted; the rest are counted), so a service whose
instances carry thousands of distinct tags does not make every refresh huge."""

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}
_HEADERS = {
    # Nothing but our own files and API: a service name or meta value that looks like markup
    # can never load or run anything (the script also renders data as text only).
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def static_file(name: str) -> Response | None:
    """The response for ``/ui/<name>`` (``""`` is the page), or None if there is no such file."""
    if name == "":
        name = "index.html"
    media_type = _TYPES.get(name)
    if media_type is None:
        return None
    body = (files(__package__) / "static" / name).read_bytes()
    return Response(body, media_type=media_type, headers=_HEADERS)


def redirect_to_page() -> Response:
    """``/ui`` -> ``/ui/``, so the page's relative links resolve under ``/ui/``.

    Relative, like every link of the page, so a proxy may mount the API under a prefix.
    """
    return RedirectResponse("ui/", status_code=308)


async def overview(node: Node) -> dict[str, Any]:
    """The page's main document: this node, its members, the services, self-preservation.

    ``data_age`` is the seconds since this node last completed a push-pull
    with any peer (None if it never has): how old, at most, is what it knows
    of the others' registrations beyond what gossip brought since.
    """
    status = node.status()
    changes = node.member_changes()
    syncs = node.peer_syncs()
    members = []
    for member in node.members():
        sync = syncs.get((member.address, member.port))
        changed = changes.get(member.name)
        members.append(
            {
                **member.as_json(),
                "self": member.name == node.name,
                "changed_ago": None if changed is None else round(changed, 1),
                "sync": None if sync is None else {"ago": round(sync[0], 1), "agreed": sync[1]},
            }
        )
    services: dict[str, dict[str, Any]] = {}
    stale_keys = node.stale_keys()  # empty outside self-preservation: no per-entry lookup then
    for name in sorted(node.services()):
        await trio.lowlevel.checkpoint()  # other tasks run between services
        entries = node.discover(name, passing_only=False)
        by_status = Counter(map(attrgetter("status"), entries))
        tags: set[str] = set().union(*map(attrgetter("tags"), entries))
        stale = sum(e.key in stale_keys for e in entries) if stale_keys else 0
        shown = sorted(tags)[:MAX_TAGS_SHOWN]
        services[name] = {
            **{str(health): by_status[health] for health in Health},
            "stale": stale,
            "tags": shown,
            "more_tags": len(tags) - len(shown),
        }
    ages = [age for age, _ in syncs.values()]
    return {
        "node": {
            key: status[key]
            for key in ("name", "cluster", "address", "port", "incarnation", "digest", "entries")
        },
        "joining": node.joining,
        "self_preservation": status["self_preservation"],
        "data_age": round(min(ages), 1) if ages else None,
        "members": members,
        "services": services,
    }
