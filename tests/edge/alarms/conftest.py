"""A node with a small plant (press-1 with a past E404, its fix and a correction), and
helpers to run the alarm service against real servers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rae_edge import config
from rae_edge.alarms.config import AlarmsSettings
from rae_edge.alarms.service import AlarmService
from rae_edge.node import EdgeNode
from rae_edge.push import PushMessage
from rae_sync.domain import Incident, Machine

TENANT = "acme"
PAST_FIX = "Replaced proximity sensor X"
CORRECTION = "Sensor X was actually loose, not broken: tighten the bracket"


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[EdgeNode]:
    node = EdgeNode(config.load(None, data_dir=tmp_path / "node",
                                node={"tenant_id": TENANT}))
    node.duck.upsert_machines([
        Machine(tenant_id=TENANT, id="press-1", name="Hydraulic press 1",
                qr_code="P-PRESS-1", site="plant-1", line="Line A"),
        Machine(tenant_id=TENANT, id="cnc-2", name="CNC mill 2", qr_code="P-CNC-2",
                site="plant-1", line="Line A")])
    past = Incident(tenant_id=TENANT, machine_id="press-1",
                    occurred_at=datetime(2026, 2, 3, 9, 15, tzinfo=UTC), error_code="E404",
                    symptom="E404 position sensor fault, ram stopped", action=PAST_FIX)
    node.memory.add_incidents(TENANT, [past])
    node.memory.add_correction(TENANT, machine_id="press-1", text=CORRECTION,
                               author="tester", target_id=past.id)
    yield node
    node.close()


@contextmanager
def running(node: EdgeNode, sources: list[dict[str, Any]], **kw: Any) -> Iterator[AlarmService]:
    """An alarm service with these sources, started; stopped at the end."""
    svc = AlarmService(node.alarm_deps, AlarmsSettings.model_validate(
        {"sources": sources, "retry_min_s": 0.2, "retry_max_s": 1.0, **kw}))
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def wait_until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or cond}")


def alarm_pushes(node: EdgeNode, machine_id: str = "press-1") -> list[PushMessage]:
    return [m for m in node.push.since(TENANT, [machine_id], 0) if m.type == "alarm"]


def alarm_incidents(node: EdgeNode, machine_id: str = "press-1") -> list[Incident]:
    return [i for i in node.duck.incidents_for_machine(TENANT, machine_id)
            if i.source.startswith("alarm:")]


def settle(svc: AlarmService, quiet_s: float = 0.6) -> None:
    """Waits until nothing is queued and the writer has been idle a moment."""
    p = svc.processor
    assert p is not None
    wait_until(lambda: svc.inbox.depth() == 0 and p.idle.is_set(), what="alarm writer idle")
    time.sleep(quiet_s)
    wait_until(lambda: svc.inbox.depth() == 0 and p.idle.is_set(), what="alarm writer idle")
