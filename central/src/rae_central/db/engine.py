"""Engine creation: one place for pool settings."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """A pooled engine; ``pool_pre_ping`` so a database restart costs one retry, not a crash."""
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
