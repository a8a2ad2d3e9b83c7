"""Tabular files (error logs, work orders) to incidents: CSV or JSON lines, through a
:class:`~rae_edge.ingest.mapping.ColumnMapping`.

A file-level problem (unreadable, a mapped column missing) rejects the file; a bad row
(wrong field count, no machine, unreadable time, empty symptom) rejects that row only.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from rae_edge.ingest.codes import find_codes, normalise_code
from rae_edge.ingest.mapping import ColumnMapping, guess_mapping
from rae_edge.ingest.result import RejectedFileError, Rejection
from rae_sync.domain import Incident, content_hash

Fmt = Literal["csv", "jsonl"]


@dataclass
class ParsedTable:
    """Incidents read from one file, the rows refused, and the machines the rows name."""

    incidents: list[Incident] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    machines: dict[str, str] = field(default_factory=dict)  # id -> name
    rows: int = 0


def table_format(path: Path, mapping: ColumnMapping | None) -> Fmt:
    if mapping is not None and mapping.format is not None:
        return mapping.format
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"


def _read_text(path: Path, encoding: str) -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise RejectedFileError(
            f"not {encoding} text (byte {exc.start}): set 'encoding' in the column mapping"
        ) from exc
    except OSError as exc:
        raise RejectedFileError(f"cannot read the file ({exc.strerror or exc})") from exc


Record = tuple[int, dict[str, Any] | None, str | None]  # (line, values, or why not)


def _csv_records(text: str, delimiter: str) -> tuple[list[str], Iterator[Record]]:
    reader = csv.reader(text.splitlines(), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise RejectedFileError("the file is empty") from None
    except csv.Error as exc:
        raise RejectedFileError(f"cannot read the CSV header ({exc})") from exc
    header = [h.strip() for h in header]
    if not any(header):
        raise RejectedFileError("the first line (the header) is empty")

    def records() -> Iterator[Record]:
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, None, f"not valid CSV ({exc})"
                continue
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                yield (reader.line_num, None,
                       f"{len(values)} fields where the header has {len(header)}")
                continue
            yield reader.line_num, dict(zip(header, values, strict=True)), None

    return header, records()


def _jsonl_records(text: str) -> tuple[list[str], Iterator[Record]]:
    parsed: list[Record] = []
    keys: dict[str, None] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            parsed.append((n, None, f"not valid JSON ({exc.args[0] if exc.args else exc})"))
            continue
        if not isinstance(obj, dict):
            parsed.append((n, None, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        keys.update(dict.fromkeys(obj))
        parsed.append((n, obj, None))
    if not parsed:
        raise RejectedFileError("the file is empty")
    return list(keys), iter(parsed)


def _resolve(columns: list[str], wanted: list[str]) -> dict[str, str]:
    """Mapped column name -> actual column (case and spacing forgiven)."""
    def key(c: str) -> str:
        return c.strip().casefold().replace(" ", "_").replace("-", "_")

    actual = {key(c): c for c in columns}
    out, missing = {}, []
    for w in wanted:
        if key(w) in actual:
            out[w] = actual[key(w)]
        else:
            missing.append(w)
    if missing:
        raise RejectedFileError(
            f"column(s) {', '.join(repr(m) for m in missing)} named by the mapping are not in "
            f"the file; its columns are {', '.join(repr(c) for c in columns)}"
        )
    return out


def parse_time(value: str, fmt: str | None, zone: ZoneInfo) -> datetime:
    """A time from a log: ``fmt`` (strptime) when given, else ISO 8601 or epoch seconds."""
    value = value.strip()
    if fmt:
        t = datetime.strptime(value, fmt)  # the zone is applied below
    else:
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            try:
                epoch = float(value)
            except ValueError:
                raise ValueError(
                    f"cannot read time {value!r}: use ISO 8601 or set 'date_format' in the "
                    f"column mapping"
                ) from None
            return datetime.fromtimestamp(epoch, UTC)
    return t.replace(tzinfo=zone) if t.tzinfo is None else t


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return " ".join(str(value).split())


def parse_table(
    path: Path, *, tenant_id: str, mapping: ColumnMapping | None,
    kind: Literal["errors", "workorders"], machine_id: str | None, title: str,
) -> ParsedTable:
    """Reads ``path`` into incidents. Raises :class:`RejectedFileError` for the file."""
    fmt = table_format(path, mapping)
    text = _read_text(path, mapping.encoding if mapping else "utf-8-sig")
    columns, records = (
        _jsonl_records(text) if fmt == "jsonl"
        else _csv_records(text, mapping.delimiter if mapping else ",")
    )
    if mapping is None:
        mapping = guess_mapping(columns, kind, fmt)
        if mapping is None:
            raise RejectedFileError(
                f"no column mapping given and no symptom column recognised among "
                f"{', '.join(repr(c) for c in columns)}: pass a mapping file (--mapping)"
            )
    col = _resolve(columns, mapping.columns())
    if machine_id is None and mapping.machine_id is None and mapping.default_machine is None:
        raise RejectedFileError(
            "no machine: the mapping names no machine column and no default_machine, and no "
            "machine was given (--machine)"
        )
    if mapping.occurred_at is None and mapping.default_occurred_at is None:
        raise RejectedFileError(
            "no time: the mapping names no occurred_at column and no default_occurred_at"
        )
    zone = ZoneInfo(mapping.timezone)
    pattern = re.compile(mapping.machine_pattern) if mapping.machine_pattern else None
    label = f"{mapping.kind}:{title}"
    out = ParsedTable()

    def get(row: dict[str, Any], name: str | None) -> str:
        return _text(row.get(col[name])) if name else ""

    def joined(row: dict[str, Any], names: str | list[str] | None) -> str:
        if names is None:
            return ""
        names = [names] if isinstance(names, str) else names
        return ". ".join(v for v in (get(row, n) for n in names) if v)

    for line, row, why in records:
        out.rows += 1
        where = f"{path}, line {line}"
        if row is None:
            out.rejected.append(Rejection(where, str(why)))
            continue
        try:
            machine = machine_id or get(row, mapping.machine_id) or mapping.default_machine
            if not machine:
                raise ValueError(f"no machine id (column {mapping.machine_id!r} is empty)")
            if pattern is not None and not pattern.fullmatch(machine):
                raise ValueError(
                    f"machine id {machine!r} does not match machine_pattern "
                    f"{mapping.machine_pattern!r} (columns shifted in this row?)")
            if mapping.occurred_at and get(row, mapping.occurred_at):
                occurred = parse_time(get(row, mapping.occurred_at), mapping.date_format, zone)
            elif mapping.default_occurred_at is not None:
                occurred = mapping.default_occurred_at
            else:
                raise ValueError(f"no time (column {mapping.occurred_at!r} is empty)")
            symptom = joined(row, mapping.symptom)
            if not symptom:
                raise ValueError("empty symptom")
            action = joined(row, mapping.action) or None
            code = get(row, mapping.error_code) if mapping.error_code else ""
            if not code:
                codes = find_codes(symptom)
                code = codes[0] if codes else ""
            record = get(row, mapping.record_id)
            data: dict[str, Any] = {
                "tenant_id": tenant_id, "machine_id": machine, "occurred_at": occurred,
                "error_code": normalise_code(code) if code else None, "symptom": symptom,
                "action": action, "source": f"{label}#{record}" if record else label,
            }
            if record:
                # The source system's own row id is part of the identity: two log lines with
                # the same words are two events; the same line ingested twice is one.
                data["content_hash"] = content_hash(
                    tenant_id, machine, occurred.isoformat(), data["error_code"], symptom,
                    action, "record", record)
            inc = Incident(**data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            out.rejected.append(Rejection(where, problems))
            continue
        except ValueError as exc:
            out.rejected.append(Rejection(where, str(exc)))
            continue
        out.incidents.append(inc)
        if inc.machine_id not in out.machines:
            out.machines[inc.machine_id] = get(row, mapping.machine_name) or inc.machine_id
    return out
