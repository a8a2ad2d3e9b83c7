"""Fault tests reuse central's fixtures (a migrated database, a broker, enrolled nodes)."""

from tests.central.conftest import central  # noqa: F401 (a fixture, found by its name)
