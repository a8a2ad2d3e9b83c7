"""Shared pytest set-up: paths, the shared-data skip, and fixture plugins in tests/fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Every module in tests/fixtures is a fixture plugin (mosquitto, postgres, nodes, ...).
pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (ROOT / "tests" / "fixtures").glob("*.py")
    if p.stem != "__init__"
)


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or a skip that says why when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared data sets live beside the repo in ../shared")
    return path


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests leave files worth looking at (screenshots, reports): test-output/."""
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    return out
