"""Context packs that stop when relevance drops: the budget is a ceiling, a group (a memory
after its corrections) goes in whole or not at all, and the pack says why it stopped. Real
node (DuckDB, LanceDB, the packaged embedder); :func:`select` also on hand-made groups."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from rae_edge import config
from rae_edge.memory.context import HEADER, ContextPacker, Cutoff, Group, select
from rae_edge.node import EdgeNode
from rae_sync.domain import Correction, Incident, Machine

UNRELATED = [
    "Label printer ribbon torn, replaced ribbon cassette",
    "Forklift battery charger fault light blinking", "Canteen coffee machine descaled",
    "Parking lot lamp post flickering at night", "Office badge reader rejects cards",
    "Welding torch tip clogged with spatter, cleaned tip",
    "Paint booth filter mat saturated, swapped mat",
    "Conveyor carton jam at transfer, removed carton", "Air compressor drain valve stuck open",
    "Window in the break room cracked, taped it", "Roof gutter blocked with leaves",
    "Printer out of toner in shipping office", "Network switch port down in rack 3",
    "Desk chair wheel broken", "Heating radiator in office cold",
    "Loading dock leveller slow to rise"]
QUERY = "hydraulic cylinder seal leaking oil"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeNode]:
    """One press with one memory about a leaking cylinder seal among 80 unrelated ones."""
    n = EdgeNode(config.load(None, data_dir=tmp_path_factory.mktemp("ctx")))
    n.duck.upsert_machines([Machine(tenant_id="acme", id="PRESS-07", name="Press 7",
                                    qr_code="QR:PRESS-07")])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    incs = [Incident(tenant_id="acme", machine_id="PRESS-07",
                     occurred_at=start + timedelta(hours=i), symptom=f"{u} (ticket {i})")
            for i, u in enumerate(u for _ in range(5) for u in UNRELATED)]
    incs.append(Incident(tenant_id="acme", machine_id="PRESS-07",
                         occurred_at=datetime(2026, 2, 1, tzinfo=UTC),
                         symptom="Main hydraulic cylinder seal leaking oil under the ram",
                         action="Replaced the cylinder seal kit"))
    n.memory.add_incidents("acme", incs)
    yield n
    n.close()


def leak_id(node: EdgeNode) -> str:
    (inc,) = [i for i in node.duck.incidents_for_machine("acme", "PRESS-07")
              if "cylinder seal" in i.symptom]
    return inc.id


def packer(node: EdgeNode, ratio: float) -> ContextPacker:
    return ContextPacker(node.duck, node.memory.searcher, embedder=lambda: node.embedder,
                         cutoff=Cutoff(ratio))


def test_pack_with_one_relevant_memory_stops_early_and_says_so(node: EdgeNode) -> None:
    # A ratio of 0.1: everything scoring under a tenth of the best match stays out.
    pack = packer(node, 0.1).pack("acme", QUERY, budget_tokens=4000)
    assert pack.stopped == "relevance"
    assert [i.id for i in pack.items] == [leak_id(node)]
    header = node.embedder.count_tokens(HEADER)
    assert pack.tokens_used == header + pack.items[0].tokens < 4000 // 10
    assert pack.matches > 20  # candidates of both retrievers; all but one left out
    assert pack.tokens_saved == pack.tokens_all_matches - pack.tokens_used
    # The same question, the pack told to fill: every match that fits, first the same one.
    full = packer(node, 0.0).pack("acme", QUERY, budget_tokens=4000)
    assert full.stopped in ("budget", "matches")
    assert full.items[0].id == leak_id(node) and len(full.items) > 20
    assert full.tokens_used > 10 * pack.tokens_used
    # The node's own packer (the default ratio, 1/1000, from bench_tokens) does not cut
    # here: the learnt combiner puts these unrelated memories only 2-5 logits below the
    # best, well above its floor (6.9), so the budget ends the pack, and says so.
    default = node.memory.context("acme", QUERY, budget_tokens=500)
    assert default.items[0].id == leak_id(node)
    assert default.stopped == "budget" and len(default.items) > 1


def test_a_memory_never_goes_in_without_its_corrections(
        node: EdgeNode) -> None:
    target = leak_id(node)
    node.memory.record_correction(Correction(
        tenant_id="acme", machine_id="PRESS-07", author="tech#7", target_id=target,
        text="The seal was fine: the cylinder rod was scored and tore each new seal",
        valid_from=datetime(2026, 2, 3, tzinfo=UTC)))
    p = packer(node, 0.1)
    pack = p.pack("acme", QUERY, budget_tokens=4000)
    kinds = [(i.kind, i.corrects) for i in pack.items]
    assert kinds[-1] == ("incident", None) and pack.items[-1].id == target
    assert ("correction", target) in kinds  # right before what it corrects
    assert kinds.index(("correction", target)) == len(kinds) - 2
    assert pack.stopped == "relevance"
    header = node.embedder.count_tokens(HEADER)
    cor = next(i for i in pack.items if i.kind == "correction")
    inc = pack.items[-1]
    assert inc.superseded_by == [cor.id]
    # A budget that fits the memory alone but not with its correction: the memory stays
    # out (the correction, a memory of its own, may go in alone: it names what it amends).
    alone = header + inc.tokens
    assert alone < header + inc.tokens + cor.tokens
    small = p.pack("acme", QUERY, budget_tokens=alone)
    assert target not in [i.id for i in small.items]
    assert small.stopped == "budget" and small.tokens_used <= alone
    for q_budget in (alone, 4000):
        packed = p.pack("acme", QUERY, budget_tokens=q_budget)
        ids = [i.id for i in packed.items]
        for item in packed.items:
            assert set(item.superseded_by or []) <= set(ids)

def test_select_skips_weak_or_oversized_groups_whole() -> None:
    tokens = {"c1": 30, "m1": 40, "m2": 50, "c3": 5, "m3": 5, "m4": 20}
    groups = [Group(["c1", "m1"], 1.0), Group(["m2"], 0.5), Group(["c3", "m3"], 0.01),
              Group(["m4"], 0.001, exact=True)]
    # Floor 0.1: c3+m3 is too weak (both out, never the correction alone); m4 names the
    # query's code and is kept whatever its score.
    sel = select(groups, tokens, budget=10_000, header_tokens=10, floor=0.1)
    assert sel.ids == ["c1", "m1", "m2", "m4"]
    assert sel.used == 10 + 30 + 40 + 50 + 20
    assert sel.stopped == "relevance"
    # A budget that the first group does not fit: skipped whole, the next ones still go in;
    # a larger budget would add more, so it stopped for the budget.
    sel = select(groups, tokens, budget=75, header_tokens=10, floor=0.1)
    assert sel.ids == ["m2"] and sel.used == 60 and sel.stopped == "budget"
    # No floor: everything that fits, in order; all in -> "matches".
    sel = select(groups, tokens, budget=10_000, header_tokens=10)
    assert sel.ids == ["c1", "m1", "m2", "c3", "m3", "m4"] and sel.stopped == "matches"
    # A memory that is also a correction found on its own is packed once.
    sel = select([Group(["c1", "m1"], 1.0), Group(["c1"], 0.9)], tokens, 10_000, 10)
    assert sel.ids == ["c1", "m1"] and sel.used == 80


def test_code_like_queries_fill_their_budget(node: EdgeNode) -> None:
    """Rank-fused scores (a query naming a code) carry no relevance scale: no cut."""
    _, _, floor = node.memory.packer.groups("acme", "E404 light curtain")
    assert floor == float("-inf")
    _, _, floor = node.memory.packer.groups("acme", QUERY)
    assert floor > 0
    assert node.memory.packer.cutoff == Cutoff()

