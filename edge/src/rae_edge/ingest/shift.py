"""Shift reports (plain text or Markdown) to dated entries, each linked to the machines
it names.

A line that starts (after Markdown marks such as ``#``, ``-``, ``*``) with a date opens a
new entry: ``2026-03-02``, ``2026-03-02 06:00``, ``02.03.2026``, ``02/03/2026`` (day
first), ``2 March 2026`` or ``March 2, 2026``; an optional time after it is kept. The
entry runs to the next dated line. Machines are recognised by id (``press-1``, also
written ``press 1`` or ``PRESS1``), by name and by QR payload, whole words only, case
ignored. Each bullet item of an entry becomes its own piece (with the entry's date line),
so an event is linked to the machine it is about, not to every machine of that shift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from rae_edge.ingest.result import RejectedFileError, Rejection
from rae_sync.domain import Machine

MAX_WORDS = 150
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    start=1)}
_LEAD = r"^[\s#>*_\-]*(?:\*\*)?"
_TIME = r"(?:[ T,]+(?:at\s+)?(?P<hh>\d{1,2})[:h](?P<mm>\d{2}))?"
_DATE_FORMS = [
    re.compile(_LEAD + r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})" + _TIME),
    re.compile(_LEAD + r"(?P<d>\d{1,2})[./](?P<m>\d{1,2})[./](?P<y>\d{4})" + _TIME),
    re.compile(_LEAD + r"(?:[A-Za-z]+,?\s+)?(?P<d>\d{1,2})\s+(?P<mon>[A-Za-z]{3,9})\.?,?\s+"
               r"(?P<y>\d{4})" + _TIME),
    re.compile(_LEAD + r"(?:[A-Za-z]+,?\s+)?(?P<mon>[A-Za-z]{3,9})\.?\s+(?P<d>\d{1,2})"
               r"(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})" + _TIME),
]


@dataclass
class ShiftEntry:
    occurred_at: datetime
    text: str
    machine_ids: tuple[str, ...]
    first_line: int


@dataclass
class ParsedShift:
    entries: list[ShiftEntry] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def entry_date(line: str, zone: ZoneInfo) -> datetime | None:
    """The date (and time) a line opens an entry with, or None."""
    for form in _DATE_FORMS:
        m = form.match(line)
        if not m:
            continue
        g = m.groupdict()
        try:
            if g.get("mon"):
                month = _MONTHS.get(g["mon"][:3].casefold())
                if month is None:
                    continue
            else:
                month = int(g["m"])
            hh, mm = (int(g["hh"]), int(g["mm"])) if g.get("hh") else (0, 0)
            return datetime.combine(
                datetime(int(g["y"]), month, int(g["d"])).date(), time(hh, mm), tzinfo=zone)
        except ValueError:
            return None
    return None


class MachineMatcher:
    """Finds the machines a text names (ids, their spaced/joined spellings, names, QR)."""

    def __init__(self, machines: list[Machine]) -> None:
        self._patterns: list[tuple[str, re.Pattern[str]]] = []
        for m in machines:
            forms = {m.id, m.name, m.qr_code}
            parts = re.split(r"[-_.\s]+", m.id)
            if len(parts) > 1:
                forms.add(" ".join(parts))
                forms.add("".join(parts))
            alts = "|".join(
                re.escape(f).replace(r"\ ", r"[\s\-_]*") for f in sorted(forms, key=len,
                                                                          reverse=True) if f)
            self._patterns.append(
                (m.id, re.compile(rf"(?<![\w-])(?:{alts})(?![\w-])", re.IGNORECASE)))

    def find(self, text: str) -> tuple[str, ...]:
        return tuple(mid for mid, pat in self._patterns if pat.search(text))


_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+")


def _items(lines: list[str], max_words: int) -> list[str]:
    """An entry's body as pieces: each bullet item alone (it usually is one event on one
    machine), other prose grouped by paragraph up to about ``max_words``."""
    blocks: list[list[str]] = []
    for line in lines:
        if not line.strip():
            blocks.append([])
        elif _BULLET.match(line) or not blocks:
            blocks.append([line.strip()])
        else:
            blocks[-1].append(line.strip())
    pieces = [" ".join(b) for b in blocks if b]
    out: list[str] = []
    for piece in pieces:
        bullet = bool(_BULLET.match(piece))
        if out and not bullet and not _BULLET.match(out[-1]) and \
                len(out[-1].split()) + len(piece.split()) <= max_words:
            out[-1] += "\n" + piece
        else:
            out.append(piece)
    return out


def parse_shift(path: Path, machines: list[Machine], *, zone: ZoneInfo,
                machine_id: str | None = None, max_words: int = MAX_WORDS) -> ParsedShift:
    """Reads a shift report into dated entries. Raises :class:`RejectedFileError` when the
    file cannot be read or holds no dated entry at all."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RejectedFileError(f"not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise RejectedFileError(f"cannot read the file ({exc.strerror or exc})") from exc
    matcher = MachineMatcher(machines)
    out = ParsedShift()
    current: tuple[datetime, int, list[str]] | None = None
    orphan: list[int] = []

    def close() -> None:
        if current is None:
            return
        when, first, lines = current
        header, body = lines[0], lines[1:]
        pieces = _items(body, max_words)
        if not pieces and len(header.split()) < 5:
            return  # a date heading with nothing under it
        for piece in pieces or [""]:
            text = f"{header}\n{piece}".strip()
            named = matcher.find(text)
            if machine_id and machine_id not in named:
                named = (machine_id, *named)
            out.entries.append(ShiftEntry(when, text, named, first))

    for n, line in enumerate(text.splitlines(), start=1):
        when = entry_date(line, zone)
        if when is not None:
            close()
            current = (when, n, [line.strip().lstrip("#").strip()])
        elif current is not None:
            current[2].append(line.rstrip())
        elif line.strip() and not line.lstrip().startswith("#"):
            orphan.append(n)  # prose before the first date: no date to file it under
    close()
    if not out.entries:
        raise RejectedFileError(
            "no dated entries: each entry must start with a date line such as "
            "'2026-03-02 06:00 early shift' or '## 02.03.2026'"
        )
    if orphan:
        out.rejected.append(Rejection(
            f"{path}, lines {orphan[0]}-{orphan[-1]}",
            "text before the first dated entry: no date to file it under"))
    return out
