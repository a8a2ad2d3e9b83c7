"""QR payloads to machines (id, registered code, URL, the plant's pattern) on a real
DuckDB; the briefing summary and recurring problems from records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rae_edge.config import QrSettings
from rae_edge.errors import InvalidInputError, NotFoundError
from rae_edge.memory.briefing import recurring_problems, summarize
from rae_edge.memory.models import BriefIncident, CorrectionOut, MachineOut
from rae_edge.node import EdgeNode
from rae_edge.qr import candidates, resolve
from rae_sync.domain import Incident, Machine


def test_qr_forms(node: EdgeNode) -> None:
    node.duck.upsert_machines([
        Machine(tenant_id="acme", id="PRESS-07", name="Press", qr_code="LBL-0007"),
        Machine(tenant_id="globex", id="LATHE-1", name="Lathe", qr_code="G-1")])
    pattern = QrSettings(label_pattern=r"^ACME\|(?P<id>[A-Z0-9-]+)\|rev\d$")
    for payload in ("PRESS-07", "LBL-0007", " LBL-0007 ", "https://x.example/machines/PRESS-07",
                    "https://x.example/m/PRESS-07/", "http://x/#/machine/PRESS-07",
                    "https://x/scan?machine=PRESS-07&v=2", "ACME|PRESS-07|rev3"):
        assert resolve(node.duck, "acme", payload, pattern).id == "PRESS-07", payload
    with pytest.raises(NotFoundError, match="LATHE-1"):
        resolve(node.duck, "acme", "LATHE-1", pattern)  # another tenant's machine
    with pytest.raises(NotFoundError, match="ACME"):
        resolve(node.duck, "acme", "ACME|PRESS-07|revX", None)
    with pytest.raises(InvalidInputError, match="empty"):
        resolve(node.duck, "acme", "   ")
    with pytest.raises(InvalidInputError, match="named group"):
        candidates("x", QrSettings(label_pattern="^(.*)$"))
    with pytest.raises(InvalidInputError, match="label_pattern"):
        candidates("x", QrSettings(label_pattern="(?P<id>"))


def _inc(day: int, code: str | None, symptom: str, action: str | None) -> Incident:
    return Incident(tenant_id="acme", machine_id="P1", occurred_at=datetime(2026, 11, day,
                                                                            tzinfo=UTC),
                    error_code=code, symptom=symptom, action=action)


def test_recurring_by_code_and_by_symptom() -> None:
    incs = [_inc(20, "E404", "curtain", "a"), _inc(10, "E404", "curtain again", "b"),
            _inc(9, None, "Belt squeals!", None), _inc(5, None, "belt  squeals", "c"),
            _inc(4, "E1", "once", None)]
    rec = recurring_problems(incs)
    assert [(r.label, r.count) for r in rec] == [("E404", 2), ("Belt squeals!", 2)]
    assert rec[0].last_at.day == 20 and rec[0].first_at.day == 10


def test_summary_reads_from_the_records() -> None:
    inc = _inc(12, "E404", "Ram stops", "Replaced sensor X")
    cor = CorrectionOut(id="cor_1", machine_id="P1", text="sensor X was actually loose",
                        author="t", target_id=inc.id, method="typed",
                        valid_from=datetime(2026, 11, 15, 10, tzinfo=UTC))
    b = BriefIncident(id=inc.id, machine_id="P1", occurred_at=inc.occurred_at,
                      error_code="E404", symptom="Ram stops", action="Replaced sensor X",
                      corrections=[cor], superseded=True, superseded_by=["cor_1"])
    m = Machine(tenant_id="acme", id="P1", name="Press 1", qr_code="P1")
    text = summarize(m, [b], [], [], [], [])
    assert text == ("This machine had error E404 (Ram stops) on 12 Nov 2026. Fixed by: "
                    "Replaced sensor X. Correction (3 days later): sensor X was actually loose.")
    assert summarize(m, [], [], [], [], [], "E9") == (
        "Current error E9: not seen before on this machine. No incidents are recorded for "
        "Press 1 yet.")
    assert MachineOut.of(m).id == "P1"
