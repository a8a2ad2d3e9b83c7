"""The alarm writer on a real node: a clear and a re-raise queued together push a clear
that says cleared; with its own state lost (a restart after a crash), a replayed raise
finds its incident by the deterministic id and neither stores nor pushes it again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rae_edge.alarms.events import AlarmEvent
from rae_edge.alarms.inbox import Inbox
from rae_edge.alarms.processor import AlarmProcessor
from rae_edge.alarms.store import AlarmStore
from rae_edge.node import EdgeNode
from tests.edge.alarms.conftest import alarm_incidents, alarm_pushes

T0 = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)


def _ev(active: bool, s: float) -> AlarmEvent:
    return AlarmEvent("plc-1", "ns=2;s=press-1.ErrorCode", "press-1", active,
                      T0 + timedelta(seconds=s), "E404" if active else None,
                      "E404 on press-1" if active else "")


def _processor(node: EdgeNode, inbox: Inbox) -> AlarmProcessor:
    return AlarmProcessor(node.alarm_deps, AlarmStore(node.duck), inbox, chatter_window_s=60)


def test_clear_then_reraise_in_one_batch(plant: EdgeNode) -> None:
    inbox = Inbox(10)
    proc = _processor(plant, inbox)
    inbox.put(_ev(True, 0))
    proc.process(inbox.take(0))
    inbox.put(_ev(False, 5))   # these two wait together:
    inbox.put(_ev(True, 8))    # a clear, then the same code again 3 s later
    proc.process(inbox.take(0))
    assert plant.push.flush()  # clears are pushed without waiting for their flush
    states = [m.payload["state"] for m in alarm_pushes(plant)]
    assert states == ["active", "cleared"]
    [st] = proc.states.values()
    assert (st.active, st.count) == (True, 2)
    assert len(alarm_incidents(plant)) == 1


def test_replay_after_lost_state_stores_and_pushes_nothing(plant: EdgeNode) -> None:
    inbox = Inbox(10)
    proc = _processor(plant, inbox)
    inbox.put(_ev(True, 0))
    proc.process(inbox.take(0))
    with plant.duck.transaction() as cur:
        cur.execute("DELETE FROM alarm_state")  # as if the node died before saving it
    fresh = _processor(plant, inbox)
    assert fresh.states == {}
    inbox.put(_ev(True, 0))  # the source re-reads the same raise
    fresh.process(inbox.take(0))
    assert len(alarm_incidents(plant)) == 1 and len(alarm_pushes(plant)) == 1
    assert fresh.counters.replays == 1
    [st] = fresh.states.values()  # the state is rebuilt on the same incident
    assert st.incident_id == alarm_incidents(plant)[0].id
