"""Context packs: the most relevant memories for a question under a token budget, for any
LLM (local or cloud) to answer from.

Memories are taken best first from hybrid search. A memory that corrections amend never
goes in without them: the group (its corrections, then the memory) goes in whole or not
at all, and corrections stand right before what they correct. Each item carries its id and
source so an answer can cite them. Tokens are counted with the embedder's tokenizer, on
the exact text each item adds to the pack; ``tokens_all_matches`` is what sending every
matching memory (all candidates of both retrievers, with their corrections) would cost.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rae_edge.errors import InvalidInputError
from rae_edge.memory.models import ContextItem, ContextPack
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


class ContextPacker:
    """Packs memories of one node under a token budget."""

    def __init__(self, duck: DuckStore, search: HybridSearch, *,
                 embedder: Callable[[], EmbeddingService]) -> None:
        self.duck = duck
        self.search = search
        self._embedder = embedder  # a callable: the model loads on first use

    def pack(self, tenant_id: str, q: str, *, machine_id: str | None = None,
             budget_tokens: int = 4000, as_of: datetime | None = None) -> ContextPack:
        if not 1 <= budget_tokens <= MAX_BUDGET:
            raise InvalidInputError(f"budget_tokens must be between 1 and {MAX_BUDGET}")
        _, cands = self.search.candidates(tenant_id, q, machine_id=machine_id,
                                          k=CANDIDATES // 4, as_of=as_of)
        items = {str(c.row["id"]): _from_row(c) for c in cands}
        order = [str(c.row["id"]) for c in cands]
        # Every correction of a candidate, found or not: a fix never travels without them.
        amended = self.duck.corrections_for_targets(
            tenant_id, sorted({i.split("~", 1)[0] for i in order}), as_of)
        fixes: dict[str, list[str]] = {}
        for cid in order:
            cors = amended.get(cid.split("~", 1)[0], [])
            for c in cors:
                items.setdefault(c.id, _from_correction(c))
            if cors:
                fixes[cid] = [c.id for c in cors]
        count = self._embedder().count_tokens
        tokens = {i: count(render(it)) for i, it in items.items()}
        header_tokens = count(HEADER)
        used = header_tokens
        chosen: list[str] = []
        taken: set[str] = set()
        for cid in order:
            if cid in taken:
                continue
            group = [c for c in fixes.get(cid, []) if c not in taken] + [cid]
            cost = sum(tokens[g] for g in group)
            if used + cost > budget_tokens:
                continue  # a smaller memory further down may still fit
            chosen.extend(group)
            taken.update(group)
            used += cost
        chosen = self._corrections_first(chosen, items)
        out = [ContextItem(**items[i], tokens=tokens[i]) for i in chosen]
        total = header_tokens + sum(tokens.values())
        text = HEADER + "\n".join(render(items[i]) for i in chosen)
        return ContextPack(query=q, machine_id=machine_id, budget_tokens=budget_tokens,
                           tokens_used=used if chosen else 0, tokens_all_matches=total,
                           tokens_saved=max(0, total - (used if chosen else 0)),
                           matches=len(items), items=out, text=text if chosen else "")

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
