"""The trio node and the simulator drive the core through one interface (``core/driver.py``).

Checked on the source: every entry point either driver calls on the core is
declared in ``Driven``, both hand it every kind of input, ``Protocol``
implements each with the declared signature, and the simulator's interface
extends ``Driven`` instead of restating it (its copy had drifted once).
"""

from __future__ import annotations

import ast
import inspect
import random
from pathlib import Path

import gossip_registry
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.driver import Driven
from gossip_registry.core.protocol import Protocol
from gossip_registry.sim.process import SimNode

PACKAGE = Path(gossip_registry.__file__).parent
ENTRY_POINTS = {name for name in vars(Driven) if not name.startswith("_")}
SIM_READS = {"seed_members", "member_states"}
"""What ``SimNode`` adds: the simulator's bootstrap and its view of membership."""


def core_calls(core_names: set[str], *modules: str) -> set[str]:
    """Methods called on the core object, named one of ``core_names`` (``protocol``,
    ``self._protocol``, ``proc.node``), in the given modules of the package."""
    called: set[str] = set()
    for module in modules:
        tree = ast.parse((PACKAGE / module).read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            method = node.func.attr
            if name in core_names and method not in SIM_READS:
                called.add(method)
    return called


RUNTIME = core_calls(
    {"protocol", "_protocol"},
    "runtime/node.py",
    "runtime/threaded.py",
    "runtime/storage/durability.py",
)
SIMULATOR = core_calls({"node"}, "sim/cluster.py", "sim/engine.py", "sim/checks.py")


def test_both_drivers_call_only_entry_points_of_the_shared_interface() -> None:
    assert RUNTIME <= ENTRY_POINTS, RUNTIME - ENTRY_POINTS
    assert SIMULATOR <= ENTRY_POINTS, SIMULATOR - ENTRY_POINTS


def test_both_drivers_hand_the_core_every_kind_of_input() -> None:
    inputs = {name for name in ENTRY_POINTS if name.startswith("handle_")}
    assert inputs <= RUNTIME
    assert inputs <= SIMULATOR
    assert {"start", "join_at_start", "leave", "register", "deregister"} <= RUNTIME & SIMULATOR


def test_the_core_implements_each_entry_point_with_the_declared_signature() -> None:
    for name in ENTRY_POINTS:
        declared = inspect.signature(getattr(Driven, name))
        assert inspect.signature(getattr(Protocol, name)) == declared, name
    core: Driven = Protocol(ProtocolConfig(), "me", ("198.18.0.1", 1), rng=random.Random(1), now=0)
    assert core.start(0.0)


def test_the_simulator_extends_the_interface_instead_of_restating_it() -> None:
    assert Driven in SimNode.__mro__
    assert not ENTRY_POINTS & set(vars(SimNode)), "restated in sim/process.py"
