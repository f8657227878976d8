"""The web view's server side (api/ui): its files, the token rule, and its two reads, on real nodes.

The page itself is tested in a real browser in ``test_web_ui_browser.py``.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

import httpx
import trio

from gossip_registry.api.http import build_app
from gossip_registry.api.ui import MAX_TAGS_SHOWN
from gossip_registry.chaos.processes import ROOT
from gossip_registry.runtime.node import Node
from tests.integration import start_cluster, wait_until


@asynccontextmanager
async def client(node: Node, token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(node, read_token=token))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
        yield c


async def test_the_page_loads_without_a_token_but_its_data_needs_one() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            [(node, _)] = await start_cluster(nursery, 1)
            async with client(node, token="s3cret") as c:
                page = await c.get("/ui/")
                assert page.status_code == 200
                assert page.headers["content-type"].startswith("text/html")
                assert "script-src 'self'" in page.headers["content-security-policy"]
                for name in re.findall(r'(?:src|href)="([\w.]+)"', page.text):
                    asset = await c.get(f"/ui/{name}")
                    assert asset.status_code == 200, name
                    assert "s3cret" not in asset.text
                assert (await c.get("/ui/nope.js")).status_code == 404
                redirect = await c.get("/ui")
                assert (redirect.status_code, redirect.headers["location"]) == (308, "ui/")
                followed = await c.get("/ui", follow_redirects=True)
                assert (followed.status_code, str(followed.url)) == (200, "http://node/ui/")
                assert (await c.get("/v1/ui/overview")).status_code == 401
                assert (await c.get("/v1/ui/services/web")).status_code == 401
                bearer = {"Authorization": "Bearer s3cret"}
                assert (await c.get("/v1/ui/overview", headers=bearer)).status_code == 200
            nursery.cancel_scope.cancel()


def test_every_static_file_is_shipped_as_package_data() -> None:
    """pyproject's package-data glob must take the files along into a wheel."""
    shipped = {p.name for p in (files("gossip_registry.api.ui") / "static").iterdir()}
    assert {"index.html", "app.css", "app.js"} <= shipped
    assert '"api/ui/static/*"' in (ROOT / "pyproject.toml").read_text()


async def test_overview_shows_members_with_their_last_change_and_push_pull_agreement() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            (n0, _), (n1, _) = await start_cluster(nursery, 2)
            tags = [f"t{i:02d}" for i in range(MAX_TAGS_SHOWN + 3)]
            await n1.register("web", instance_id="web-1", port=80, tags=tags[:20])
            await n1.register("web", instance_id="web-2", port=81, tags=tags[20:])
            await wait_until(lambda: len(n0.discover("web")) == 2)
            # A push-pull that found nothing to repair, after both instances arrived.
            await wait_until(
                lambda: any(agreed and age < 0.5 for age, agreed in n0.peer_syncs().values()),
                timeout=10,
            )
            async with client(n0) as c:
                view = (await c.get("/v1/ui/overview")).json()
            assert view["node"]["name"] == "n0"
            assert view["node"]["digest"] == n0.status()["digest"] == n1.status()["digest"]
            assert view["self_preservation"]["active"] is False
            assert view["joining"] is False
            assert 0 <= view["data_age"] < 1.5
            members = {m["name"]: m for m in view["members"]}
            assert set(members) == {"n0", "n1"}
            assert members["n0"]["self"] is True
            assert members["n0"]["sync"] is None  # no push-pull with itself
            peer = members["n1"]
            assert (peer["state"], peer["self"]) == ("alive", False)
            assert peer["sync"]["agreed"] is True
            assert 0 <= peer["changed_ago"] < 30
            web = view["services"]["web"]
            assert (web["passing"], web["warning"], web["critical"], web["stale"]) == (2, 0, 0, 0)
            assert web["tags"] == tags[:MAX_TAGS_SHOWN]
            assert web["more_tags"] == 3
            nursery.cancel_scope.cancel()


async def test_one_service_lists_every_instance_whatever_its_health_with_checks() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            [(node, _)] = await start_cluster(nursery, 1)
            async with client(node) as c:
                body = {
                    "name": "api",
                    "id": "api-1",
                    "port": 9000,
                    "meta": {"version": "<b>2</b>"},
                    "weight": 7,
                    "checks": [{"id": "api-ttl", "ttl": "30s"}],
                }
                assert (await c.put("/v1/services", json=body)).status_code == 200
                report = await c.put("/v1/checks/api-ttl/fail", json={"output": "disk full"})
                assert report.status_code == 200
                before = time.time()
                [instance] = (await c.get("/v1/ui/services/api")).json()
                assert (await c.get("/v1/ui/services/none")).json() == []
            assert instance["id"] == "api-1"
            assert instance["status"] == "critical"
            assert (instance["meta"], instance["weight"]) == ({"version": "<b>2</b>"}, 7)
            assert instance["node"] == node.name
            assert instance["stale"] is False
            [check] = instance["checks"]
            assert (check["id"], check["status"], check["output"]) == (
                "api-ttl",
                "critical",
                "disk full",
            )
            assert before - 10 < instance["written"] <= before + 0.01
            nursery.cancel_scope.cancel()


async def test_during_self_preservation_the_overview_and_the_service_flag_stale_instances() -> None:
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            nodes = [n for n, _ in await start_cluster(nursery, 5)]
            for node in nodes:
                await node.register("web", instance_id=f"web-{node.name}", port=80)
            await wait_until(lambda: all(len(n.discover("web")) == 5 for n in nodes))
            survivor, victims = nodes[0], nodes[2:]
            for victim in victims:
                victim.stop()
            await wait_until(lambda: len(survivor.stale_keys()) == 3, timeout=15)
            async with client(survivor) as c:
                view = (await c.get("/v1/ui/overview")).json()
                instances = (await c.get("/v1/ui/services/web")).json()
            assert view["self_preservation"]["active"] is True
            assert view["services"]["web"]["stale"] == 3
            stale = sorted(i["id"] for i in instances if i["stale"])
            assert stale == sorted(f"web-{v.name}" for v in victims)
            states = {m["name"]: m["state"] for m in view["members"]}
            assert [states[v.name] for v in victims] == ["dead"] * 3
            nursery.cancel_scope.cancel()
