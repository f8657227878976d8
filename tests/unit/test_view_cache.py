"""ViewCache: a rendering is reused while discover's answer holds the same Entry objects."""

from __future__ import annotations

from dataclasses import replace

from gossip_registry.api.view_cache import ViewCache
from gossip_registry.registry.entry import Entry
from tests.unit.test_codec import make_entry


class CountingRender:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, entries: list[Entry]) -> list[int]:
        self.calls += 1
        return [e.port for e in entries]


def test_the_same_entries_reuse_the_rendering_even_in_a_new_list() -> None:
    render = CountingRender()
    cache = ViewCache(render)
    entries = [make_entry(instance_id="a", port=1), make_entry(instance_id="b", port=2)]

    assert cache.get("web", entries) == [1, 2]
    assert cache.get("web", list(entries)) == [1, 2]
    assert render.calls == 1


def test_a_replaced_added_or_removed_entry_renders_again() -> None:
    render = CountingRender()
    cache = ViewCache(render)
    first = make_entry(instance_id="a", port=1)
    cache.get("web", [first])

    # Equal content in a new object still renders again: identity is the contract.
    assert cache.get("web", [replace(first, port=9)]) == [9]
    assert cache.get("web", [first, make_entry(instance_id="b", port=2)]) == [1, 2]
    assert cache.get("web", []) == []
    assert render.calls == 4


def test_keys_are_separate_and_the_cache_starts_over_past_its_size() -> None:
    render = CountingRender()
    cache = ViewCache(render, max_size=2)
    entries = [make_entry(port=5)]
    for key in ("a", "b", "a", "b"):
        cache.get(key, entries)
    assert render.calls == 2
    cache.get("c", entries)  # a third key: the cache is emptied, then holds c
    cache.get("a", entries)
    assert render.calls == 4


def test_a_new_version_renders_again_and_replaces_the_old_rendering_in_place() -> None:
    render = CountingRender()
    cache = ViewCache(render, max_size=2)
    entries = [make_entry(port=5)]
    cache.get("web", entries, 1)
    cache.get("web", entries, 1)
    assert render.calls == 1
    for version in range(2, 50):  # the service changes again and again: one slot, not fifty
        cache.get("web", entries, version)
    assert render.calls == 49
    cache.get("other", entries, 1)
    cache.get("web", entries, 49)  # still cached: versions did not fill the cache
    assert render.calls == 50
