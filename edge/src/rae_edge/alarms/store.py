"""The alarms' own state in the node's DuckDB file: which alarm is open on which incident,
its count and duration (``alarm_state``), and the payloads set aside (``alarm_rejects``).

The incidents themselves go through the node's incident write (:mod:`.writer`). These
tables are created here (``IF NOT EXISTS``) rather than in the store's migrations, so the
feature adds no schema version; they hold nothing that syncs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rae_edge.store.duck import DuckStore

_DDL = [
    """CREATE TABLE IF NOT EXISTS alarm_state (
        tenant_id VARCHAR NOT NULL, source VARCHAR NOT NULL, alarm_key VARCHAR NOT NULL,
        machine_id VARCHAR NOT NULL, error_code VARCHAR NOT NULL, incident_id VARCHAR NOT NULL,
        text VARCHAR NOT NULL, severity INTEGER NOT NULL, active BOOLEAN NOT NULL,
        raised_at TIMESTAMPTZ NOT NULL, cleared_at TIMESTAMPTZ, last_at TIMESTAMPTZ NOT NULL,
        count INTEGER NOT NULL, PRIMARY KEY (tenant_id, source, alarm_key))""",
    """CREATE TABLE IF NOT EXISTS alarm_rejects (
        rejected_at TIMESTAMPTZ NOT NULL, source VARCHAR NOT NULL, reason VARCHAR NOT NULL,
        topic VARCHAR, payload BLOB)""",
]
_COLS = ("tenant_id", "source", "alarm_key", "machine_id", "error_code", "incident_id", "text",
         "severity", "active", "raised_at", "cleared_at", "last_at", "count")


@dataclass
class AlarmState:
    """The newest incident of one alarm (one tag, metric or condition of a source)."""

    tenant_id: str
    source: str
    alarm_key: str
    machine_id: str
    error_code: str
    incident_id: str
    text: str
    severity: int
    active: bool
    raised_at: datetime
    cleared_at: datetime | None
    last_at: datetime  # the newest source timestamp applied (older ones are replays)
    count: int  # how many times it was raised on this incident (chattering)

    @property
    def duration_s(self) -> float | None:
        if self.cleared_at is None:
            return None
        return round((self.cleared_at - self.raised_at).total_seconds(), 3)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "key": self.alarm_key, "machine_id": self.machine_id,
                "error_code": self.error_code, "incident_id": self.incident_id,
                "text": self.text, "severity": self.severity,
                "state": "active" if self.active else "cleared",
                "raised_at": self.raised_at.isoformat(),
                "cleared_at": self.cleared_at.isoformat() if self.cleared_at else None,
                "duration_s": self.duration_s, "count": self.count}


class AlarmStore:
    def __init__(self, duck: DuckStore) -> None:
        self.duck = duck
        with duck.transaction() as cur:
            for ddl in _DDL:
                cur.execute(ddl)

    def load(self, tenant_id: str) -> dict[tuple[str, str], AlarmState]:
        rows = self.duck.query_dicts(
            f"SELECT {', '.join(_COLS)} FROM alarm_state WHERE tenant_id = ?", [tenant_id])
        out: dict[tuple[str, str], AlarmState] = {}
        for r in rows:
            for k in ("raised_at", "cleared_at", "last_at"):
                if r[k] is not None:
                    r[k] = r[k].astimezone(UTC)
            st = AlarmState(**r)
            out[(st.source, st.alarm_key)] = st
        return out

    def save(self, states: list[AlarmState]) -> None:
        if not states:
            return
        # one statement for the batch (executemany runs one statement per row)
        row = "(" + ", ".join(["?"] * len(_COLS)) + ")"
        with self.duck.transaction() as cur:
            cur.execute(
                f"INSERT OR REPLACE INTO alarm_state ({', '.join(_COLS)}) VALUES "
                + ", ".join([row] * len(states)),
                [getattr(s, c) for s in states for c in _COLS])

    def reject(self, source: str, reason: str, topic: str | None, payload: bytes | None) -> None:
        with self.duck.transaction() as cur:
            cur.execute("INSERT INTO alarm_rejects VALUES (?, ?, ?, ?, ?)",
                        [datetime.now(UTC), source, reason[:2000], topic,
                         payload[:65536] if payload else None])

    def rejects(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.duck.query_dicts(
            "SELECT rejected_at, source, reason, topic, octet_length(payload) AS size "
            "FROM alarm_rejects ORDER BY rejected_at DESC LIMIT ?", [limit])
        return [json.loads(json.dumps(r, default=str)) for r in rows]
