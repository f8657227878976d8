"""Fuzz targets of ``fuzz_targets.py``: brief, derandomized runs (scripts/fuzz.py: long ones)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.property.fuzz_targets import TARGETS, fuzz_test

BRIEF = settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_hostile_input_never_crashes_nor_corrupts(name: str) -> None:
    BRIEF(fuzz_test(name))()
