"""The sample plant loads into a node, tells the E404 story, and loads idempotently."""

from __future__ import annotations

from rae_edge.node import EdgeNode
from rae_edge.sample_plant import load_sample_plant


def test_sample_plant_loads_once(node: EdgeNode) -> None:
    summary = load_sample_plant(node)
    assert summary.startswith("4 machines; added ") and "rejected 0" in summary
    machine = node.duck.find_machine_by_qr("acme", "PLANT1-PRESS-1")
    assert machine is not None and machine.id == "press-1"
    press = node.duck.incidents_for_machine("acme", "press-1")
    fixes = [i.action for i in press if i.error_code == "E404"]
    assert len(fixes) == 3 and any("Replaced sensor X" in (f or "") for f in fixes)
    manual = node.lance.rows("kind = 'manual' AND array_has(error_codes, 'E404')",
                             ["section", "machine_id"], 10)
    assert {"4 Troubleshooting > 4.2 Sensor faults"} <= {m["section"] for m in manual}
    shift = node.lance.rows("kind = 'shift' AND machine_id = 'press-1'", ["text"], 10)
    assert any("replaced sensor X" in s["text"] for s in shift)
    before = (node.lance.count(), node.duck.query("SELECT count(*) FROM incidents")[0][0])
    again = load_sample_plant(node)
    assert "added 0," in again
    assert (node.lance.count(), node.duck.query("SELECT count(*) FROM incidents")[0][0]) == before
