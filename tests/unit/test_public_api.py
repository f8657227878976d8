"""The package's top-level names: each resolves, and importing the pure core stays light."""

from __future__ import annotations

import json
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


def loaded_after(code: str, modules: str) -> list[str]:
    """Which of ``modules`` (an iterable expression) a fresh interpreter holds after ``code``."""
    report = f"print(json.dumps(sorted(m for m in {modules} if m in sys.modules)))"
    script = f"import json, sys\n{code}\n{report}"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_pure_core_loads_no_trio_httpx_or_server() -> None:
    code = "import gossip_registry.core.protocol, gossip_registry.sim"
    assert loaded_after(code, "('trio', 'httpx', 'hypercorn', 'starlette')") == []


def test_an_agent_configured_without_dns_options_loads_no_dnspython_or_difflib() -> None:
    """dnspython (and importlib.metadata, email, zipfile behind it) cost an agent ~3 MiB."""
    code = (
        "from gossip_registry.cli.agent import config_from_flags\n"
        "config_from_flags('n1', bind='127.0.0.1:0', advertise=None, http='127.0.0.1:0',"
        " join=('127.0.0.1:7946',), data_dir=None, profile='lan')"
    )
    assert loaded_after(code, "('dns', 'difflib', 'importlib.metadata')") == []


def test_the_command_group_imports_a_command_only_when_it_runs() -> None:
    code = "from gossip_registry.cli import cli\ncli(['version'], standalone_mode=False)"
    commands = "[m for m in list(sys.modules) if m.startswith('gossip_registry.cli.')]"
    assert loaded_after(code, commands) == []
