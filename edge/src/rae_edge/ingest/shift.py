"""Shift reports (plain text or Markdown) to dated entries, each linked to the machines
it names.

An entry opens on a line that carries its date:

- a heading with the date anywhere in it: Markdown ``#`` headings, a line set in bold,
  a heading underlined with ``===``/``---``, or a short line that ends with the date
  (``Nachtschicht 20.11.``, ``Night shift, 20 Nov 2026``);
- any line (a bullet too) that starts with a date, as before.

Date forms: ``2026-11-20``, ``20.11.2026``, ``20/11/2026`` (day first; month first only
when the day cannot be a month, ``11/20/2026``), two-digit years (``20.11.26``),
``20 Nov 2026``, ``20. November 2026``, ``Nov 20, 2026`` (English and German month names);
in headings also without a year (``20.11.``, ``20. Nov``), the year then coming from the
file name, else from the report's other dates (a date more than half a year before the
previous entry rolls into the next year). An optional time after the date is kept
(``22:00``, ``6h00``). The entry runs to the next dated line.

A file with no dated line is dated by a date in its name (``shift-2026-11-20.md``,
``Schichtbericht_20.11.2026.txt``, ``night_20261120.md``), or refused with that advice.
Machines are recognised by id (``press-1``, also written ``press 1`` or ``PRESS1``), by
name and by QR payload, whole words only, case ignored. Each bullet item of an entry
becomes its own piece (with the entry's heading), so an event is linked to the machine it
is about, not to every machine of that shift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from rae_edge.ingest.result import RejectedFileError, Rejection
from rae_sync.domain import Machine

MAX_WORDS = 150
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    start=1)} | {"mär": 3, "mae": 3, "mrz": 3, "mai": 5, "okt": 10, "dez": 12}
_MON = r"(?P<mon>[A-Za-zÄäé]{3,9})"
_TIME = re.compile(r"^[\s,T]*(?:at\s+|um\s+|ab\s+)?(?P<hh>\d{1,2})[:h](?P<mm>\d{2})(?!\d)",
                   re.IGNORECASE)
# Full dates (with a year), in the order tried at each position.
_FULL = [
    re.compile(r"(?<![\d.])(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?!\d)"),
    re.compile(r"(?<![\d.])(?P<d>\d{1,2})(?P<sep>[./])(?P<m>\d{1,2})(?P=sep)"
               r"(?P<y>\d{4}|\d{2})(?![\d.]\d)"),
    re.compile(r"(?<!\d)(?P<d>\d{1,2})\.?\s+" + _MON + r"\.?,?\s+(?P<y>\d{4})(?!\d)"),
    re.compile(_MON + r"\.?\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})(?!\d)"),
]
# Without a year: only in headings (in running text ``2.3.`` is as likely a section number).
_YEARLESS = [
    re.compile(r"(?<![\d.])(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?!\d)"),
    re.compile(r"(?<!\d)(?P<d>\d{1,2})\.?\s+" + _MON + r"\b\.?"),
]
_LEAD = re.compile(r"^[\s#>*_\-]*(?:\*\*)?")
_ATX = re.compile(r"^\s{0,3}#{1,6}\s+(?P<t>.*?)[\s#]*$")
_BOLD = re.compile(r"^\s*(\*\*|__)(?P<t>.+?)\1\s*:?\s*$")
_UNDERLINE = re.compile(r"^\s*(?:=+|-{3,})\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)]|\d{1,2}[:h]\d{2}(?:\s*Uhr)?:?)\s+",
                     re.IGNORECASE)
_PIECE_TIME = re.compile(r"^\s*(?:[-*+•]\s*)?(?P<hh>\d{1,2})[:h](?P<mm>\d{2})(?!\d)")
_NIGHT = re.compile(r"night|nacht", re.IGNORECASE)
_SHORT_WORDS = 6
# A plain short line is a heading only when it names a shift or a day ("Nachtschicht 20.11.",
# "Mon 20/11/2026"), not when it is a short note that mentions a date ("seal kit ordered 18.11.").
_SHIFT_WORDS = re.compile(
    r"shift|schicht|night|nacht|früh|spät|early|late|morning|evening|handover|übergabe|"
    r"bericht|report|log\b|\b(?:mon|tue|wed|thu|fri|sat|sun|mo|di|mi|do|fr|sa|so)\b|"
    r"day|tag\b|montag|dienstag|mittwoch|donnerstag|freitag|samstag|sonntag", re.IGNORECASE)
# What may follow the date of a short heading line: a time range, a colon, nothing.
_ENDS_HEADING = re.compile(r"^\s*(?:[-–/]\s*\d{1,2}[:h]\d{2}\s*(?:Uhr)?)?\s*(?:Uhr)?[\s:.)]*$",
                           re.IGNORECASE)


@dataclass(frozen=True)
class _Found:
    """A date in a line: ``when`` is None when it has no year and none was known."""

    when: datetime | None
    start: int
    end: int  # past the date and any time after it
    text: str
    had_year: bool


def _month(g: dict[str, str | None]) -> int | None:
    if g.get("mon"):
        return _MONTHS.get(str(g["mon"]).casefold()[:3])
    return int(str(g["m"]))


def _build(g: dict[str, str | None], year: int | None, rest: str,
           zone: ZoneInfo) -> datetime | None:
    month = _month(g)
    if month is None:
        return None
    day = int(str(g["d"]))
    if g.get("m") and month > 12 and day <= 12:  # 11/20/2026: month first after all
        month, day = day, month
    if g.get("y"):
        year = int(str(g["y"]))
        if year < 100:
            year += 2000
    if year is None:
        raise _NoYear
    t = _TIME.match(rest)
    hh, mm = (int(t["hh"]), int(t["mm"])) if t else (0, 0)
    try:
        return datetime.combine(date(year, month, day), time(hh, mm), tzinfo=zone)
    except ValueError:
        return None


class _NoYear(Exception):
    pass


def _find(line: str, zone: ZoneInfo, *, anywhere: bool, yearless: bool,
          year: int | None) -> _Found | None:
    """The first date in ``line`` (at its start only unless ``anywhere``)."""
    forms = _FULL + (_YEARLESS if yearless else [])
    best: _Found | None = None
    lead = _LEAD.match(line)
    origin = lead.end() if lead else 0
    for form in forms:
        for m in form.finditer(line):
            if not anywhere and m.start() != origin:
                continue
            if best is not None and m.start() >= best.start:
                break
            try:
                when = _build(m.groupdict(), year, line[m.end():], zone)
            except _NoYear:
                best = _Found(None, m.start(), m.end(), m.group(0), False)
                break
            if when is not None:
                t = _TIME.match(line[m.end():])
                best = _Found(when, m.start(), m.end() + (t.end() if t else 0), m.group(0),
                              bool(m.groupdict().get("y")))
                break
    return best


def entry_date(line: str, zone: ZoneInfo) -> datetime | None:
    """The full date (and time) a line starts with, or None."""
    found = _find(line, zone, anywhere=False, yearless=False, year=None)
    return found.when if found else None


def name_date(name: str, zone: ZoneInfo) -> datetime | None:
    """A date in a file name: ``2026-11-20``, ``20261120``, ``20.11.2026``, ``20 Nov 2026``."""
    stem = Path(name).stem
    m = re.search(r"(?<!\d)(?P<y>20\d{2})[-_.]?(?P<m>[01]\d)[-_.]?(?P<d>[0-3]\d)(?!\d)", stem)
    if m:
        try:
            return datetime(int(m["y"]), int(m["m"]), int(m["d"]), tzinfo=zone)
        except ValueError:
            pass
    m = re.search(r"(?<!\d)(?P<d>\d{1,2})[-_.](?P<m>\d{1,2})[-_.](?P<y>\d{4})(?!\d)", stem)
    if m:
        try:
            return datetime(int(m["y"]), int(m["m"]), int(m["d"]), tzinfo=zone)
        except ValueError:
            pass
    found = _find(re.sub(r"[_\-]+", " ", stem), zone, anywhere=True, yearless=False,
                  year=None)
    return found.when if found else None


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



def _items(lines: list[str], max_words: int, matcher: MachineMatcher) -> list[str]:
    """An entry's body as pieces: each bullet item (or line starting with a time) alone (it
    usually is one event on one machine), other prose by paragraph, neighbouring
    paragraphs about the same machines grouped up to about ``max_words``."""
    blocks: list[list[str]] = []
    for line in lines:
        if not line.strip():
            blocks.append([])
        elif _BULLET.match(line) or not blocks or not blocks[-1]:
            blocks.append([line.strip()])
        elif (named := matcher.find(line)) and named != matcher.find(" ".join(blocks[-1])) \
                and matcher.find(" ".join(blocks[-1])):
            blocks.append([line.strip()])  # one note per line, each about its own machine
        else:
            blocks[-1].append(line.strip())
    pieces = [" ".join(b) for b in blocks if b]
    out: list[str] = []
    for piece in pieces:
        bullet = bool(_BULLET.match(piece))
        if out and not bullet and not _BULLET.match(out[-1]) and \
                len(out[-1].split()) + len(piece.split()) <= max_words and \
                matcher.find(out[-1]) == matcher.find(piece):
            out[-1] += "\n" + piece
        else:
            out.append(piece)
    return out


def _heading(lines: list[str], n: int) -> str | None:
    """The text of line ``n`` when it is set as a heading (not a plain note), else None."""
    line = lines[n]
    for pat in (_ATX, _BOLD):
        m = pat.match(line)
        if m:
            return m["t"].strip("*_ ").strip()
    if _BULLET.match(line) or not line.strip():
        return None
    if n + 1 < len(lines) and _UNDERLINE.match(lines[n + 1]) and \
            not _UNDERLINE.match(line):
        return line.strip()
    if len(line.split()) <= _SHORT_WORDS and _SHIFT_WORDS.search(line):
        return line.strip()  # a short line: a heading if it ends with its date (see caller)
    return None


def _piece_time(when: datetime, header: str, piece: str) -> datetime:
    """A note that starts with its time (``- 02:15 ...``) happened then, on the entry's day,
    or the next day when that time is before the shift's start (a night shift's 02:15;
    a night shift with no start time written starts in the evening)."""
    m = _PIECE_TIME.match(piece)
    if m is None or int(m["hh"]) > 23 or int(m["mm"]) > 59:
        return when
    at = when.replace(hour=int(m["hh"]), minute=int(m["mm"]))
    start = when.time() if when.time() != time(0, 0) else (
        time(18, 0) if _NIGHT.search(header) else time(0, 0))
    return at + timedelta(days=1) if at.time() < start else at


def _context_year(lines: list[str], zone: ZoneInfo) -> int | None:
    """The year of the report's first full date (for headings written without one)."""
    for line in lines:
        found = _find(line, zone, anywhere=True, yearless=False, year=None)
        if found is not None and found.when is not None:
            return found.when.year
    return None


def _roll(when: datetime, previous: datetime | None) -> datetime:
    """A year-less date far before the previous entry is in the next year (31.12. → 1.1.)."""
    if previous is not None and when < previous - timedelta(days=183):
        try:
            return when.replace(year=when.year + 1)
        except ValueError:  # 29 February
            return when
    return when


def parse_shift(path: Path, machines: list[Machine], *, zone: ZoneInfo,
                machine_id: str | None = None, max_words: int = MAX_WORDS,
                name: str | None = None) -> ParsedShift:
    """Reads a shift report into dated entries. ``name``: the file's own name when ``path``
    is a copy (an upload); a date in it dates an undated report. Raises
    :class:`RejectedFileError` when the file cannot be read or holds no date at all."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RejectedFileError(f"not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise RejectedFileError(f"cannot read the file ({exc.strerror or exc})") from exc
    matcher = MachineMatcher(machines)
    out = ParsedShift()
    lines = text.splitlines()
    from_name = name_date(name or path.name, zone)
    in_name = re.search(r"(?<!\d)20\d{2}(?!\d)", Path(name or path.name).stem)
    year = from_name.year if from_name else int(in_name[0]) if in_name else \
        _context_year(lines, zone)
    current: tuple[datetime, int, list[str]] | None = None
    previous: datetime | None = None
    orphan: list[int] = []
    no_year: list[tuple[int, str]] = []

    def close() -> None:
        if current is None:
            return
        when, first, body_lines = current
        header, body = body_lines[0], body_lines[1:]
        pieces = _items(body, max_words, matcher)
        if not pieces and len(header.split()) < 5:
            return  # a date heading with nothing under it
        for piece in pieces or [""]:
            entry = f"{header}\n{piece}".strip()
            named = matcher.find(entry)
            if machine_id and machine_id not in named:
                named = (machine_id, *named)
            out.entries.append(ShiftEntry(_piece_time(when, header, piece), entry, named,
                                          first))

    for n, line in enumerate(lines):
        if _UNDERLINE.match(line) and n > 0 and lines[n - 1].strip() and current is not None \
                and current[1] == n:
            continue  # the underline of the heading just read
        found: _Found | None = None
        title = _heading(lines, n)
        if title is not None:
            found = _find(line, zone, anywhere=True, yearless=True, year=year)
            short = not (_ATX.match(line) or _BOLD.match(line) or (
                n + 1 < len(lines) and _UNDERLINE.match(lines[n + 1])))
            if found is not None and short and not _ENDS_HEADING.match(line[found.end:]):
                found = None  # a short note that mentions a date is not a heading
        if found is None:
            found = _find(line, zone, anywhere=False, yearless=False, year=None)
            title = None
        if found is not None and found.when is None:
            no_year.append((n + 1, found.text))
            found = None
        if found is not None and found.when is not None:
            close()
            when = found.when if found.had_year else _roll(found.when, previous)
            previous = when
            header = title if title is not None else line.strip().lstrip("#").strip()
            current = (when, n + 1, [header])
        elif current is not None:
            current[2].append(line.rstrip())
        elif line.strip() and not line.lstrip().startswith("#"):
            orphan.append(n + 1)  # prose before the first date: no date to file it under
    close()
    if no_year and not out.entries:
        line_no, written = no_year[0]
        raise RejectedFileError(
            f"'{written.strip()}' (line {line_no}) has no year, and neither the file name "
            "nor the report gives one: write the year (20.11.2026) or put the date in the "
            "file name (e.g. shift-2026-11-20.md)")
    if not out.entries and from_name is not None:
        current = (from_name, 1, [f"{(name or path.name)}"])
        current[2].extend(line.rstrip() for line in lines)
        close()
        return out
    if not out.entries:
        raise RejectedFileError(
            "no dated entries: start each entry with a heading holding its date, such as "
            "'# Night shift 2026-11-20', '## Nachtschicht 20.11.2026' or "
            "'2026-11-20 06:00 early shift', or put the date in the file name "
            "(e.g. shift-2026-11-20.md)"
        )
    if orphan and from_name is not None:  # the preamble of a report dated by its name
        dated, current = out.entries, (from_name, orphan[0], [name or path.name])
        current[2].extend(lines[n - 1] for n in orphan)
        out.entries = []
        close()
        out.entries.extend(dated)
    elif orphan:
        out.rejected.append(Rejection(
            f"{path}, lines {orphan[0]}-{orphan[-1]}",
            "text before the first dated entry: no date to file it under"))
    return out
