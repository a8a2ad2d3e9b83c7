"""One two-plant stack per test module (its start-up dominates a short test)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.fixtures.stack import Stack, two_plants


@pytest.fixture(scope="module")
def plants(module_stack_factory: Callable[..., Stack]) -> Stack:
    return two_plants(module_stack_factory)
