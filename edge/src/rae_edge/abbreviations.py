"""Maintenance abbreviations, expanded for search ("L/H CYL LEAKING" is found by "left
hand cylinder leak").

:meth:`Abbreviations.expand` keeps every original token and adds its expansion after it
in parentheses, so the stored ``search_text`` matches both the terse form and plain words
(the memory's ``text`` itself is never changed). The table is a small built-in one
written for this project, plus any CSV the plant configures (``abbreviations`` in the
settings): either ``abbr,expansion`` rows (a header optional) or the MaintNet layout
(``Abbriviation_Code,Abbreviated,Standard_Description``).
"""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rae_edge.errors import InvalidInputError

# Written for this project from common plant and fleet maintenance shorthand.
BUILTIN: dict[str, str] = {
    "r&r": "remove and replace", "r/r": "remove and replace", "l/h": "left hand",
    "r/h": "right hand", "lh": "left hand", "rh": "right hand", "cyl": "cylinder",
    "cyls": "cylinders", "assy": "assembly", "hyd": "hydraulic", "press": "pressure",
    "temp": "temperature", "eng": "engine", "adj": "adjust", "insp": "inspect",
    "repl": "replace", "rplc": "replace", "chk": "check", "ck": "check", "lkg": "leaking",
    "brg": "bearing", "brgs": "bearings", "mtr": "motor", "pmp": "pump", "vlv": "valve",
    "sw": "switch", "sol": "solenoid", "elec": "electrical", "mech": "mechanical",
    "lube": "lubricate", "svc": "service", "maint": "maintenance",
    "pm": "preventive maintenance", "wo": "work order", "qty": "quantity", "w/": "with",
    "w/o": "without", "u/s": "unserviceable", "inop": "inoperative",
    "intmt": "intermittent", "cond": "condition", "conn": "connector",
    "xfmr": "transformer", "vib": "vibration", "ovhl": "overhaul", "o/h": "overhaul",
    "gbx": "gearbox", "brkt": "bracket", "hsg": "housing", "fwd": "forward",
    "lwr": "lower", "upr": "upper", "btm": "bottom", "frt": "front", "c/b": "circuit breaker",
    "cb": "circuit breaker", "plc": "programmable logic controller",
    "vfd": "variable frequency drive", "hmi": "human machine interface",
    "estop": "emergency stop", "e-stop": "emergency stop", "prox": "proximity",
    "xmtr": "transmitter", "ctrl": "control", "cntrl": "control", "accum": "accumulator",
    "filt": "filter", "ldg": "landing", "psi": "pounds per square inch",
    "rpm": "revolutions per minute", "gnd": "ground", "pwr": "power",
    "flt": "fault", "alm": "alarm", "err": "error", "spec": "specification",
    "specs": "specifications", "req": "required", "reqd": "required",
    "ops": "operations", "chg": "change", "chgd": "changed", "inst": "install",
    "instl": "installed", "rmvd": "removed", "repd": "replaced",
}

# A token: letters/digits, optionally joined by '/', '&', '-' or '.' (L/H, R&R, E-STOP),
# or a word followed by '/' (w/).
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[/&.-][A-Za-z0-9]+)*/?")


class Abbreviations:
    """A lookup table ``abbreviation -> expansions`` (case-insensitive)."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.table: dict[str, tuple[str, ...]] = {
            k.casefold(): tuple(dict.fromkeys(v)) for k, v in table.items() if v
        }

    @classmethod
    def load(cls, paths: Iterable[Path] = (), *, builtin: bool = True) -> Abbreviations:
        """The built-in table extended by each CSV in ``paths`` (later files add meanings)."""
        table: dict[str, list[str]] = {}
        if builtin:
            for k, v in BUILTIN.items():
                table.setdefault(k, []).append(v)
        for path in paths:
            for k, v in read_csv(path):
                meanings = table.setdefault(k, [])
                if v.casefold() not in (m.casefold() for m in meanings):
                    meanings.append(v)
        return cls(table)

    def expand(self, text: str) -> str:
        """``text`` with each known abbreviation followed by its expansion(s) in brackets:
        ``"R&R FUEL SERVO"`` -> ``"R&R (remove and replace) FUEL SERVO"``."""

        def sub(m: re.Match[str]) -> str:
            token = m.group(0)
            key = token.casefold()
            meanings = self.table.get(key) or self.table.get(key.rstrip("./"))
            if not meanings:
                return token
            return f"{token} ({' / '.join(meanings)})"

        return _TOKEN.sub(sub, text)

    def __len__(self) -> int:
        return len(self.table)


def read_csv(path: Path) -> list[tuple[str, str]]:
    """``(abbreviation, expansion)`` pairs from a CSV in either supported layout."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInputError(f"abbreviation file {path}: cannot read it ({exc})") from exc
    reader = csv.reader(text.splitlines())
    rows = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]
    if not rows:
        return []
    header = [c.strip().casefold() for c in rows[0][1]]
    abbr_col, exp_col = 0, 1
    if "abbreviated" in header and "standard_description" in header:  # MaintNet layout
        abbr_col, exp_col = header.index("abbreviated"), header.index("standard_description")
        rows = rows[1:]
    elif header[:2] in (["abbr", "expansion"], ["abbreviation", "expansion"]):
        rows = rows[1:]
    out = []
    for line, r in rows:
        if len(r) <= max(abbr_col, exp_col) or not r[abbr_col].strip() or not r[exp_col].strip():
            raise InvalidInputError(
                f"abbreviation file {path}, row {line}: expected an abbreviation and its "
                f"expansion, got {r!r}"
            )
        out.append((r[abbr_col].strip().casefold(), r[exp_col].strip()))
    return out


_cache: dict[tuple[Path, ...], Abbreviations] = {}
_cache_lock = threading.Lock()


def abbreviations_for(paths: Sequence[Path] = ()) -> Abbreviations:
    """The built-in table plus ``paths`` (the settings' ``abbreviations``), cached."""
    key = tuple(Path(p) for p in paths)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = Abbreviations.load(key)
        return _cache[key]


def expand(text: str, paths: Sequence[Path] = ()) -> str:
    """Shorthand for ``abbreviations_for(paths).expand(text)``."""
    return abbreviations_for(paths).expand(text)
