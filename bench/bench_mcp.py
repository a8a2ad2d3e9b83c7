"""MCP tool-call overhead against the same HTTP call (target: p50 difference <= 5 ms).

Two measurements in one run, each MCP figure beside the HTTP figure of the same call:

- **end to end**: the node runs as ``rae-edge serve`` in its own process, loaded with the
  sample plant; the SDK's own client (``mcp.Client`` over Streamable HTTP, one
  connection; mode ``auto``, which speaks the stateless 2026 revision to this node, and
  ``legacy``, the initialize handshake of 2025-era agents) and one keep-alive HTTP client
  call in turn, one call each per round, so the load of the 2 shared cores falls on both
  alike. Per pair (``list_machines`` / ``GET /machines``, ``search_memory`` /
  ``GET /search``, ``context_pack`` / ``GET /context``, ``machine_briefing`` /
  ``GET /machines/{id}/briefing``): MCP p50/p95 beside HTTP p50/p95, the p50 difference
  (the figure), the median of the per-round differences, the same-run ratio, and the
  node's CPU time per call on each path (from /proc). The MCP client's own work
  (the SDK validates each result against the tool's output schema) is in these times.
- **server side**: the node's ASGI app called in-process (no socket, no client library),
  ``tools/call list_machines`` against ``GET /machines`` in turn: what the node itself
  spends on the MCP layer, the figure least moved by other processes' load.

- **schema check**: the SDK client's ``jsonschema`` check of one ``context_pack`` answer,
  against the published (compacted) output schema and pydantic's own, alternating.

Both paths authenticate the token and put the call with its memory ids on the audit log
(a DuckDB commit: most of a short call's time).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import Row, main_for, percentiles, row
from bench.nodeproc import NodeProcess, cpu_seconds

WARMUP = 3
TARGET_MS = 5.0
# (tool, arguments, HTTP path, query parameters)
PAIRS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("list_machines", {}, "/api/v1/machines", {}),
    ("search_memory", {"query": "E404 light curtain", "k": 10},
     "/api/v1/search", {"q": "E404 light curtain", "k": 10}),
    ("context_pack", {"query": "E404 light curtain", "budget_tokens": 1000},
     "/api/v1/context", {"q": "E404 light curtain", "budget_tokens": 1000}),
    ("machine_briefing", {"code": "press-1"}, "/api/v1/machines/press-1/briefing", {}),
]
Call = Callable[[], Awaitable[None]]


def _prepare(data: Path) -> str:
    """A data folder with the sample plant and a technician token (the node closed again)."""
    from rae_edge import config
    from rae_edge.node import EdgeNode
    from rae_edge.sample_plant.loader import load_sample_plant
    from rae_edge.tokens import create_token
    from rae_sync.domain import Role

    node = EdgeNode(config.load(None, data_dir=data))
    try:
        load_sample_plant(node)
        return create_token(node.duck, node.tenant_id, Role.TECHNICIAN, "bench-mcp")
    finally:
        node.close()


async def _alternate(mcp: Call, http: Call, n: int,
                     meters: dict[str, Callable[[], float]]) -> dict[str, Any]:
    """``n`` rounds of one MCP and one HTTP call (order swapped every round): wall times
    (ms) and the CPU (ms, per meter) spent during each path's calls."""
    for fn in (mcp, http):  # warm both paths (imports, caches, connection pools)
        for _ in range(WARMUP):
            await fn()
    out: dict[str, Any] = {"mcp": [], "http": [],
                           **{f"{m}_{p}": 0.0 for m in meters for p in ("mcp", "http")}}
    for i in range(n):
        order = [("mcp", mcp), ("http", http)]
        for name, fn in (order if i % 2 == 0 else order[::-1]):
            c0 = {m: f() for m, f in meters.items()}
            t0 = time.perf_counter()
            await fn()
            out[name].append((time.perf_counter() - t0) * 1000)
            for m, f in meters.items():
                out[f"{m}_{name}"] += f() - c0[m]
    return out


def _rows(label: str, path: str, res: dict[str, Any], note: str,
          meters: dict[str, str]) -> list[Row]:
    m, h = percentiles(res["mcp"]), percentiles(res["http"])
    n = len(res["mcp"])
    paired = statistics.median(a - b for a, b in zip(res["mcp"], res["http"], strict=True))
    over = m["p50"] - h["p50"]
    cpu_rows = []
    for meter, what in meters.items():
        cpu_m, cpu_h = res[f"{meter}_mcp"] / n, res[f"{meter}_http"] / n
        cpu_rows.append(row(f"{label}: {meter} CPU per call", cpu_m, "ms",
                            baseline=f"HTTP {meter} CPU", baseline_value=round(cpu_h, 3),
                            notes=f"MCP {cpu_m - cpu_h:+.2f} ms CPU per call ({what})"))
    return [
        row(f"{label}: p50 overhead vs HTTP", over, "ms", target=f"<= {TARGET_MS:g} ms",
            baseline=f"HTTP {path} p50", baseline_value=round(h["p50"], 3),
            ok=over <= TARGET_MS,
            notes=f"MCP p50 {m['p50']:.2f} / p95 {m['p95']:.2f} ms; HTTP p50 {h['p50']:.2f} / "
                  f"p95 {h['p95']:.2f} ms; MCP/HTTP p50 {m['p50'] / h['p50']:.3f}; median "
                  f"per-round difference {paired:+.2f} ms; {n} calls each, {note}"),
        row(f"{label}: MCP p95", m["p95"], "ms", baseline="HTTP p95",
            baseline_value=round(h["p95"], 3)),
        *cpu_rows,
    ]


async def _end_to_end(node: NodeProcess, token: str, mode: str, n: int) -> list[Row]:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {token}"}
    rows: list[Row] = []
    async with create_mcp_http_client(headers=headers) as hc, \
            Client(streamable_http_client(node.url + "/mcp", http_client=hc),
                   mode=mode) as client, \
            httpx.AsyncClient(base_url=node.url, headers=headers, timeout=60) as http:
        for tool, args, path, params in PAIRS:
            async def via_mcp(tool: str = tool, args: dict[str, Any] = args) -> None:
                r = await client.call_tool(tool, args)
                assert not r.is_error, r.content

            async def via_http(path: str = path, params: dict[str, Any] = params) -> None:
                r = await http.get(path, params=params)
                assert r.status_code == 200, r.text

            res = await _alternate(via_mcp, via_http, n, {
                "node": lambda: cpu_seconds([node.pid]) * 1000,
                "client": lambda: time.process_time() * 1000})
            rows += _rows(f"MCP ({mode}) {tool}", f"GET {path}", res, "alternating",
                          {"node": "the node's process, from /proc: 10 ms ticks",
                           "client": "the calling process: the SDK client or httpx"})
        if mode == "auto":
            rows.append(await _schema_check(client))
    return rows


async def _schema_check(client: Any) -> Row:
    """The client's check of one context_pack answer (jsonschema, as the SDK does it)
    against the schema the node publishes and against pydantic's own schema of the model
    (``$ref``, nullable ``anyOf``), alternating in this process: CPU per check."""
    from jsonschema.validators import validator_for
    from pydantic import TypeAdapter

    from rae_edge.memory.models import ContextPack

    tool, args = PAIRS[2][0], PAIRS[2][1]
    listed = {t.name: t for t in (await client.list_tools()).tools}
    doc = (await client.call_tool(tool, args)).structured_content
    schemas = {"published": listed[tool].output_schema,
               "pydantic": TypeAdapter(ContextPack).json_schema()}
    checks = {k: validator_for(v)(v) for k, v in schemas.items()}
    spent = dict.fromkeys(checks, 0.0)
    n = 300
    for i in range(n + 20):
        for name, v in (checks.items() if i % 2 else reversed(checks.items())):
            t0 = time.process_time()
            errors = list(v.iter_errors(doc))
            if i >= 20:  # the first rounds warm both
                spent[name] += time.process_time() - t0
            assert not errors, errors[:1]
    pub, pyd = (spent[k] / n * 1000 for k in ("published", "pydantic"))
    return row("MCP client: schema check of a context_pack answer", pub, "ms",
               baseline="pydantic's schema", baseline_value=round(pyd, 4),
               notes=f"CPU per check, {n} each alternating, one {len(doc['items'])}-item "
                     "pack; the published schema inlines $ref and folds nullable anyOf")


async def _asgi(app: Any, scope_extra: dict[str, Any], method: str, path: str,
                headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    """One request straight into the ASGI app; the answer must be a 200 without an error."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 80), "state": dict(scope_extra),
             "headers": [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode()),
                         *headers]}
    fed = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal fed
        if not fed:
            fed = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect: the answer is read whole
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert sent[0]["status"] == 200, answer[:300]
    assert b'"error"' not in answer[:200] and b'"isError":true' not in answer, answer[:300]


async def _server_side(data: Path, token: str, n: int) -> list[Row]:
    from rae_edge import config
    from rae_edge.node import EdgeNode
    from rae_tablet_api.app import create_app

    node = EdgeNode(config.load(None, data_dir=data))
    app: Any = create_app(node)  # called as a bare ASGI callable below
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                        "state": {}}, inbox.get, outbox.put))
    try:
        await inbox.put({"type": "lifespan.startup"})
        started = await outbox.get()
        assert started["type"] == "lifespan.startup.complete", started
        auth = [(b"authorization", f"Bearer {token}".encode())]
        call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": "list_machines", "arguments": {}}}).encode()
        mcp_headers = [*auth, (b"content-type", b"application/json"),
                       (b"accept", b"application/json, text/event-stream"),
                       (b"mcp-protocol-version", b"2025-11-25")]

        async def via_mcp() -> None:
            await _asgi(app, {}, "POST", "/mcp", mcp_headers, call)

        async def via_http() -> None:
            await _asgi(app, {}, "GET", "/api/v1/machines", auth)

        res = await _alternate(via_mcp, via_http, n,
                               {"node": lambda: time.process_time() * 1000})
        return _rows("server side (in-process ASGI) list_machines", "GET /api/v1/machines",
                     res, "alternating; no socket, no client library",
                     {"node": "the process, which here is only the node"})
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
        node.close()


def run(quick: bool = False) -> list[Row]:
    n = 40 if quick else 100
    with tempfile.TemporaryDirectory(prefix="rae-mcp-") as tmp:
        data = Path(tmp) / "node"
        token = _prepare(data)
        rows = asyncio.run(_server_side(data, token, n * 2))
        node = NodeProcess(data).start()
        try:
            for mode in ("auto", "legacy"):
                rows += asyncio.run(_end_to_end(node, token, mode, n))
        finally:
            node.stop()
    return rows


if __name__ == "__main__":
    main_for(run, "mcp")
