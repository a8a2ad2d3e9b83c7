"""Data for the scrubber's figures (test and bench alike).

- :func:`shared_rows`: the text of every row of every set in ``../shared/data`` (each
  CSV cell, each short text, each annotated text): real maintenance language full of part
  numbers, error codes, asset ids, measurements and dates that must pass unchanged;
- :func:`shift_notes`: generated shift notes with the personal data a plant's notes carry
  (names with and without a role word before them, e-mails, phones in several national
  formats, badge and employee numbers) next to the same kind of codes, each with the list
  of personal values it holds. A quarter of the first names are not on the scrubber's list
  (they are caught only after a role word, or not at all), so recall is not by
  construction.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

LISTED_FIRST = ["Anna", "Thomas", "Maria", "Peter", "Fatima", "Mehmet", "Priya", "Jan",
                "Sophie", "Lukas", "Elena", "Carlos", "Wei", "Olga", "Jakub", "Emma", "Omar",
                "Ingrid", "Rahul", "Chloe"]
UNLISTED_FIRST = ["Tuan", "Siobhan", "Bogdan", "Kwame", "Aiyana", "Thandiwe", "Rasmus",
                  "Eero"]
SURNAMES = ["Kowalski", "Nguyen", "Okafor", "Schmidt", "Garcia", "Yilmaz", "Patel", "Novak",
            "Dubois", "Rossi", "Haddad", "Larsen", "Kim", "Ivanova", "Murphy", "Becker"]
ROLES = ["technician", "operator", "Technician", "Supervisor", "foreman", "electrician",
         "Mr", "Ms", "Dr"]
CODES = ["E404", "E117", "F-12", "AL-3021", "ERR 0x1F", "P0171"]
PARTS = ["6205-2RS", "LC-2", "X4", "SKF 6306", "PN 4711-023", "M12x1.5", "valve V-17"]
MEASURES = ["210 bar", "64 C", "24 V", "0.05 mm", "1450 rpm", "3.2 A", "80 Nm"]
MACHINES = ["press-1", "cnc-2", "conveyor-3", "AID7", "robot-4"]
DATES = ["2026-11-12", "12/11/2026", "14:30", "03.10.2025", "Nov 12"]


def _phone(rng: random.Random) -> str:
    n = [rng.randint(0, 9) for _ in range(12)]
    d = "".join(map(str, n))
    return rng.choice([f"+49 171 {d[:7]}", f"+1 (555) {d[:3]}-{d[3:7]}",
                       f"555-{d[:3]}-{d[3:7]}", f"+44 20 {d[:4]} {d[4:8]}",
                       f"0049 89 {d[:6]}", f"+33 6 {d[:2]} {d[2:4]} {d[4:6]} {d[6:8]}"])


def shift_notes(n: int = 400, seed: int = 16) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    notes: list[tuple[str, list[str]]] = []
    for _ in range(n):
        first = rng.choice(LISTED_FIRST if rng.random() < 0.75 else UNLISTED_FIRST)
        last = rng.choice(SURNAMES)
        full = f"{first} {last}"
        email = f"{first.lower()}.{last.lower()}@plant{rng.randint(1, 9)}.example.com"
        phone = _phone(rng)
        badge = f"{rng.randint(10000, 99999)}"
        role = rng.choice(ROLES)
        code, part, meas = rng.choice(CODES), rng.choice(PARTS), rng.choice(MEASURES)
        mach, date = rng.choice(MACHINES), rng.choice(DATES)
        templates = [
            (f"{date}: {role} {full} found {code} on {mach}, replaced {part}, "
             f"pressure {meas}. Call {phone} if it recurs.", [full, phone]),
            (f"{full} (badge {badge}) reset {code} on {mach} at {date}; {part} worn, "
             f"measured {meas}.", [full, badge]),
            (f"Night shift {date}: {mach} stopped with {code}. Spoke to {role} {last}, "
             f"contact {email}. Ordered {part}.", [last, email]),
            (f"{first} says {mach} shows {code} again after {part} swap ({meas}); "
             f"reach her on {phone} or {email}.", [first, phone, email]),
            (f"Employee no. {badge} ({full}) logged {code} on {mach}, {meas}, {date}.",
             [badge, full]),
        ]
        text, pii = rng.choice(templates)
        notes.append((text, pii))
    return notes


def shared_rows() -> Iterator[tuple[str, str]]:
    """(set name, text) for every row of every text set of ``../shared/data``."""
    for path in [*sorted((DATA / "maintnet").glob("*.csv")),
                 DATA / "mwo2kg" / "work_orders.csv"]:
        with path.open(encoding="utf-8-sig", newline="") as f:
            for r in csv.reader(f):
                yield path.name, " | ".join(r)
    for name in ("train_3200.json", "dev_401.json", "test_401.json"):
        for line in (DATA / "mwo2kg" / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield name, " ".join(json.loads(line)["tokens"])
    for line in (DATA / "mwo2kg" / "work_orders_short_text.txt").read_text(
            encoding="utf-8").splitlines():
        yield "work_orders_short_text.txt", line
    for doc in json.loads((DATA / "maintie" / "gold_release.json").read_text(encoding="utf-8")):
        yield "gold_release.json", str(doc["text"])


_TOKEN = re.compile(r"\S+")
_CODEISH = re.compile(r"\d|^[A-Z]{2,}[\W_]*$|[A-Z]+[-/][A-Z0-9]+")


def altered_codes(original: str, scrubbed: str) -> int:
    """Tokens of ``original`` with a digit (numbers, part numbers, codes, ids, dates,
    measurements) or in ALL CAPS that are missing from ``scrubbed`` (duplicates counted)."""
    before = Counter(t for t in _TOKEN.findall(original) if _CODEISH.search(t))
    after = Counter(_TOKEN.findall(scrubbed))
    return sum(max(0, c - after[t]) for t, c in before.items())
