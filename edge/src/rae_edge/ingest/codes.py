"""Error and alarm codes found in free text (E404, F-12, ALM 3001, ERR-105, FAULT 12).

They become structured fields (``error_codes``) so a scan of a machine showing a code
finds the manual section and past incidents that name it.
"""

from __future__ import annotations

import re

# A letter code: E (error) or F (fault), an optional dash, 2-5 digits (E404, F-12).
_LETTER = re.compile(r"(?<![\w/.-])([EF])(-?)(\d{2,5})(?![\w/]|-\d)")
# A word prefix and a number: "ALM 3001", "ALARM 12", "ERR-105", "FAULT #7", "CODE 0x1F".
_WORD = re.compile(
    r"\b(ALM|ALARM|ERR|ERROR|FAULT|FLT|CODE)[ \t]*[#:-]?[ \t]*(\d{1,5}|0x[0-9A-F]{1,6})\b",
    re.IGNORECASE,
)
_WORD_CANON = {"ALARM": "ALM", "ERROR": "ERR", "FLT": "FAULT"}


def normalise_code(code: str) -> str:
    """One spelling per code: upper case, inner whitespace collapsed."""
    return " ".join(code.upper().split())


def find_codes(text: str) -> tuple[str, ...]:
    """The distinct codes in ``text``, in order of first appearance, normalised
    (``"alarm 3001"`` -> ``"ALM 3001"``)."""
    found: list[tuple[int, str]] = []
    for m in _LETTER.finditer(text):
        found.append((m.start(), f"{m.group(1).upper()}{m.group(2)}{m.group(3)}"))
    for m in _WORD.finditer(text):
        prefix = m.group(1).upper()
        found.append((m.start(), f"{_WORD_CANON.get(prefix, prefix)} {m.group(2).upper()}"))
    return tuple(dict.fromkeys(code for _, code in sorted(found)))
