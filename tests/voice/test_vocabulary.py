"""A machine's vocabulary comes from its own incidents (DuckDB) and manual sections
(LanceDB), never from another machine's; it writes codes the way the plant does."""

from __future__ import annotations

from rae_edge.node import EdgeNode
from rae_edge.voice.vocabulary import Vocabulary, extract, machine_vocabulary
from rae_sync.domain import DocumentChunk, MemoryKind
from tests.voice.conftest import TENANT, seed_plant


def test_machine_vocabulary_from_incidents_and_manual(node: EdgeNode) -> None:
    seed_plant(node, index=False)
    node.indexer.index_chunks([DocumentChunk(
        tenant_id=TENANT, id="man-press-1-s4", document_id="man-press-1",
        document_title="Press manual", kind=MemoryKind.MANUAL, section="4.2 Fault E404",
        text="E404: the light curtain receiver LC-2 reports no beam. Check the hydraulic "
             "accumulator valve V12 and the light curtain alignment.",
        error_codes=("E404",), machine_ids=("press-1",))])
    v = machine_vocabulary(node, TENANT, "press-1")
    assert v.machine_name == "Hydraulic press 1"
    assert v.codes[0] == "E404"  # the most frequent code first
    assert set(v.codes) == {"E404", "E117"}  # F-12 belongs to the conveyor
    assert {"sensor X", "connector X4", "switch S3", "valve V12"} <= set(v.parts)
    assert "light curtain" in v.terms
    prompt = v.prompt
    assert prompt is not None and prompt.startswith("Hydraulic press 1.")
    assert "Error codes: E404, E117." in prompt and "valve V12" in prompt
    assert "Q1" not in prompt and "B7" not in prompt
    assert machine_vocabulary(node, TENANT, "conveyor-3").codes == ("F-12",)


def test_unknown_or_empty_machine_has_no_prompt(node: EdgeNode) -> None:
    v = machine_vocabulary(node, TENANT, "nowhere-1")
    assert v.prompt is None and v.hotwords is None
    assert v.fix_codes("every 404") == "every 404"  # no codes known: nothing rewritten


def test_codes_written_the_plant_way() -> None:
    v = extract("Press", ["E404 light curtain", "F-12 overload", "E117 oil hot"])
    assert v.fix_codes("Every 404 again") == "E404 again"
    assert v.fix_codes("without E 404.") == "without E404."
    assert v.fix_codes("fault F12 and f 12") == "fault F-12 and F-12"
    assert v.fix_codes("me 117 came back") == "E117 came back"
    # Numbers of no known code, longer numbers and plain words stay as they are.
    assert v.fix_codes("every 4040 parts, 404 bar, everyone") == "every 4040 parts, 404 bar, " \
                                                                  "everyone"
    # A number two codes share (E12 and F12) is left alone: no guessing.
    shared = Vocabulary("Press", codes=("E12", "F12"))
    assert shared.fix_codes("every 12") == "every 12"
