"""raise_open_files_limit: the soft limit goes up to the hard one, never past it."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from gossip_registry.runtime.fdlimit import raise_open_files_limit


@pytest.fixture
def restored_limit() -> Iterator[tuple[int, int]]:
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        yield limits
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_a_lowered_soft_limit_is_raised_to_the_hard_one(restored_limit: tuple[int, int]) -> None:
    hard = restored_limit[1]
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"needs a finite hard limit above 256, not {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    assert raise_open_files_limit() == (256, hard)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)


def test_a_soft_limit_already_at_the_hard_one_is_left_alone(
    restored_limit: tuple[int, int],
) -> None:
    soft, hard = restored_limit
    if hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard

    before, after = raise_open_files_limit()

    assert before == after == soft
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[1] == hard
