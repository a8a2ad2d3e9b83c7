"""What the LLM is sent: instructions, the context pack (each memory under its id) and the
question; and, for endpoints that take one, the JSON schema of a cited answer whose
citations can only be ids of that pack (an ``enum``), so even a small model cannot cite a
memory it was not given."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rae_edge.memory.models import ContextPack

INSTRUCTIONS = (
    "You answer a maintenance technician's question using ONLY the plant memories given "
    "below. Each memory starts with its id in square brackets. After each sentence, cite "
    "the memories it relies on by id in square brackets, for example [inc_0123abcd]. A "
    "memory marked 'correction' amends the memory named after 'corrects': state the "
    "corrected fact and say that it amends that memory. If the memories do not answer the "
    "question, say that the node has no memory about it; never guess. Be brief.")
STRUCTURED = (" Answer as JSON: 'no_evidence' (true when the memories do not answer the "
              "question) and 'sentences', each with its 'text' and the ids it 'cites'.")
MAX_SENTENCES = 8
MAX_CITES = 2  # an id costs a small model ~15 tokens
MAX_SENTENCE = 240  # characters: a sentence, not an essay (and room left for its citations)


def messages(question: str, pack: ContextPack, structured: bool) -> list[dict[str, str]]:
    system = INSTRUCTIONS + (STRUCTURED if structured else "")
    user = f"Memories:\n{pack.text}\nQuestion: {question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def answer_schema(ids: list[str]) -> dict[str, Any]:
    """A cited answer: sentences, each citing at least one id, and only ids from ``ids``."""
    return {
        "type": "object",
        "properties": {
            "no_evidence": {"type": "boolean"},
            "sentences": {"type": "array", "minItems": 1, "maxItems": MAX_SENTENCES, "items": {
                "type": "object",
                "properties": {"text": {"type": "string", "maxLength": MAX_SENTENCE},
                               "cites": {"type": "array", "minItems": 1,
                                         "maxItems": MAX_CITES,
                                         "items": {"type": "string", "enum": ids}}},
                "required": ["text", "cites"], "additionalProperties": False}},
        },
        "required": ["no_evidence", "sentences"], "additionalProperties": False}


def fingerprint(msgs: list[dict[str, str]], schema: dict[str, Any] | None, model: str) -> str:
    """sha256 of exactly what was sent (model, messages, schema) as canonical JSON: with the
    audit entry anyone can later prove what the model saw."""
    blob = json.dumps({"model": model, "messages": msgs, "schema": schema},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
