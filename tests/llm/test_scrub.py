"""The personal-data scrubber used before a remote LLM: nothing of the real maintenance
data's codes and numbers is altered (every row of ``../shared/data``), personal data in
generated shift notes is found (recall >= 0.95) and everything is restored exactly."""

from __future__ import annotations

from collections import Counter

import pytest

from rae_edge.llm.scrub import Scrubber
from tests.llm.shift_notes import DATA, altered_codes, shared_rows, shift_notes


@pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} (the shared data sets) is absent")
def test_no_code_or_number_of_the_shared_data_is_altered() -> None:
    rows = 0
    altered: Counter[str] = Counter()
    for name, text in shared_rows():
        s = Scrubber()
        out = s.scrub(text)
        altered[name] += altered_codes(text, out)
        assert s.restore(out) == text
        rows += 1
    assert rows > 12_000
    assert sum(altered.values()) == 0, altered


def test_recall_of_personal_data_in_shift_notes() -> None:
    notes = shift_notes()
    found = total = 0
    for text, pii in notes:
        s = Scrubber()
        out = s.scrub(text)
        assert s.restore(out) == text
        for value in pii:
            total += 1
            found += value not in out
    assert total >= 800
    assert found / total >= 0.95, f"recall {found / total:.3f}"


def test_codes_next_to_personal_data_are_kept() -> None:
    text = ("2026-11-12 14:30: technician Anna Kowalski found E404 on press-1, replaced "
            "LC-2 (6205-2RS), 210 bar, 24 V; anna.k@plant.example.com, +49 171 2345678, "
            "badge 40917, ext. 4711")
    s = Scrubber()
    out = s.scrub(text)
    for kept in ("2026-11-12", "14:30", "E404", "press-1", "LC-2", "(6205-2RS),", "210 bar",
                 "24 V;"):
        assert kept in out
    for gone in ("Anna", "Kowalski", "anna.k@", "2345678", "40917", "4711"):
        assert gone not in out
    assert sorted(s.originals.values()) == sorted([
        "Anna Kowalski", "anna.k@plant.example.com", "+49 171 2345678", "40917", "4711"])
    # The same value gets the same placeholder; the answer comes back with the originals.
    again = s.scrub("Ask Anna Kowalski.")
    assert again == f"Ask {s.by_value[('PERSON', 'Anna Kowalski')]}."
    assert s.restore("Per <PERSON_1> [inc_1]") == "Per Anna Kowalski [inc_1]"
