"""A flood never drops a distinct alarm and never grows without bound: repeats of an
alarm that is still queued are coalesced (and counted); a distinct alarm waits for room
in the source's thread. End to end, 1,000 DATA messages of one chattering metric are one
incident with its count."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from rae_edge.alarms.events import AlarmEvent
from rae_edge.alarms.inbox import Inbox
from rae_edge.node import EdgeNode
from tests.edge.alarms.conftest import alarm_incidents, running, settle, wait_until
from tests.edge.alarms.spb_node import SpbEdgeNode
from tests.edge.alarms.test_sparkplug import _source
from tests.fixtures.mosquitto import Mosquitto

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def _ev(key: str, active: bool, i: int, code: str = "E404") -> AlarmEvent:
    return AlarmEvent("s", key, "press-1", active, T0 + timedelta(milliseconds=i),
                      code if active else None)


def test_distinct_alarms_wait_for_room_and_none_is_lost() -> None:
    inbox = Inbox(size=8)
    taken: list[str] = []

    def produce() -> None:
        for i in range(200):
            inbox.put(_ev(f"tag-{i}", True, i))

    t = threading.Thread(target=produce)
    t.start()
    while t.is_alive() or inbox.depth():
        assert inbox.depth() <= 8
        for (_, key), pending in inbox.take(0.05):
            taken.extend(key for _ in pending.episodes)
        time.sleep(0.002)
    t.join()
    assert sorted(taken) == sorted(f"tag-{i}" for i in range(200))  # each once
    assert inbox.waited > 0 and inbox.coalesced == 0 and inbox.received == 200


def test_repeats_of_a_queued_alarm_are_coalesced_and_counted() -> None:
    inbox = Inbox(size=4)
    for i in range(0, 1000, 2):  # raise, clear, raise, ... of one tag
        inbox.put(_ev("tag", True, i))
        inbox.put(_ev("tag", False, i + 1))
    inbox.put(_ev("tag", True, 1000, code="E405"))  # then a different code
    [(_, pending)] = inbox.take(0)
    e404, e405 = pending.episodes
    assert (e404.code, e404.raises, e404.active) == ("E404", 500, False)
    assert e404.first.occurred_at == T0 and e404.cleared_at == T0 + timedelta(milliseconds=999)
    assert (e405.code, e405.raises, e405.active) == ("E405", 1, True)
    assert inbox.received == 1001 and inbox.coalesced == 999


def test_a_flood_of_one_chattering_metric_is_one_incident(
        plant: EdgeNode, mosquitto: Mosquitto) -> None:
    edge = SpbEdgeNode(mosquitto.port)
    try:
        with running(plant, [_source(mosquitto)], chatter_window_s=60) as svc:
            assert svc.sources[0].wait_state("connected", 20)
            wait_until(lambda: edge.ncmds, what="rebirth on connect")
            time.sleep(0.5)
            start = int(time.time() * 1000)
            for i in range(1000):
                edge.data("Alarms/ErrorCode", "E404" if i % 2 == 0 else "", start + i)
            wait_until(lambda: svc.sources[0].health()["events"] >= 1000, what="all events")
            settle(svc)
            [inc] = alarm_incidents(plant)
            [st] = [s for s in svc.states() if s.machine_id == "press-1"]
            assert st.incident_id == inc.id and st.count == 500 and not st.active
            h = svc.health()
            assert h["queue"]["coalesced"] > 0 and h["queue"]["dropped"] == 0
            assert h["chatter_counted"] == 499
    finally:
        edge.close()
