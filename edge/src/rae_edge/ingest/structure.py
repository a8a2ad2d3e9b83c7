"""Structure found in free maintenance text: error codes, part/serial numbers, components.

:func:`extract` returns them as normalised values; the indexer stores them per memory
(DuckDB ``memory_fields``) at the one place every memory becomes searchable, so exact
matching (search) and "same error code" grouping (briefing) read fields, not text.

- ``code``: what :func:`rae_edge.ingest.codes.find_codes` finds (E404, ALM 3001);
- ``part``: a labelled number ("P/N 6205-2RS", "S/N 88213", "part no. AB-1200") or a bare
  token mixing letters and digits (or digit groups joined by dashes) that is not a
  measurement ("24V", "10MM") nor a code: serials, part and tag numbers (CV-1203, 6205-2RS);
- ``component``: a known component noun (pump, bearing, seal, ...), singular.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rae_edge.ingest.codes import find_codes

FIELDS = ("code", "part", "component")

_LABELLED = re.compile(
    r"\b(?:P/?N|S/?N|PART\s*(?:NO\.?|NUMBER|#)|SERIAL\s*(?:NO\.?|NUMBER|#)?)"
    r"[\s:#.]+(?=[A-Z0-9./-]*\d)([A-Z0-9][A-Z0-9./-]{2,30}[A-Z0-9])",
    re.IGNORECASE)
_TOKEN = re.compile(r"(?<![\w/.-])([A-Z0-9][A-Z0-9./-]{2,30}[A-Z0-9])(?![\w/-])", re.IGNORECASE)
# A number with a unit or an ordinal/multiplier: a measurement, not an identifier.
_MEASURE = re.compile(
    r"^\d+(?:[.,]\d+)?(?:MM|CM|M|KM|V|KV|MV|A|MA|HZ|KHZ|KW|W|HP|PSI|BAR|KPA|MPA|RPM|L|ML|KG|G|"
    r"T|HRS?|H|MIN|S|SEC|X|NM|DEG|C|F|IN|FT|LBS?|PH|ST|ND|RD|TH|K|AMP|AMPS|VAC|VDC|PCS?|"
    r"EA|QTY|DAYS?|WKS?|YRS?|AM|PM)$")
_DIGIT_GROUPS = re.compile(r"^\d+(?:[-/]\d+)+$")
_DATEISH = re.compile(r"^\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}$")

COMPONENTS = frozenset((
    "accumulator", "actuator", "alternator", "axle", "battery", "bearing", "belt",
    "blade", "bolt", "boom", "brake", "breaker", "bucket", "bushing", "cable", "camshaft",
    "capacitor", "carburetor", "chain", "clutch", "coil", "compressor", "condenser",
    "conveyor", "coupling", "crankshaft", "cylinder", "damper", "diaphragm", "drum",
    "encoder", "engine", "fan", "filter", "fitting", "flange", "fuse", "gasket", "gear",
    "gearbox", "governor", "harness", "hose", "hub", "idler", "impeller", "injector",
    "inverter", "joint", "lamp", "latch", "lever", "light", "limit", "magneto", "manifold",
    "motor", "nozzle", "o-ring", "piston", "plug", "pulley", "pump", "radiator",
    "regulator", "relay", "roller", "rotor", "screen", "seal", "sensor", "servo", "shaft",
    "shim", "solenoid", "spring", "starter", "strut", "switch", "tank", "thermostat",
    "tire", "transducer", "transformer", "transmission", "tube", "turbo",
    "turbocharger", "tyre", "valve", "wheel", "winch", "wire",
))
_WORD = re.compile(r"[A-Za-z][A-Za-z-]+")


@dataclass(frozen=True)
class Structure:
    """What :func:`extract` found, each tuple distinct and in order of appearance."""

    codes: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    components: tuple[str, ...] = ()

    def fields(self) -> list[tuple[str, str]]:
        """``(field, value)`` pairs, as stored in ``memory_fields``."""
        return ([("code", c) for c in self.codes] + [("part", p) for p in self.parts]
                + [("component", c) for c in self.components])

    @property
    def exact(self) -> tuple[str, ...]:
        """The values that identify (codes and part/serial numbers), not components."""
        return self.codes + self.parts


def normalise_part(value: str) -> str:
    return value.upper().strip(".-/")


def _is_identifier(tok: str) -> bool:
    if not any(ch.isdigit() for ch in tok):  # most tokens are words: no regex for them
        return False
    t = tok.upper()
    if _MEASURE.match(t) or _DATEISH.match(t):
        return False
    digits = sum(ch.isdigit() for ch in t)
    letters = sum(ch.isalpha() for ch in t)
    if digits and letters:
        return len(t) >= 4 and digits >= 2
    return bool(_DIGIT_GROUPS.match(t)) and digits >= 5


def find_parts(text: str, codes: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Part, serial and tag numbers in ``text`` (normalised, upper case), codes excluded."""
    skip = {c.replace(" ", "") for c in codes} | set(codes)
    found: list[tuple[int, str]] = []
    labelled_spans: list[tuple[int, int]] = []
    for m in _LABELLED.finditer(text):
        found.append((m.start(1), normalise_part(m.group(1))))
        labelled_spans.append(m.span(1))
    for m in _TOKEN.finditer(text):
        if any(a <= m.start(1) < b for a, b in labelled_spans):
            continue
        if _is_identifier(m.group(1)):
            found.append((m.start(1), normalise_part(m.group(1))))
    return tuple(dict.fromkeys(v for _, v in sorted(found) if v and v not in skip))


def find_components(text: str) -> tuple[str, ...]:
    out: list[str] = []
    for m in _WORD.finditer(text):
        w = m.group(0).lower()
        for cand in (w, w[:-1] if w.endswith("s") else w, w[:-2] if w.endswith("es") else w):
            if cand in COMPONENTS:
                out.append(cand)
                break
    return tuple(dict.fromkeys(out))


def extract(text: str) -> Structure:
    """Codes, part numbers and components of one memory's text."""
    codes = find_codes(text)
    return Structure(codes=codes, parts=find_parts(text, codes),
                     components=find_components(text))
