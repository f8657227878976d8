"""The code stays ruff-clean: CI fails on a lint error, not only a reviewer."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_finds_nothing(command: list[str]) -> None:
    targets = [str(ROOT / p) for p in ("gossip_registry", "tests", "scripts", "examples")]
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *targets],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
