"""Engine creation: one place for pool settings."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine


def make_engine(url: str, pool_size: int = 5, application_name: str | None = None) -> Engine:
    """A pooled engine; ``pool_pre_ping`` so a database restart costs one retry, not a crash.
    ``application_name`` shows in ``pg_stat_activity`` (which process holds a connection,
    as which role)."""
    args = {"application_name": application_name} if application_name else {}
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                         connect_args=args)
