"""The package's top-level names: each resolves, and importing the pure core stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gossip_registry


@pytest.mark.parametrize("name", gossip_registry.__all__)
def test_every_public_name_resolves_to_an_object_of_that_name(name: str) -> None:
    value = getattr(gossip_registry, name)
    assert value.__name__ == name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = gossip_registry.Nope


def test_importing_the_pure_core_loads_no_trio_httpx_or_server() -> None:
    code = (
        "import sys, gossip_registry.core.protocol, gossip_registry.sim;"
        "print(sorted(m for m in ('trio', 'httpx', 'hypercorn', 'starlette') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
