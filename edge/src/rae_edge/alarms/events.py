"""What a source hands on: one typed :class:`AlarmEvent` per raise or clear, and the
mapping of a raw value (a tag's or metric's) to one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rae_edge.alarm_settings import AlarmMapping, OpcUaEvents


class PayloadError(ValueError):
    """A message from a source that cannot be read; it is set aside with this reason."""


@dataclass(frozen=True)
class AlarmEvent:
    """One transition of one alarm at its source."""

    source: str  # the source's configured name
    key: str  # the tag, metric or condition within the source
    machine_id: str
    active: bool
    occurred_at: datetime  # the source's own timestamp
    code: str | None = None  # None on a clear that does not name its code
    text: str = ""
    severity: int = 500
    event_id: str = ""  # the source's id of this transition, when it has one


def is_cleared(mapping: AlarmMapping, value: Any) -> bool:
    if value is None:
        return True
    for v in mapping.cleared_values:
        # bool is an int in Python: compare bools only with bools
        if isinstance(v, bool) or isinstance(value, bool):
            if isinstance(v, bool) and isinstance(value, bool) and v == value:
                return True
        elif v == value or str(v) == str(value).strip():
            return True
    return False


def from_value(mapping: AlarmMapping, *, source: str, key: str, value: Any,
               occurred_at: datetime | None, event_id: str = "") -> AlarmEvent:
    """The event a new value of a mapped tag or metric means."""
    at = _aware(occurred_at)
    if is_cleared(mapping, value):
        return AlarmEvent(source, key, mapping.machine_id, False, at, mapping.code,
                          severity=mapping.severity, event_id=event_id)
    if mapping.code is not None:
        code = mapping.code
    elif isinstance(value, bool):
        raise PayloadError(f"{key}: a boolean value {value} but no fixed 'code' is mapped")
    else:
        raw = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        code = mapping.code_format.format(value=raw.strip())
    if not code or len(code) > 64:
        raise PayloadError(f"{key}: value {value!r} gives no usable error code")
    text = (mapping.text or "{code} on {machine_id}").format(
        code=code, value=value, machine_id=mapping.machine_id)
    return AlarmEvent(source, key, mapping.machine_id, True, at, code, text,
                      mapping.severity, event_id)


def from_condition(mapping: OpcUaEvents, *, source: str, condition: str, active: bool,
                   message: str, severity: int | None, occurred_at: datetime | None,
                   event_id: str) -> AlarmEvent:
    """The event an OPC UA alarm & condition notification means."""
    code = mapping.code
    if code is None:
        m = re.search(mapping.code_pattern, f"{condition} {message}")
        if m is None:
            raise PayloadError(f"{condition}: no error code in {message!r} "
                               f"(code_pattern {mapping.code_pattern!r})")
        code = m.group(0)
    text = (mapping.text.format(code=code, value=message, machine_id=mapping.machine_id)
            if mapping.text else message or f"{code} on {mapping.machine_id}")
    sev = max(1, min(1000, severity)) if severity else mapping.severity
    return AlarmEvent(source, condition, mapping.machine_id, active, _aware(occurred_at),
                      code, text, sev, event_id)


def _aware(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
