"""The protocol core and the registry are sans-I/O: they may not reach the world.

Checked on the source, so a forbidden import fails here even if no test
happens to execute the line that uses it.
"""

import ast
from pathlib import Path

import pytest

import gossip_registry

PACKAGE = Path(gossip_registry.__file__).parent
CLIENT_PURE = ["balancers", "cache", "core", "ejection", "errors", "instance", "nodes", "plans"]
"""The client library's state and plans; only its two drivers (aio, sync) do I/O."""
PURE = sorted(
    [
        *PACKAGE.glob("core/*.py"),
        *PACKAGE.glob("registry/*.py"),
        *(PACKAGE / "client" / f"{name}.py" for name in CLIENT_PURE),
    ]
)
FORBIDDEN = {"trio", "socket", "time", "asyncio", "threading", "os", "select", "selectors", "anyio"}
RANDOM_NAMES_ALLOWED = {"Random"}


@pytest.mark.parametrize("path", PURE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pure_module_imports_no_io_clock_or_global_random(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
            if node.module == "random":
                assert {a.name for a in node.names} <= RANDOM_NAMES_ALLOWED, path
        else:
            roots = set()
        assert not roots & FORBIDDEN, f"{path} imports {roots & FORBIDDEN}"
        module = node.module if isinstance(node, ast.ImportFrom) else None
        if module and module.startswith("gossip_registry."):
            layer = module.split(".")[1]
            allowed = {"client"} if path.parent.name == "client" else {"core", "registry"}
            assert layer in allowed, f"{path} imports {module}"
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
        ):
            assert node.attr in RANDOM_NAMES_ALLOWED, f"{path} uses random.{node.attr}"


def test_registry_does_not_depend_on_the_core() -> None:
    for path in PACKAGE.glob("registry/*.py"):
        assert "gossip_registry.core" not in path.read_text(), path
