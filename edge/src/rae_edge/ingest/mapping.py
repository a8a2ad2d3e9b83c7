"""Column mappings for tabular files (error logs, work orders), from YAML or JSON.

A mapping names which column holds what; every field is optional except a symptom
column. Example (``edge/examples/mwo2kg_work_orders.yaml``)::

    kind: workorders
    machine_id: AssetID
    machine_name: Functional_Location_Description
    occurred_at: Work_Order_Basic_Start_Date
    date_format: "%d/%m/%Y"
    symptom: ShortText
    record_id: PONumber

Without a mapping file the columns are guessed from common names
(:func:`guess_mapping`); when the symptom column cannot be found the file is rejected
with the list of its columns.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rae_edge.errors import InvalidInputError

Columns = str | list[str]


class ColumnMapping(BaseModel):
    """Which column of a tabular file holds which incident field."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["errors", "workorders"] = Field(
        default="errors", description="what the rows are (source label of the incidents)")
    format: Literal["csv", "jsonl"] | None = Field(
        default=None, description="file format; from the extension when absent")
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="CSV delimiter")
    encoding: str = Field(default="utf-8-sig", description="text encoding (BOM tolerated)")
    machine_id: str | None = Field(default=None, description="column with the machine id")
    machine_name: str | None = Field(
        default=None, description="column with a machine name, for machines created here")
    default_machine: str | None = Field(
        default=None, description="machine id for rows without one (or no machine column)")
    machine_pattern: str | None = Field(
        default=None,
        description="regex a machine id must match in full (rows that do not are rejected: "
                    "catches rows whose columns slipped)")
    create_machines: bool = Field(
        default=True, description="register machine ids not yet known (QR code = the id)")
    occurred_at: str | None = Field(default=None, description="column with the time")
    date_format: str | None = Field(
        default=None, description="strptime format of that column; ISO 8601 when absent")
    timezone: str = Field(default="UTC", description="zone of times without an offset")
    default_occurred_at: datetime | None = Field(
        default=None, description="time for rows of logs that carry none")
    error_code: str | None = Field(default=None, description="column with the error code")
    symptom: Columns = Field(description="column(s) with what happened, joined by '. '")
    action: Columns | None = Field(default=None, description="column(s) with what was done")
    record_id: str | None = Field(
        default=None,
        description="column identifying a row in its source system: two rows with the same "
                    "text but different ids stay two incidents; the same id twice is one")

    @field_validator("machine_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def columns(self) -> list[str]:
        """Every column the mapping names."""
        out: list[str] = []
        for value in (self.machine_id, self.machine_name, self.occurred_at, self.error_code,
                      self.record_id, self.symptom, self.action):
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, list):
                out.extend(value)
        return out


def load_mapping(path: Path) -> ColumnMapping:
    """Reads a YAML or JSON mapping file; a bad one is an error naming the file and key."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"mapping file {path}: cannot read it ({exc})") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"mapping file {path}: expected a mapping of field: column")
    try:
        return ColumnMapping(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'mapping'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInputError(f"mapping file {path}: {problems}") from exc


_SYNONYMS: dict[str, tuple[str, ...]] = {
    "machine_id": ("machine_id", "machine", "machineid", "asset_id", "assetid", "asset",
                   "equipment_id", "equipment"),
    "occurred_at": ("occurred_at", "timestamp", "datetime", "time", "date", "ts", "when"),
    "error_code": ("error_code", "code", "alarm_code", "alarm", "fault_code", "errorcode"),
    "symptom": ("symptom", "message", "problem", "description", "fault", "text", "shorttext",
                "short_text", "event"),
    "action": ("action", "fix", "remedy", "resolution", "corrective_action", "repair"),
    "record_id": ("id", "record_id", "event_id", "ident", "wo_number", "work_order"),
}


def _key(column: str) -> str:
    return column.strip().casefold().replace(" ", "_").replace("-", "_")


def guess_mapping(columns: list[str], kind: Literal["errors", "workorders"] = "errors",
                  fmt: Literal["csv", "jsonl"] | None = None) -> ColumnMapping | None:
    """A mapping from well-known column names, or None when no symptom column is found."""
    by_key = {_key(c): c for c in columns}
    found: dict[str, str] = {}
    for field_name, names in _SYNONYMS.items():
        for name in names:
            if name in by_key and by_key[name] not in found.values():
                found[field_name] = by_key[name]
                break
    if "symptom" not in found:
        return None
    return ColumnMapping(kind=kind, format=fmt, **found)
