"""/ask and MCP: the personal-data scrubber's figures, MCP tool-call overhead against the
same HTTP call, and /ask with the local test LLM (time to first token, tokens/s, share of
answers whose citations all resolve), each beside its baseline or target.

- scrubber: every row of ``../shared/data`` scrubbed, the codes/numbers altered counted
  (target 0); recall of personal values in generated shift notes (target >= 0.95);
- MCP overhead: the node served by uvicorn on loopback; ``list_machines`` and
  ``context_pack`` through the SDK's client (one session) against ``GET /machines`` and
  ``GET /context`` with one keep-alive HTTP client; p50 difference (target <= 5 ms);
- /ask: llama.cpp's server with the Gemma 3 270M GGUF on 2 threads (``scripts/llm-server``;
  skipped when absent), streamed answers over the sample plant: TTFT p50/p95 (first
  ``delta`` event, the node's packing included), completion tokens/s after the first token,
  share of answers whose citations all resolve to the pack (target 100 %).
"""

from __future__ import annotations

import asyncio
import json
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


def mcp_rows(n: int) -> list[Row]:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    from rae_edge.sample_plant.loader import load_sample_plant
    from tests.tablet_api.live_node import served_node

    out: list[Row] = []
    with tempfile.TemporaryDirectory() as d, served_node(Path(d) / "node") as node:
        load_sample_plant(node.node)
        headers = node.h("acme_technician")
        calls: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
                ("list_machines", {}, "/api/v1/machines", {}),
                ("context_pack", {"query": "E404 light curtain", "budget_tokens": 1000},
                  "/api/v1/context", {"q": "E404 light curtain", "budget_tokens": 1000})]

        async def mcp_times(tool: str, args: dict[str, Any]) -> list[float]:
            times = []
            async with create_mcp_http_client(headers=headers) as hc, \
                    Client(streamable_http_client(node.url + "/mcp", http_client=hc)) as c:
                for i in range(n + 3):
                    t = time.perf_counter()
                    r = await c.call_tool(tool, args)
                    assert not r.is_error, r.content
                    if i >= 3:  # warm-up
                        times.append((time.perf_counter() - t) * 1000)
            return times

        with httpx.Client(base_url=node.url, headers=headers, timeout=60) as http:
            for tool, args, path, params in calls:
                via_mcp = asyncio.run(mcp_times(tool, args))
                via_http = []
                for i in range(n + 3):
                    t = time.perf_counter()
                    assert http.get(path, params=params).status_code == 200
                    if i >= 3:
                        via_http.append((time.perf_counter() - t) * 1000)
                m, h = percentiles(via_mcp)["p50"], percentiles(via_http)["p50"]
                out.append(row(f"MCP {tool}: p50 overhead vs HTTP", m - h, "ms",
                               target="<= 5 ms", baseline=f"HTTP {path} p50",
                               baseline_value=round(h, 2), ok=m - h <= 5.0,
                               notes=f"MCP p50 {m:.2f} ms, HTTP p50 {h:.2f} ms, {n} calls each, "
                                     "loopback, one client session/connection"))
    return out


def ask_rows(n: int) -> list[Row]:
    from rae_edge.sample_plant.loader import load_sample_plant
    from tests.llm.server import llm_server, structured_mode, unavailable_reason
    from tests.tablet_api.live_node import served_node

    why = unavailable_reason()
    if why:
        return [row("/ask with the local LLM", 0.0, "", notes=f"skipped: {why}")]
    ttft: list[float] = []
    rates: list[float] = []
    resolved = 0
    cited = 0
    with tempfile.TemporaryDirectory() as d, llm_server(Path(d) / "llm.log") as llm, \
            served_node(Path(d) / "node", llm={
                "enabled": True, "base_url": llm.base_url, "model": llm.model,
                "structured_output": structured_mode(), "max_answer_tokens": 120,
                "timeout_s": 300, "budget_tokens": 700}) as node:
        load_sample_plant(node.node)
        with httpx.Client(base_url=node.url, headers=node.h("acme_technician"),
                          timeout=300) as http:
            for q in (QUESTIONS * 4)[:n]:
                started = time.perf_counter()
                first = None
                final: dict[str, Any] = {}
                with http.stream("POST", "/api/v1/ask", json={"question": q,
                                                             "stream": True}) as r:
                    assert r.status_code == 200, r.read()
                    event = ""
                    for line in r.iter_lines():
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            if event == "delta" and first is None:
                                first = time.perf_counter()
                            if event == "answer":
                                final = json.loads(line[5:])
                end = time.perf_counter()
                ttft.append(((first or end) - started) * 1000)
                tokens = final.get("completion_tokens") or 0
                if first is not None and end > first and tokens:
                    rates.append(tokens / (end - first))
                sent = set(final.get("context_ids", []))
                ok = all(c["id"] in sent for c in final.get("citations", []))
                resolved += ok
                cited += bool(final.get("citations"))
    p = percentiles(ttft)
    share = resolved / n
    rate = sorted(rates)[len(rates) // 2] if rates else 0.0
    notes = (f"{n} streamed answers, llama.cpp Gemma 3 270M Q4_K_M, 2 threads, "
             f"budget 700 tokens; {cited} answers cited at least one memory")
    return [row("/ask: time to first token p50", p["p50"], "ms", notes=notes),
            row("/ask: time to first token p95", p["p95"], "ms"),
            row("/ask: completion tokens/s (p50)", rate, "tok/s", higher_is_better=True),
            row("/ask: answers whose citations all resolve", share * 100, "%",
                target="100 %", ok=share == 1.0, higher_is_better=True)]


def run(quick: bool = False) -> list[Row]:
    return [*scrub_rows(), *mcp_rows(30 if quick else 200), *ask_rows(3 if quick else 12)]


if __name__ == "__main__":
    main_for(run, "ask")
