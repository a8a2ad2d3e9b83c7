"""Personal data out of what goes to an LLM outside the plant, and back into its answer.

Replaced by numbered placeholders (the same value gets the same placeholder, so the model
can still tell people apart): e-mail addresses (``<EMAIL_1>``), phone numbers
(``<PHONE_1>``: international ``+``/``00`` forms, ``(555) 123-4567``, ``555-123-4567``, or
any digits after a phone word such as "tel", "mobile", "call", "ext"), badge and employee
numbers after their word ("badge 4711", "employee no. E-20931": ``<BADGE_1>``) and person
names (``<PERSON_1>``): a known first name (bundled list) with the capitalised word or
initial after it, a known surname (bundled list) after a capitalised word, a capitalised
name after a title or a role word ("Mr", "Dr", "technician", "operator", ...), or before
a reporting verb at the start of a sentence ("Thandiwe says").

What it never touches, by construction: ALL-CAPS words and any token with a digit unless a
phone or badge rule took it (so part numbers, error codes, machine ids, measurements and
dates pass unchanged; ``bench/bench_scrub.py`` counts that over every row of the shared
data sets). Rule-based, not a language model: a name that is neither on the list nor after
a title or role word gets through (recall measured in the same bench).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


def _names(file: str) -> frozenset[str]:
    text = (Path(__file__).parent / file).read_text(encoding="utf-8")
    return frozenset(w.strip() for w in text.splitlines() if w.strip() and w[0] != "#")


FIRST_NAMES = _names("first_names.txt")
SURNAMES = _names("surnames.txt")
# Verbs that follow a person's name at the start of a note ("Thandiwe says ...").
REPORTING = (r"says|said|reports|reported|reset|found|logged|replaced|checked|noticed|"
             r"fixed|adjusted|cleaned|confirmed|called")
# Titles and role words after which a capitalised word is a person's name.
ROLE_WORDS = (r"mr|mrs|ms|miss|dr|herr|frau|technician|tech|operator|supervisor|foreman|"
              r"electrician|fitter|mechanic|engineer|inspector|planner|colleague|"
              r"shift lead|team lead|contact|signed|called|informed|asked|told")
# Capitalised words that follow role words in shift notes without being names.
NOT_NAMES = frozenset({
    "the", "a", "an", "on", "in", "at", "of", "for", "and", "or", "to", "from", "with", "by",
    "line", "shift", "team", "maintenance", "production", "quality", "safety", "night", "day",
    "morning", "evening", "early", "late", "all", "any", "some", "was", "is", "has", "had",
    "will", "did", "not", "no", "on-call",
})

_NAME = r"[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)?"
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(
    r"(?<![\w+/.-])(?:"
    r"(?:\+|00)\d{1,3}[ .\-/]?(?:\(0?\d{1,4}\)[ .\-/]?)?\d{1,5}(?:[ .\-/]?\d{2,5}){1,4}"
    r"|\(\d{3}\) ?\d{3}[ .\-]\d{4}"
    r"|\d{3}[.\-]\d{3}[.\-]\d{4}"
    r")(?![\w/-])")
PHONE_CUE = re.compile(
    r"(?i)\b(?:tel|phone|ph|mobile|mob|cell|call(?:ed)?(?: him| her| them)?(?: on| at)?|"
    r"ext|extension|fax)\b\.?:?[ \t]*(?P<v>\+?\(?\d[\d \-./()]{2,18}\d)(?![\w/-])")
BADGE = re.compile(
    r"(?i)\b(?:badge|employee|emp|staff|personnel|pers|clock(?:ing)?)\.?"
    r"(?:[ \t]*(?:id|no|nr|number|num|#))?\.?[ \t]*[:#]?[ \t]*"
    r"(?P<v>[A-Z]{0,3}-?\d{3,10})\b")
TITLED = re.compile(rf"\b(?i:{ROLE_WORDS})\b\.?:?[ \t]+(?P<v>{_NAME}(?:[ \t]+{_NAME})?)")
KNOWN = re.compile(rf"\b(?P<v>{_NAME})\b")
PAIR = re.compile(rf"\b(?P<first>{_NAME})[ \t]+(?P<last>{_NAME})\b")
REPORTER = re.compile(rf"(?:^|[.;:!?(]\s*)(?P<v>{_NAME})[ \t]+(?:{REPORTING})\b")
SURNAME = re.compile(rf"[ \t]+(?:[A-Z]\.|{_NAME}\b)")


@dataclass
class Scrubbed:
    text: str
    replaced: dict[str, str] = field(default_factory=dict)  # placeholder -> original


class Scrubber:
    """Replaces personal data by placeholders; one instance per request, so the same value
    gets the same placeholder across the question and every memory of the pack."""

    def __init__(self) -> None:
        self.by_value: dict[tuple[str, str], str] = {}
        self.originals: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def _placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self.by_value:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            ph = f"<{kind}_{self._counts[kind]}>"
            self.by_value[key] = ph
            self.originals[ph] = value
        return self.by_value[key]

    def scrub(self, text: str) -> str:
        spans: list[tuple[int, int, str]] = []

        def add(start: int, end: int, kind: str) -> None:
            if not any(s < end and start < e for s, e, _ in spans):
                spans.append((start, end, kind))

        for m in EMAIL.finditer(text):
            add(m.start(), m.end(), "EMAIL")
        for m in BADGE.finditer(text):
            add(m.start("v"), m.end("v"), "BADGE")
        for m in PHONE_CUE.finditer(text):
            add(m.start("v"), m.end("v"), "PHONE")
        for m in PHONE.finditer(text):
            if sum(c.isdigit() for c in m.group(0)) >= 7:
                add(m.start(), m.end(), "PHONE")
        for m in TITLED.finditer(text):
            words = m.group("v").split()
            while words and words[-1].lower() in NOT_NAMES:
                words.pop()
            if words and words[0].lower() not in NOT_NAMES:
                value = " ".join(words)
                add(m.start("v"), m.start("v") + len(value), "PERSON")
        for m in KNOWN.finditer(text):
            if m.group("v").lower() in FIRST_NAMES:
                last = SURNAME.match(text, m.end())
                add(m.start(), last.end() if last else m.end(), "PERSON")
        for m in PAIR.finditer(text):  # "Tuan Murphy": a known surname after a capital
            if m.group("last").lower() in SURNAMES and \
                    m.group("first").lower() not in NOT_NAMES:
                add(m.start(), m.end(), "PERSON")
        for m in REPORTER.finditer(text):
            word = m.group("v").lower()
            if word not in NOT_NAMES and not re.fullmatch(ROLE_WORDS, word):
                add(m.start("v"), m.end("v"), "PERSON")
        out = text
        for start, end, kind in sorted(spans, reverse=True):
            out = out[:start] + self._placeholder(kind, text[start:end]) + out[end:]
        return out

    def restore(self, text: str) -> str:
        """Placeholders in ``text`` back to what they replaced (unknown ones stay)."""
        if not self.originals:
            return text
        return re.sub(r"<(?:EMAIL|PHONE|BADGE|PERSON)_\d+>",
                      lambda m: self.originals.get(m.group(0), m.group(0)), text)

    @property
    def count(self) -> int:
        return len(self.originals)
