"""The node's MCP server (``/mcp``) driven by the official SDK's own client over real HTTP:
tools listed with their schemas, each tool called, resources read, no token refused,
another tenant's memories never returned, every call on the audit log with its ids."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from rae_edge.audit import stored_ids
from rae_edge.sample_plant.loader import load_sample_plant
from tests.tablet_api.live_node import Served, served_node
from tests.voice.speech import ESPEAK, speak

TOOLS = ["machine_briefing", "search_memory", "context_pack", "record_correction",
         "record_incident", "list_machines", "voice_note_status"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_node(tmp_path_factory.mktemp("mcp") / "node") as s:
        load_sample_plant(s.node)
        yield s


async def _session(live: Served, who: str | None, calls: list[tuple[str, Any]]) -> list[Any]:
    """Runs ``calls`` ((method, args)) in one SDK client session; returns their results."""
    headers = live.h(who) if who else {}
    out: list[Any] = []
    async with create_mcp_http_client(headers=headers) as hc, \
            Client(streamable_http_client(live.url + "/mcp", http_client=hc)) as c:
        for method, args in calls:
            out.append(await getattr(c, method)(*args))
    return out


def run(live: Served, who: str | None, *calls: tuple[str, Any]) -> list[Any]:
    return asyncio.run(_session(live, who, list(calls)))


def audit_rows(live: Served, action: str) -> list[tuple[str, list[str]]]:
    rows = live.node.duck.query("SELECT actor, memory_ids FROM audit_log WHERE action = ? "
                                "ORDER BY seq", [action])
    return [(str(r[0]), list(stored_ids(r[1]))) for r in rows]


def test_tools_are_listed_with_typed_schemas(live: Served) -> None:
    (listed,) = run(live, "acme_technician", ("list_tools", ()))
    names = [t.name for t in listed.tools]
    assert sorted(names) == sorted(TOOLS)
    for t in listed.tools:
        assert t.input_schema["type"] == "object", t.name
        assert t.output_schema is not None and t.output_schema["type"] == "object", t.name
        assert t.description, t.name
    by = {t.name: t for t in listed.tools}
    assert by["machine_briefing"].input_schema["required"] == ["code"]
    assert "budget_tokens" in by["context_pack"].input_schema["properties"]
    assert set(by["record_incident"].input_schema["required"]) == {
        "machine_id", "occurred_at", "symptom"}


def test_each_tool_answers_and_every_call_is_audited(live: Served, tmp_path: Path) -> None:
    tech = "acme_technician"
    brief, search, ctx, machines = run(
        live, tech,
        ("call_tool", ("machine_briefing", {"code": "PLANT1-PRESS-1"})),
        ("call_tool", ("search_memory", {"query": "light curtain E404", "k": 5})),
        ("call_tool", ("context_pack", {"query": "hydraulic oil leak", "budget_tokens": 600})),
        ("call_tool", ("list_machines", {})))
    for r in (brief, search, ctx, machines):
        assert not r.is_error, r.content
    b = brief.structured_content
    assert b["machine"]["id"] == "press-1" and b["incidents"]
    hits = search.structured_content["hits"]
    assert 1 <= len(hits) <= 5
    pack = ctx.structured_content
    assert pack["items"] and pack["tokens_used"] <= 600
    assert sorted(m["id"] for m in machines.structured_content["machines"]) == [
        "cnc-2", "conveyor-3", "press-1", "robot-4"]

    target = b["incidents"][0]["id"]
    (cor,) = run(live, tech, ("call_tool", ("record_correction", {
        "machine_id": "press-1", "text": "It was the connector X4, not the sensor",
        "target_id": target})))
    assert not cor.is_error, cor.content
    assert cor.structured_content["target_id"] == target
    assert cor.structured_content["author"].startswith("acme-technician#")

    # Recording an incident needs the supervisor role, as over HTTP.
    incident = {"machine_id": "press-1", "occurred_at": "2026-11-30T07:00:00Z",
                "error_code": "E117", "symptom": "Oil temperature 64 C", "action": "Fan fuse F2"}
    denied, = run(live, tech, ("call_tool", ("record_incident", incident)))
    assert denied.is_error and "supervisor" in denied.content[0].text
    inc, again = run(live, "acme_supervisor", ("call_tool", ("record_incident", incident)),
                     ("call_tool", ("record_incident", incident)))
    assert inc.structured_content["added"] == 1 and again.structured_content["duplicates"] == 1
    assert inc.structured_content["ids"] == again.structured_content["ids"]

    # Every call above is on record with exactly the ids its answer held.
    for action, result in [("MCP tool machine_briefing", brief),
                           ("MCP tool search_memory", search),
                           ("MCP tool context_pack", ctx), ("MCP tool list_machines", machines)]:
        rows = audit_rows(live, action)
        assert rows, action
        actor, ids = rows[-1]
        assert actor.startswith("acme-technician#")
        assert ids and ids == list(dict.fromkeys(_ids(result.structured_content)))[:len(ids)]
    assert [h["id"] for h in hits] == [i for i in audit_rows(
        live, "MCP tool search_memory")[-1][1] if i in {h["id"] for h in hits}]
    assert cor.structured_content["id"] in audit_rows(live, "MCP tool record_correction")[-1][1]
    assert len(audit_rows(live, "MCP tool record_incident")) == 2


def _ids(body: Any) -> list[str]:
    from rae_tablet_api.audit_hook import memory_ids
    return list(memory_ids(body))


def test_answers_are_dumped_once_and_schemas_published_compact(live: Served) -> None:
    """The text block is the structured content as compact JSON (not an indented second
    dump); each output schema is published without $ref or nullable anyOf and accepts and
    refuses exactly what pydantic's own schema of the model does."""
    import json

    from jsonschema.validators import validator_for
    from pydantic import TypeAdapter

    from rae_edge.memory.models import Briefing, ContextPack, SearchResult

    listed, pack, brief, search = run(
        live, "acme_technician", ("list_tools", ()),
        ("call_tool", ("context_pack", {"query": "light curtain keeps tripping",
                                        "budget_tokens": 900})),
        ("call_tool", ("machine_briefing", {"code": "press-1"})),
        ("call_tool", ("search_memory", {"query": "oil temperature", "k": 5})))
    by = {t.name: t for t in listed.tools}
    for name, model, result in [("context_pack", ContextPack, pack),
                                ("machine_briefing", Briefing, brief),
                                ("search_memory", SearchResult, search)]:
        assert not result.is_error, result.content
        (block,) = result.content
        assert json.loads(block.text) == result.structured_content
        assert "\n  " not in block.text  # compact: no indentation
        published = by[name].output_schema
        dumped = json.dumps(published)
        assert "$ref" not in dumped and "$defs" not in dumped
        original = TypeAdapter(model).json_schema()
        assert "$ref" in json.dumps(original)  # what the compaction removed
        new, old = (validator_for(s)(s) for s in (published, original))
        doc = result.structured_content
        assert new.is_valid(doc) and old.is_valid(doc)
        broken = _broken(doc)
        verdicts = [(new.is_valid(bad), old.is_valid(bad)) for bad in broken]
        assert [n for n, _ in verdicts] == [o for _, o in verdicts]  # the same verdicts
        assert sum(not o for _, o in verdicts) >= 8, name  # and most changes refused
    assert "stopped" in by["context_pack"].output_schema["properties"]
    assert pack.structured_content["stopped"] in ("relevance", "budget", "matches")


def _broken(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """``doc`` changed in one place each: an unknown field, a string or an integer field
    given another type or null, each field of the first listed record given an object
    (or, where it holds a string, number or null, something else)."""
    import copy

    out = [{**doc, "unexpected": 1}]
    for key, value in doc.items():
        if isinstance(value, str):
            out.append({**doc, key: 5})
        if isinstance(value, int) and not isinstance(value, bool):
            out.append({**doc, key: None})
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for k, v in value[0].items():
                bad = copy.deepcopy(doc)
                bad[key][0][k] = {"x": 1} if v is None or isinstance(v, str | int) else 7
                out.append(bad)
    return out


@pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (scripts/test installs it)")
def test_voice_note_status_tool(live: Served, tmp_path: Path) -> None:
    wav = speak("Tighten the bracket of sensor X", tmp_path / "note.wav")
    r = httpx.post(live.url + "/api/v1/voice-notes", headers=live.h("acme_technician"),
                   files={"audio": ("note.wav", wav.read_bytes(), "audio/wav")},
                   data={"machine_id": "press-1"}, timeout=60)
    assert r.status_code == 202, r.text
    note_id = r.json()["id"]
    (st,) = run(live, "acme_technician", ("call_tool", ("voice_note_status",
                                                        {"note_id": note_id})))
    assert not st.is_error, st.content
    assert st.structured_content["id"] == note_id
    assert st.structured_content["status"] in {"queued", "transcribing", "draft", "confirmed"}
    (other,) = run(live, "globex_technician", ("call_tool", ("voice_note_status",
                                                             {"note_id": note_id})))
    assert other.is_error and "unknown voice note" in other.content[0].text


def test_resources_machine_and_manual_section(live: Served) -> None:
    (ctx,) = run(live, "acme_technician", ("call_tool", ("context_pack", {
        "query": "E404 light curtain manual", "budget_tokens": 2000})))
    manual_id = next(i["id"] for i in ctx.structured_content["items"] if i["kind"] == "manual")
    templates, machine, section = run(
        live, "acme_technician", ("list_resource_templates", ()),
        ("read_resource", ("rae://machines/press-1",)),
        ("read_resource", (f"rae://manual-sections/{manual_id}",)))
    assert sorted(t.uri_template for t in templates.resource_templates) == [
        "rae://machines/{machine_id}", "rae://manual-sections/{section_id}"]
    assert '"id":"press-1"' in machine.contents[0].text
    assert f'"id":"{manual_id}"' in section.contents[0].text
    assert audit_rows(live, "MCP tool resource manual-sections")[-1][1] == [manual_id]


def test_no_token_or_a_bad_token_is_refused(live: Served) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for headers in ({}, {"Authorization": "Bearer rae_not-a-token"}):
        r = httpx.post(live.url + "/mcp", json=init, headers={
            **headers, "Accept": "application/json, text/event-stream"}, timeout=30)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    with pytest.raises(ExceptionGroup) as err:  # the SDK's own client gets nothing either
        run(live, None, ("list_tools", ()))
    assert err.group_contains(MCPError)


def test_a_tool_call_is_one_json_exchange_audited_once(live: Served) -> None:
    """Stateless JSON (what keeps MCP's cost beside the HTTP call's, ``bench/bench_mcp.py``):
    a 2025-era agent's call, with no initialize before it, is answered as one
    ``application/json`` body, no session is opened, and the call adds exactly one audit
    entry (the tool's, with its ids: no second one from the HTTP audit layer)."""
    def audit_count() -> int:
        row = live.node.duck.query("SELECT count(*) FROM audit_log", [])[0]
        return int(row[0])

    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "list_machines", "arguments": {}}}
    headers = {**live.h("acme_technician"), "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}
    with httpx.Client(timeout=30) as http:
        for _ in range(2):  # the second call on the same connection is answered alike
            before = audit_count()
            r = http.post(live.url + "/mcp", json=call, headers=headers)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("application/json")
            assert "mcp-session-id" not in r.headers
            body = r.json()
            assert body["id"] == 7 and not body["result"].get("isError")
            machines = body["result"]["structuredContent"]["machines"]
            assert sorted(m["id"] for m in machines) == ["cnc-2", "conveyor-3", "press-1",
                                                          "robot-4"]
            assert audit_count() == before + 1
            assert audit_rows(live, "MCP tool list_machines")[-1][1] == [
                m["id"] for m in machines]


def test_another_tenants_memories_are_never_returned(live: Served) -> None:
    acme = set(_ids(run(live, "acme_technician", ("call_tool", (
        "search_memory", {"query": "E404 light curtain", "k": 20})))[0].structured_content))
    assert acme
    calls = [("call_tool", ("list_machines", {})),
             ("call_tool", ("search_memory", {"query": "E404 light curtain", "k": 20})),
             ("call_tool", ("context_pack", {"query": "E404 light curtain"})),
             ("call_tool", ("machine_briefing", {"code": "press-1"})),
             ("call_tool", ("record_correction", {"machine_id": "press-1", "text": "x",
                                                  "target_id": sorted(acme)[0]}))]
    machines, search, ctx, brief, cor = run(live, "globex_admin", *calls)
    assert machines.structured_content == {"machines": []}
    assert search.structured_content["hits"] == []
    assert ctx.structured_content["items"] == []
    assert brief.is_error and cor.is_error
    for r in (machines, search, ctx, brief, cor):
        text = r.model_dump_json()
        assert not any(i in text for i in acme), r
    with pytest.raises(ExceptionGroup) as err:
        run(live, "globex_admin", ("read_resource", ("rae://machines/press-1",)))
    assert err.group_contains(MCPError, match="unknown machine")


def test_stdio_bridge_relays_an_agent_to_the_node(live: Served, tmp_path: Path) -> None:
    """``rae-edge mcp`` started as a desktop agent would (the SDK's stdio client launches
    it): the same tools, answered by the node, under the token from the file."""
    token_file = tmp_path / "token"
    token_file.write_text(live.tokens["acme_technician"] + "\n")
    params = StdioServerParameters(command=sys.executable, args=[
        "-m", "rae_tablet_api.cli", "mcp", "--url", live.url, "--token-file", str(token_file)])

    async def agent() -> tuple[Any, Any]:
        async with Client(params) as c:
            return await c.list_tools(), await c.call_tool("list_machines", {})

    listed, machines = asyncio.run(agent())
    assert sorted(t.name for t in listed.tools) == sorted(TOOLS)
    assert len(machines.structured_content["machines"]) == 4
    assert audit_rows(live, "MCP tool list_machines")[-1][0].startswith("acme-technician#")

    token_file.write_text("rae_revoked-or-never-issued\n")
    with pytest.raises(BaseException):  # noqa: B017 - refused: no session is ever opened
        asyncio.run(agent())
