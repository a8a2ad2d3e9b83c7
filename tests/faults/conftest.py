"""Fault tests reuse fixtures of other suites: central's (a migrated database, a broker,
enrolled nodes) and the voice tests' speech maker."""

from tests.central.conftest import central  # noqa: F401 (a fixture, found by its name)
from tests.voice.conftest import say  # noqa: F401 (espeak-ng speech, cached per session)
