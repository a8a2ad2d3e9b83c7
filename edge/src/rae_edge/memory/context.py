"""Context packs: the most relevant memories for a question under a token budget, for any
LLM (local or cloud) to answer from.

Memories are taken best first from hybrid search. A memory that corrections amend never
goes in without them: the group (its corrections, then the memory) goes in whole or not
at all, and corrections stand right before what they correct. The budget is a ceiling,
not a target: a pack stops when relevance drops (:class:`Cutoff`) and says why it
stopped (``stopped``: ``relevance``, ``budget`` or ``matches``). Each item carries its id and
source so an answer can cite them. Tokens are counted with the embedder's tokenizer, on
the exact text each item adds to the pack; ``tokens_all_matches`` is what sending every
matching memory (all candidates of both retrievers, with their corrections) would cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from rae_edge.errors import InvalidInputError
from rae_edge.memory.models import ContextItem, ContextPack
from rae_edge.memory.ranking import profile
from rae_edge.memory.search import Candidate, HybridSearch
from rae_sync.domain import Correction, MemoryKind

if TYPE_CHECKING:
    from rae_edge.embedding import EmbeddingService
    from rae_edge.store.duck import DuckStore

CANDIDATES = 60
MAX_BUDGET = 200_000
HEADER = ("Maintenance memories from the plant's edge node, most relevant first. A correction "
          "(reflective memory) outranks the memory it corrects.\n")


def render(item: dict[str, Any]) -> str:
    """One memory as it appears in the pack."""
    meta = [item["kind"]]
    if item.get("machine_id"):
        meta.append(f"machine {item['machine_id']}")
    if item.get("occurred_at"):
        meta.append(item["occurred_at"].date().isoformat())
    if item.get("source"):
        meta.append(f"source: {item['source']}")
    if item.get("corrects"):
        meta.append(f"corrects {item['corrects']}")
    if item.get("superseded_by"):
        meta.append(f"superseded by {', '.join(item['superseded_by'])}")
    return f"[{item['id']}] ({'; '.join(meta)})\n{item['text']}\n"


def _from_row(c: Candidate) -> dict[str, Any]:
    r = c.row
    return {"id": str(r["id"]), "kind": str(r["kind"]), "source": r.get("source"),
            "machine_id": r.get("machine_id"), "occurred_at": r.get("occurred_at"),
            "text": str(r["text"]),
            "corrects": r.get("target_id") if r["kind"] == MemoryKind.CORRECTION.value
            else None, "superseded_by": c.superseded_by}


def _from_correction(c: Correction) -> dict[str, Any]:
    return {"id": c.id, "kind": MemoryKind.CORRECTION.value,
            "source": f"{c.method.value}:{c.author}", "machine_id": c.machine_id,
            "occurred_at": c.valid_from, "text": c.text, "corrects": c.target_id,
            "superseded_by": None}


@dataclass(frozen=True)
class Group:
    """What goes into a pack whole or not at all: a memory after the corrections that amend
    it. ``score``: the memory's fused score; ``exact``: it names a code or part number of
    the query."""

    ids: list[str]
    score: float
    exact: bool = False


@dataclass(frozen=True)
class Cutoff:
    """When a pack stops before its budget: a group goes in only while its fused score is
    at least ``min_ratio`` x the best candidate's. It applies where the fused score is the
    learnt combiner's ``exp(logit - best logit)`` (plain-language queries): a likelihood
    ratio against the best match. Rank-fused scores (code-like queries, RRF) have no such
    scale, so those packs fill their budget as before; and a memory naming the query's
    code or part number is never cut for relevance. ``min_ratio`` 0: always fill.

    0.001 (a logit 6.9 below the best): on MaintIE's tuning half (objects the reported
    check set never holds) a candidate's chance of being relevant falls with its logit
    below the best: 0.95 / 0.68 / 0.47 / 0.32 / 0.17 / 0.10 at 1..6 below, then 0.02-0.05,
    the level of unrelated memories; and of the ratios swept there (0.0005-0.5), 0.001
    gave the largest saving against naive top-k at equal recall at 1k, 2k and 4k. Larger
    ratios cut recall faster than they cut tokens (bench_tokens prints both packs)."""

    min_ratio: float = 0.001


@dataclass
class Selection:
    ids: list[str] = field(default_factory=list)
    used: int = 0
    stopped: Literal["relevance", "budget", "matches"] = "matches"


def select(groups: list[Group], tokens: dict[str, int], budget: int, header_tokens: int,
           floor: float = float("-inf")) -> Selection:
    """Groups best first under ``budget``: one that does not fit is skipped (a smaller one
    further down may fit), one scoring below ``floor`` is left out (unless ``exact``).
    ``stopped``: ``budget`` when a group at or above the floor was left out for tokens (a
    larger budget would add more), else ``relevance`` when one was left out as too weak
    (a larger budget would not), else ``matches`` (every candidate went in)."""
    out = Selection(used=header_tokens)
    taken: set[str] = set()
    weak = full = False
    for g in groups:
        ids = [i for i in g.ids if i not in taken]
        if not ids:
            continue
        if g.score < floor and not g.exact:
            weak = True
            continue
        cost = sum(tokens[i] for i in ids)
        if out.used + cost > budget:
            full = True
            continue
        out.ids.extend(ids)
        taken.update(ids)
        out.used += cost
    out.stopped = "budget" if full else "relevance" if weak else "matches"
    return out


class ContextPacker:
    """Packs memories of one node under a token budget."""

    def __init__(self, duck: DuckStore, search: HybridSearch, *,
                 embedder: Callable[[], EmbeddingService], cutoff: Cutoff | None = None,
                 ) -> None:
        self.duck = duck
        self.search = search
        self._embedder = embedder  # a callable: the model loads on first use
        self.cutoff = cutoff or Cutoff()

    def groups(self, tenant_id: str, q: str, *, machine_id: str | None = None,
               as_of: datetime | None = None,
               ) -> tuple[list[Group], dict[str, dict[str, Any]], float]:
        """``(groups best first, every item by id, the relevance floor)``: the candidates
        of hybrid search, each with its corrections (found or not: a fix never travels
        without them)."""
        _, cands = self.search.candidates(tenant_id, q, machine_id=machine_id,
                                          k=CANDIDATES // 4, as_of=as_of)
        items = {str(c.row["id"]): _from_row(c) for c in cands}
        order = [str(c.row["id"]) for c in cands]
        amended = self.duck.corrections_for_targets(
            tenant_id, sorted({i.split("~", 1)[0] for i in order}), as_of)
        groups: list[Group] = []
        for c, cid in zip(cands, order, strict=True):
            cors = amended.get(cid.split("~", 1)[0], [])
            for x in cors:
                items.setdefault(x.id, _from_correction(x))
            groups.append(Group([*(x.id for x in cors), cid], c.score, bool(c.exact)))
        learnt = (self.search.fusion.code if profile(q).code_like
                  else self.search.fusion.plain).method == "learned"
        best = max((g.score for g in groups), default=0.0)
        floor = (self.cutoff.min_ratio * best if learnt and best > 0
                 else float("-inf"))
        return groups, items, floor

    def pack(self, tenant_id: str, q: str, *, machine_id: str | None = None,
             budget_tokens: int = 4000, as_of: datetime | None = None) -> ContextPack:
        if not 1 <= budget_tokens <= MAX_BUDGET:
            raise InvalidInputError(f"budget_tokens must be between 1 and {MAX_BUDGET}")
        groups, items, floor = self.groups(tenant_id, q, machine_id=machine_id, as_of=as_of)
        count = self._embedder().count_tokens
        tokens = {i: count(render(it)) for i, it in items.items()}
        header_tokens = count(HEADER)
        sel = select(groups, tokens, budget_tokens, header_tokens, floor)
        chosen = self._corrections_first(sel.ids, items)
        used = sel.used if chosen else 0
        out = [ContextItem(**items[i], tokens=tokens[i]) for i in chosen]
        total = header_tokens + sum(tokens.values())
        text = HEADER + "\n".join(render(items[i]) for i in chosen)
        return ContextPack(query=q, machine_id=machine_id, budget_tokens=budget_tokens,
                           tokens_used=used, tokens_all_matches=total,
                           tokens_saved=max(0, total - used), matches=len(items),
                           stopped=sel.stopped, items=out, text=text if chosen else "")

    @staticmethod
    def _corrections_first(chosen: list[str], items: dict[str, dict[str, Any]]) -> list[str]:
        """Each correction moved to just before the memory it corrects (when packed)."""
        present = set(chosen)
        before: dict[str, list[str]] = {}
        for i in chosen:
            target = items[i].get("corrects")
            if target and target in present and target != i:
                before.setdefault(target, []).append(i)
        moved = {c for cs in before.values() for c in cs}
        out: list[str] = []
        for i in chosen:
            if i in moved:
                continue
            out.extend(before.get(i, []))
            out.append(i)
        return out
