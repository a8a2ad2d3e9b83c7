"""The ``alarm`` push: one typed, frozen message (unknown fields refused).

One of the node's typed push kinds (:mod:`rae_edge.push_kinds`, whose schema list takes it
in; its JSON Schema is committed as ``sync/schemas/push/alarm.json``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from rae_edge.memory.models import BriefIncident, MachineOut, ManualSection
from rae_edge.push_kinds import PushBody


class AlarmBriefing(BaseModel):
    """The machine's briefing for the alarm's error code, in short."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    machine: MachineOut
    summary: str
    error_code: str
    incidents: list[BriefIncident] = Field(description="earlier incidents with this code, "
                                           "newest first, each with its fix and corrections")
    manual_sections: list[ManualSection]
    drift_alerts: list[dict[str, Any]]
    incident_count: int


class AlarmPush(PushBody):
    """A machine raised (``state: active``) or cleared an error code at its source."""

    TYPE: ClassVar[str] = "alarm"

    machine_name: str | None = None
    line: str | None = None
    state: Literal["active", "cleared"]
    error_code: str
    text: str
    severity: int = Field(ge=1, le=1000)
    source: str = Field(description="the configured source's name")
    key: str = Field(description="the tag, metric or condition within the source")
    incident_id: str
    raised_at: datetime = Field(description="the source's timestamp of the raise")
    cleared_at: datetime | None = None
    duration_s: float | None = None
    count: int = Field(ge=1, description="raises on this incident (chattering)")
    message: str = Field(description="one line for the banner: 'E404 on press-1 just now. "
                         "Last time (3 Feb 2026) fixed by ... — correction: ...'")
    briefing: AlarmBriefing | None = Field(default=None, description="on a raise")

