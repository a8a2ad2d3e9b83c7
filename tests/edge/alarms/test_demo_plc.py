"""The demo's alarms section: the sample plant's simulated PLC (in the node's process)
raises E404 on press-1 over Basic256Sha256, and the node turns it into an incident and an
``alarm`` push, with no hardware."""

from __future__ import annotations

from rae_edge.node import EdgeNode
from rae_tablet_api.demo_plant import demo_alarms
from tests.edge.alarms.conftest import alarm_incidents, alarm_pushes, running, wait_until
from tests.fixtures.mosquitto import free_port


def test_simulated_plc_raises_e404_on_press_1(plant: EdgeNode) -> None:
    section = demo_alarms(free_port())
    section["simulated_plc"].update(every_s=1.5, active_s=0.5)
    with running(plant, section["sources"], simulated_plc=section["simulated_plc"]) as svc:
        assert svc.sources[0].wait_state("connected", 30), svc.health()
        # raised twice within the chatter window: one incident counting both
        wait_until(lambda: any(s.count >= 2 for s in svc.states()), timeout=30,
                   what="E404 raised twice")
        [inc] = alarm_incidents(plant)
        assert inc.error_code == "E404" and inc.source == "alarm:sample-plc"
        assert [m.payload["state"] for m in alarm_pushes(plant)][:2] == ["active", "cleared"]
        assert (plant.data_dir / "alarms" / "pki" / "sample-plc" / "client-cert.der").is_file()
