"""``/ask``: a question answered by the configured LLM from the node's context pack.

The flow: pack the most relevant memories under the budget; write the prompt (and, where
the endpoint takes one, the JSON schema that limits citations to the pack's ids); scrub
personal data when the endpoint is remote; call; restore the placeholders; keep only
citations of memories that were sent (others are removed and reported). An empty pack is
answered "no memory" without calling the model, and so is an answer that cites nothing
the pack holds: the node never passes on an uncited guess. The sha256 of exactly what was
sent goes into the answer and the audit log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from rae_edge.config import LlmSettings
from rae_edge.errors import InvalidInputError
from rae_edge.llm import citations, prompt
from rae_edge.llm.client import Completion, LlmClient, LlmError, StreamState
from rae_edge.llm.scrub import Scrubber
from rae_edge.memory.models import ContextItem, ContextPack


class ContextSource(Protocol):
    """What the asker needs of the memory service: a context pack under a budget."""

    def context(self, tenant_id: str, q: str, *, machine_id: str | None = None,
                budget_tokens: int = 4000, as_of: datetime | None = None) -> ContextPack: ...

NO_EVIDENCE = "The node has no memory that answers this question."
MAX_QUESTION = 2000
HEALTH_TTL_S = 10.0


class Citation(BaseModel):
    id: str
    kind: str
    machine_id: str | None = None
    source: str | None = None
    occurred_at: datetime | None = None
    corrects: str | None = Field(default=None, description="for a correction: the memory "
                                 "it amends (the correction wins over it)")
    excerpt: str


class AskAnswer(BaseModel):
    question: str
    answer: str = Field(description="the answer, citing memories inline as [id]")
    evidence: bool = Field(description="false: the pack held nothing that answers it")
    citations: list[Citation] = Field(description="every memory cited, in order; each was "
                                      "in the context sent")
    rejected_citations: list[str] = Field(description="ids the model cited that were not "
                                          "in the context sent (removed from the answer)")
    context_ids: list[str] = Field(description="the memories sent to the model, in order")
    model: str
    prompt_sha256: str | None = Field(description="sha256 of the exact request (model, "
                                      "messages, schema); None when no model was called")
    structured: bool
    scrubbed: int = Field(description="personal data items replaced before sending")
    tokens_context: int
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    elapsed_ms: float


@dataclass
class Prepared:
    question: str
    pack: ContextPack
    messages: list[dict[str, str]]
    schema: dict[str, Any] | None
    sha256: str | None
    scrubber: Scrubber
    structured: bool
    model: str
    started: float

    @property
    def ids(self) -> list[str]:
        return [i.id for i in self.pack.items]


def _citation(item: ContextItem) -> Citation:
    return Citation(id=item.id, kind=item.kind, machine_id=item.machine_id,
                    source=item.source, occurred_at=item.occurred_at,
                    corrects=item.corrects, excerpt=item.text[:240])


class Asker:
    """The node's ``/ask``; the LLM client is made on first use (settings checked then)."""

    def __init__(self, memory: ContextSource, settings: LlmSettings) -> None:
        self.memory = memory
        self.settings = settings
        self._client: LlmClient | None = None
        self._lock = threading.Lock()
        self._health: tuple[float, dict[str, Any]] | None = None
        self._probing = False

    def client(self) -> LlmClient:
        with self._lock:
            if self._client is None:
                self._client = LlmClient(self.settings)
            return self._client

    def prepare(self, tenant_id: str, question: str, *, machine_id: str | None = None,
                as_of: datetime | None = None, budget_tokens: int | None = None) -> Prepared:
        question = question.strip()
        if not question or len(question) > MAX_QUESTION:
            raise InvalidInputError(f"question must be 1 to {MAX_QUESTION} characters")
        self.client()  # 503 before any work when no LLM is configured
        started = time.monotonic()
        pack = self.memory.context(tenant_id, question, machine_id=machine_id,
                                   budget_tokens=budget_tokens or self.settings.budget_tokens,
                                        as_of=as_of)
        structured = self.settings.structured_output != "off"
        scrubber = Scrubber()
        msgs: list[dict[str, str]] = []
        schema = None
        if pack.items:
            msgs = prompt.messages(question, pack, structured)
            if self.settings.remote:
                msgs = [{**m, "content": scrubber.scrub(m["content"])} for m in msgs]
            schema = prompt.answer_schema([i.id for i in pack.items]) if structured else None
        sha = prompt.fingerprint(msgs, schema, self.settings.model) if msgs else None
        return Prepared(question, pack, msgs, schema, sha, scrubber, structured,
                        self.settings.model, started)

    def answer(self, prep: Prepared) -> AskAnswer:
        if not prep.pack.items:
            return self._finish(prep, Completion(text="", model=prep.model))
        return self._finish(prep, self.client().complete(prep.messages, prep.schema))

    def stream(self, prep: Prepared) -> Iterator[tuple[str, Any]]:
        """``("delta", text)`` pieces of the visible answer, then ``("answer", AskAnswer)``.
        The first piece is produced before this returns control over the endpoint's first
        token, so a caller that takes it first turns a dead endpoint into a 503."""
        if not prep.pack.items:
            yield "answer", self.answer(prep)
            return
        state = StreamState()
        raw = ""
        shown = ""
        ids = set(prep.ids)
        for piece in self.client().stream(prep.messages, prep.schema, state):
            raw += piece
            visible = citations.visible_text(raw, prep.structured, ids,
                                             prep.scrubber.restore)
            if visible.startswith(shown) and len(visible) > len(shown):
                yield "delta", visible[len(shown):]
                shown = visible
        yield "answer", self._finish(prep, Completion(
            text=raw, model=state.model or prep.model, prompt_tokens=state.prompt_tokens,
            completion_tokens=state.completion_tokens))

    def _finish(self, prep: Prepared, c: Completion) -> AskAnswer:
        no_evidence = not prep.pack.items
        text = c.text
        if prep.pack.items and prep.structured:
            text, no_evidence = citations.parse_structured(c.text)
        checked = citations.check(prep.scrubber.restore(text), set(prep.ids))
        evidence = bool(checked.cited) and not no_evidence
        by_id = {i.id: i for i in prep.pack.items}
        return AskAnswer(
            question=prep.question, answer=checked.text if evidence else NO_EVIDENCE,
            evidence=evidence, citations=[_citation(by_id[i]) for i in checked.cited],
            rejected_citations=checked.rejected, context_ids=prep.ids,
            model=c.model or prep.model, prompt_sha256=prep.sha256,
            structured=prep.structured, scrubbed=prep.scrubber.count,
            tokens_context=prep.pack.tokens_used, prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            elapsed_ms=round((time.monotonic() - prep.started) * 1000, 1))

    def health(self) -> dict[str, Any]:
        """``{"state": "off"|"ok"|"down"|"misconfigured"|"checking", ...}`` without waiting:
        the last probe's result; a probe older than ``HEALTH_TTL_S`` is redone in the
        background (``/health`` must answer at once even when the LLM hangs)."""
        if not self.settings.enabled:
            return {"state": "off"}
        now = time.monotonic()
        with self._lock:
            last = self._health
            stale = last is None or now - last[0] >= HEALTH_TTL_S
            if stale and not self._probing:
                self._probing = True
                threading.Thread(target=self._probe, name="llm-health", daemon=True).start()
        return last[1] if last is not None else {"state": "checking"}

    def _probe(self) -> None:
        try:
            result = self.probe()
        finally:
            with self._lock:
                self._probing = False
        with self._lock:
            self._health = (time.monotonic(), result)

    def probe(self) -> dict[str, Any]:
        """Asks the endpoint now (its model list; no tokens spent)."""
        try:
            client = self.client()
        except LlmError as exc:
            result: dict[str, Any] = {"state": "misconfigured", "reason": str(exc)}
        else:
            result = {"remote": self.settings.remote, **client.probe()}
        return result
