"""/ask: the personal-data scrubber's figures and /ask with the local test LLM (time to
first token, tokens/s, share of answers whose citations all resolve), each beside its
baseline or target. (MCP's overhead against HTTP: ``bench_mcp``.)

- scrubber: every row of ``../shared/data`` scrubbed, the codes/numbers altered counted
  (target 0); recall of personal values in generated shift notes (target >= 0.95);
- /ask: llama.cpp's server with the Gemma 3 270M GGUF on 2 threads (``scripts/llm-server``;
  skipped when absent), streamed answers over the sample plant: TTFT p50/p95 (first
  ``delta`` event, the node's packing included), completion tokens/s after the first token,
  each beside the same messages and schema sent straight to the llama.cpp server (what the
  node adds; the two alternate in order, and a one-token request with another prompt goes
  before each so neither reuses the other's cached prompt);
  share of answers whose citations all resolve: each cited id was in the pack sent and is a
  memory in the node's store (target 100 %); and how many ids the model itself cited that
  the node had to strip (``rejected_citations``; the JSON schema's enum should make it 0).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import Row, main_for, percentiles, row

QUESTIONS = ["What fixed E404 on the hydraulic press?",
             "Why does the packaging conveyor stop?",
             "What should I check when the oil temperature is too high?",
             "How was the light curtain fault solved?",
             "What is wrong with the CNC spindle?",
             "Which part was replaced on the robot gripper?",
             "What causes the belt to slip?",
             "What did the last correction say about sensor X?"]
BUDGET = 700
MAX_ANSWER = 80


def scrub_rows() -> list[Row]:
    from rae_edge.llm.scrub import Scrubber
    from tests.llm.shift_notes import DATA, altered_codes, shared_rows, shift_notes

    out: list[Row] = []
    if DATA.exists():
        rows = altered = replaced = 0
        for _, text in shared_rows():
            s = Scrubber()
            scrubbed = s.scrub(text)
            altered += altered_codes(text, scrubbed)
            replaced += s.count
            rows += 1
        out.append(row("scrub: codes/numbers altered (shared data)", altered, "tokens",
                       target="0", ok=altered == 0,
                       notes=f"{rows} rows of every set in ../shared/data; {replaced} values "
                             "taken for personal data there"))
    found = total = 0
    for text, pii in shift_notes():
        scrubbed = Scrubber().scrub(text)
        total += len(pii)
        found += sum(v not in scrubbed for v in pii)
    out.append(row("scrub: recall of personal data (shift notes)", found / total, "",
                   target=">= 0.95", ok=found / total >= 0.95, higher_is_better=True,
                   notes=f"{total} names, e-mails, phones, badge numbers in 400 generated "
                         "notes (the notes share the scrubber's surname list: upper bound)"))
    return out


def _read_stream(r: httpx.Response) -> tuple[list[float], dict[str, Any]]:
    """The times of the ``delta`` events of a streamed answer and its ``answer`` event."""
    deltas: list[float] = []
    final: dict[str, Any] = {}
    event = ""
    for line in r.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            if event == "delta":
                deltas.append(time.perf_counter())
            elif event == "answer":
                final = json.loads(line[5:])
    return deltas, final


def _rate(tokens: int | None, first: float | None, end: float) -> float | None:
    return tokens / (end - first) if tokens and first is not None and end > first else None


def ask_rows(n: int) -> list[Row]:
    from rae_edge.llm import citations, prompt
    from rae_edge.llm.client import LlmClient, StreamState
    from rae_edge.sample_plant.loader import load_sample_plant
    from rae_edge.store.lance import sql_literal
    from tests.llm.server import llm_server, structured_mode, unavailable_reason
    from tests.tablet_api.live_node import served_node

    why = unavailable_reason()
    if why:
        return [row("/ask with the local LLM", 0.0, "", notes=f"skipped: {why}")]
    ttft: list[float] = []
    direct_ttft: list[float] = []
    rates: list[float] = []
    direct_rates: list[float] = []
    resolved = cited = rejected = 0
    with tempfile.TemporaryDirectory() as d, llm_server(Path(d) / "llm.log") as llm, \
            served_node(Path(d) / "node", llm={
                "enabled": True, "base_url": llm.base_url, "model": llm.model,
                "structured_output": structured_mode(), "max_answer_tokens": MAX_ANSWER,
                "timeout_s": 600, "budget_tokens": BUDGET}) as node:
        load_sample_plant(node.node)
        direct = LlmClient(node.node.settings.llm)
        one_token = LlmClient(node.node.settings.llm.model_copy(
            update={"max_answer_tokens": 1}))

        def flush() -> None:
            """A one-token request with another prompt: llama.cpp reuses the previous
            prompt's cached prefix, so without it whichever of the two paths asks second
            would skip most of the prompt's evaluation."""
            one_token.complete([{"role": "user", "content": "Say OK."}])

        def via_node(http: httpx.Client, q: str) -> None:
            nonlocal resolved, cited, rejected
            flush()
            started = time.perf_counter()
            with http.stream("POST", "/api/v1/ask", json={"question": q, "stream": True}) as r:
                assert r.status_code == 200, r.read()
                deltas, final = _read_stream(r)
            end = time.perf_counter()
            assert final, f"no answer event for {q!r}"
            first = deltas[0] if deltas else None
            ttft.append(((first or end) - started) * 1000)
            # llama-cpp-python's server sends no usage when streaming: then the answer's
            # visible pieces are counted (one token per chunk from llama.cpp).
            got = _rate(final.get("completion_tokens") or len(deltas) - 1, first,
                        deltas[-1] if deltas else end)
            if got:
                rates.append(got)
            sent = set(final["context_ids"])
            ids = [c["id"] for c in final["citations"]]
            stored = {r["id"] for i in ids for r in node.node.lance.rows(
                f"id = {sql_literal(i)}", ["id"], 1)}
            resolved += all(i in sent and i in stored for i in ids)
            cited += bool(ids)
            rejected += len(final["rejected_citations"])

        def via_direct(q: str) -> None:
            """The very request the node sends, straight to the endpoint, timed the same
            way (first visible answer text; its visible pieces for the rate)."""
            pack = node.node.memory.context(node.node.tenant_id, q, budget_tokens=BUDGET)
            ids_sent = [i.id for i in pack.items]
            flush()
            t0 = time.perf_counter()
            seen: list[float] = []
            raw = shown = ""
            for piece in direct.stream(prompt.messages(q, pack, True),
                                       prompt.answer_schema(ids_sent), StreamState()):
                raw += piece
                visible = citations.visible_text(raw, True, set(ids_sent))
                if len(visible) > len(shown):
                    seen.append(time.perf_counter())
                    shown = visible
            took = time.perf_counter()
            direct_ttft.append(((seen[0] if seen else took) - t0) * 1000)
            got = _rate(len(seen) - 1, seen[0] if seen else None, seen[-1] if seen else took)
            if got:
                direct_rates.append(got)

        with httpx.Client(base_url=node.url, headers=node.h("acme_technician"),
                          timeout=600) as http:
            for i, q in enumerate((QUESTIONS * 4)[:n]):
                if i % 2 == 0:  # the order swaps every question (the machine's load drifts)
                    via_node(http, q)
                    via_direct(q)
                else:
                    via_direct(q)
                    via_node(http, q)
    p, b = percentiles(ttft), percentiles(direct_ttft or [float("nan")])
    share = resolved / n
    rate = statistics.median(rates) if rates else 0.0
    base_rate = statistics.median(direct_rates) if direct_rates else float("nan")
    notes = (f"{n} streamed answers, llama.cpp Gemma 3 270M Q4_K_M, 2 threads, budget "
             f"{BUDGET} tokens, at most {MAX_ANSWER} answer tokens; baseline: the same "
             "messages and schema sent straight to the llama.cpp server, its prompt cache "
             "flushed before each (the node's packing, HTTP and checks are the difference); "
             f"{cited} answers cited a memory")
    return [row("/ask: time to first token p50", p["p50"], "ms", baseline="LLM direct p50",
                baseline_value=round(b["p50"], 1), notes=notes),
            row("/ask: time to first token p95", p["p95"], "ms", baseline="LLM direct p95",
                baseline_value=round(b["p95"], 1)),
            row("/ask: tokens/s after the first (p50)", rate, "tok/s",
                baseline="LLM direct", baseline_value=round(base_rate, 2),
                higher_is_better=True,
                notes="completion tokens when the endpoint reports them, else the answer's "
                      "streamed pieces (llama.cpp: one token each)"),
            row("/ask: answers whose citations all resolve", share * 100, "%",
                target="100 %", ok=share == 1.0, higher_is_better=True,
                notes="each cited id was sent in the pack and is in the node's store"),
            row("/ask: ids the model cited that were stripped", rejected, "ids", target="0",
                ok=rejected == 0, notes="rejected_citations over all answers")]


def run(quick: bool = False) -> list[Row]:
    return [*scrub_rows(), *ask_rows(2 if quick else 8)]


if __name__ == "__main__":
    main_for(run, "ask")
