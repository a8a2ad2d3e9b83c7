"""Plant vocabulary for one machine, to bias Whisper towards the words its people use.

Whisper has never heard "E404" or "connector X4": left alone it writes "every 404". The
machine's own memory knows these words, so each note's prompt is built from it: error
codes (DuckDB incidents and the ``error_codes`` of its LanceDB rows), part references (a
noun and an identifier: "sensor X", "receiver LC-2"), acronyms ("PLC") and its most
frequent two-word terms ("light curtain", "oil cooler"). Whisper reads the prompt as text
spoken just before the note, so it is written as a short list after the machine's name.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from rae_edge.ingest.codes import find_codes
from rae_edge.store.duck import DuckStore
from rae_edge.store.lance import LanceStore, sql_literal

MAX_PROMPT_CHARS = 600  # Whisper keeps at most 223 prompt tokens; this stays well under
MAX_INCIDENTS = 300
MAX_ROWS = 400

_STOP_WORDS = """
a an the and or but if then than of to in on at by for with from into onto over under after
before again also all any are as be been being both can could did do does done each few had
has have having he her here him his how i is it its itself just me more most my no nor not
now off once only other our out own same she should so some such that their them there these
they this those through too up very was we were what when where which while who why will
would you your about above against below between down during further until per via
checked cleaned replaced reset removed restarted tightened fitted found changed running ran
stopped started again time times hour hours shift early late night day minutes lost first next
note since taught went still without help did got put set new old one two three four five
"""
_STOP = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"\b[A-Za-z][a-z]{2,}(?:-[a-z]+)*\b(?!-?\d)")
# A part reference: a lower-case noun, then a short upper-case identifier (X, X4, LC-2, Q1).
_PART_REF = re.compile(r"\b([a-z][a-z-]{2,20})\s+([A-Z]{1,3}(?:-?\d{1,4})?[A-Z]?)\b")
# Identifiers that stand alone: upper-case letters with digits (LC-2, Q1), acronyms (PLC)
# and product names in camel case (ProfiNet, EtherCAT, ComfyUI).
_IDENT = re.compile(r"\b([A-Z]{1,4}-?\d{1,4}[A-Z]?|[A-Z]{2,6}|[A-Z][a-z]+[A-Z][A-Za-z0-9]*)\b")
# A code split into its letter and its number (E404, F-12); how Whisper hears such letters.
_CODE_PARTS = re.compile(r"^([A-Z])-?(\d{2,5})$", re.IGNORECASE)
_LETTER_SOUNDS: dict[str, tuple[str, ...]] = {
    "E": ("every", "ee", "he", "me", "ie"),
    "F": ("ef", "eff"),
}
_NOT_ACRONYM = frozenset({"ALM", "ERR", "FAULT", "CODE", "OK", "AM", "PM", "NO", "ON", "OFF"})


@dataclass(frozen=True)
class Vocabulary:
    """The words of one machine: codes, part references, acronyms and frequent terms."""

    machine_name: str
    codes: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    terms: tuple[str, ...] = ()

    @property
    def prompt(self) -> str | None:
        """Whisper's ``initial_prompt`` (None when the machine's memory is empty).

        Labelled sentences ("Error codes: E404, E117. Parts: sensor X.") work; a bare
        comma list made tiny.en drop the first sentence of a note in trials.
        """
        if not (self.codes or self.parts or self.terms):
            return None
        out = f"{self.machine_name}." if self.machine_name else ""
        for label, items in (("Error codes", self.codes), ("Parts", self.parts),
                             ("Terms", self.terms)):
            if not items:
                continue
            piece = f" {label}: {items[0]}"
            if len(out) + len(piece) + 1 > MAX_PROMPT_CHARS:
                break
            for item in items[1:]:
                if len(out) + len(piece) + len(item) + 3 > MAX_PROMPT_CHARS:
                    break
                piece += f", {item}"
            out += piece + "."
        return out.strip()

    def fix_codes(self, text: str) -> str:
        """Writes the machine's error codes the way the plant does: "E 404", "E-404" and
        "every 404" become "E404" when E404 is one of its codes (Whisper hears the letter
        as a word). Only numbers that belong to exactly one known code are touched."""
        by_digits: dict[str, list[tuple[str, str]]] = {}
        for code in self.codes:
            m = _CODE_PARTS.match(code)
            if m:
                by_digits.setdefault(m.group(2), []).append((m.group(1).upper(), code))
        for digits, owners in by_digits.items():
            if len(owners) != 1:
                continue
            letter, code = owners[0]
            sounds = "|".join([re.escape(letter), *_LETTER_SOUNDS.get(letter, ())])
            text = re.sub(rf"\b(?:{sounds})[\s-]?{digits}\b", code, text, flags=re.IGNORECASE)
        return text

    @property
    def identifiers(self) -> tuple[str, ...]:
        """Terms with a spelling of their own (PLC, ComfyUI), not plain words."""
        return tuple(t for t in self.terms if t != t.lower())

    @property
    def hotwords(self) -> str | None:
        """Codes, part references and identifiers (faster-whisper's ``hotwords``)."""
        items = [*self.codes, *self.parts, *self.identifiers]
        return ", ".join(items) if items else None

    def fix_spelling(self, text: str) -> str:
        """:meth:`fix_codes`, then part references and identifiers in the plant's own
        spelling when Whisper got only their case wrong ("comfyUI", "Sensor x")."""
        text = self.fix_codes(text)
        for term in (*self.parts, *self.identifiers):
            text = re.sub(rf"(?<![\w-]){re.escape(term)}(?![\w-])", term, text,
                          flags=re.IGNORECASE)
        return text


def _ranked(counter: Counter[str], limit: int) -> tuple[str, ...]:
    # Most frequent first; ties in order of first appearance (Counter keeps insertion order).
    return tuple(k for k, _ in counter.most_common(limit))


def extract(machine_name: str, texts: Iterable[str], codes: Iterable[str] = ()) -> Vocabulary:
    """The vocabulary found in ``texts`` (and the structured ``codes`` given beside them)."""
    code_count: Counter[str] = Counter(c for c in codes if c)
    parts: Counter[str] = Counter()
    idents: Counter[str] = Counter()
    bigrams: Counter[str] = Counter()
    for text in texts:
        found = find_codes(text)
        code_count.update(found)
        for noun, ident in _PART_REF.findall(text):
            if noun not in _STOP and ident not in _NOT_ACRONYM and ident not in found:
                parts[f"{noun} {ident}"] += 1
        for ident in _IDENT.findall(text):
            if ident not in _NOT_ACRONYM and ident not in found:
                idents[ident] += 1
        words = [w.lower() for w in _WORD.findall(text)]
        for a, b in itertools.pairwise(words):
            if a not in _STOP and b not in _STOP:
                bigrams[f"{a} {b}"] += 1
    # Identifiers already inside a part reference need no entry of their own.
    in_parts = {p.split(" ", 1)[1] for p in parts}
    acronyms = Counter({k: v for k, v in idents.items() if k not in in_parts})
    terms = Counter({k: v for k, v in bigrams.items() if v >= 2})
    return Vocabulary(
        machine_name=machine_name,
        codes=_ranked(code_count, 12),
        parts=_ranked(parts, 12),
        terms=(*_ranked(acronyms, 6), *_ranked(terms, 12)),
    )


class HasStores(Protocol):
    """Whatever holds the node's stores (the built node, the voice service)."""

    @property
    def duck(self) -> DuckStore: ...

    @property
    def lance(self) -> LanceStore: ...


def machine_vocabulary(node: HasStores, tenant_id: str, machine_id: str) -> Vocabulary:
    """The vocabulary of one machine from its incidents (DuckDB) and its manual sections,
    shift entries, work orders and corrections (LanceDB rows of that machine)."""
    machine = node.duck.get_machine(tenant_id, machine_id)
    name = machine.name if machine else machine_id
    texts: list[str] = []
    codes: list[str] = []
    for inc in node.duck.incidents_for_machine(tenant_id, machine_id, limit=MAX_INCIDENTS):
        if inc.error_code:
            codes.append(inc.error_code)
        texts.append(inc.symptom)
        if inc.action:
            texts.append(inc.action)
    where = f"tenant_id = {sql_literal(tenant_id)} AND machine_id = {sql_literal(machine_id)}"
    if node.lance.count() > 0:
        for row in node.lance.rows(where, ["kind", "text", "section", "error_codes"], MAX_ROWS):
            if row.get("kind") == "incident":
                continue  # already read from DuckDB
            texts.append(str(row["text"]))
            if row.get("section"):
                texts.append(str(row["section"]))
            codes.extend(row.get("error_codes") or [])
    return extract(name, texts, codes)
