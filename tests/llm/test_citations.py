"""Citations read back from answers: unknown ids removed and reported, a structured answer
rendered inline, an answer cut off mid-JSON keeps its complete sentences, and the text shown
while streaming only ever grows."""

from __future__ import annotations

import json

from rae_edge.llm.citations import check, parse_structured, visible_text

PACK = {"inc_a1", "man_b2", "cor_c3"}


def test_unknown_ids_are_removed_and_reported() -> None:
    c = check("Replace LC-2 [inc_a1]. Then [inc_zz] torque 80 Nm [man_b2] [inc_a1].", PACK)
    assert c.text == "Replace LC-2 [inc_a1]. Then torque 80 Nm [man_b2] [inc_a1]."
    assert c.cited == ["inc_a1", "man_b2"]
    assert c.rejected == ["inc_zz"]


def test_structured_answer_and_a_cut_off_one() -> None:
    full = {"no_evidence": False, "sentences": [
        {"text": 'Swap "X4"', "cites": ["inc_a1"]}, {"text": "Amended", "cites": ["cor_c3"]}]}
    raw = json.dumps(full)
    assert parse_structured(raw) == ('Swap "X4" [inc_a1] Amended [cor_c3]', False)
    cut = raw[: raw.index("Amended") + 4]
    assert parse_structured(cut) == ('Swap "X4" [inc_a1]', False)
    assert parse_structured('{"no_evidence": true, "sentences": [') == ("", True)
    # cut off inside the citation list: the ids written in full still count
    assert parse_structured('{"no_evidence":false,"sentences":[{"text": "Swap", "cites":'
                            '["inc_a1","man_b2","ma') == ("Swap [inc_a1] [man_b2]", False)


def test_streamed_text_only_grows() -> None:
    raw = json.dumps({"no_evidence": False, "sentences": [
        {"text": "Clean the lens", "cites": ["inc_a1", "inc_zz"]},
        {"text": "then re-teach", "cites": ["man_b2"]}]})
    shown = ""
    for n in range(1, len(raw) + 1):
        now = visible_text(raw[:n], True, PACK)
        assert now.startswith(shown), (shown, now)
        shown = now
    assert "[inc_zz]" not in shown and "[inc_a1]" in shown and shown.endswith("[man_b2]")
