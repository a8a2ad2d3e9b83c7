"""The MCP tools and resources of one node.

The caller is the :class:`~rae_edge.tokens.Principal` that :mod:`rae_tablet_api.mcp.mount`
authenticated from the bearer token and left in the ASGI scope; every tool reads it from
there, never from the arguments, so a tool cannot be pointed at another tenant. Each call
is put on the node's audit log (``MCP tool NAME``) with every memory id its answer holds
before the answer leaves; a call that cannot be recorded fails instead of answering.

A tool's answer is dumped once: the JSON of its model is the structured content and, as
compact JSON text (no indentation), the text block that clients without structured output
read; the SDK would otherwise dump the model again, indented. Output schemas are published
compacted (:mod:`rae_tablet_api.mcp.schemas`): the same constraints, half the client's
validation time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar, cast

import pydantic_core
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.types import CallToolResult, TextContent
from mcp.types import Tool as MCPTool
from pydantic import BaseModel, Field, ValidationError

from rae_edge.audit import AuditLog, actor_of, memory_ids
from rae_edge.errors import NotFoundError, RaeError
from rae_edge.memory.models import (
    Briefing,
    ContextPack,
    CorrectionOut,
    MachineOut,
    ManualSection,
    SearchResult,
)
from rae_edge.node import EdgeNode
from rae_edge.store.lance import sql_literal
from rae_edge.tokens import Principal
from rae_sync.domain import Incident, Role
from rae_tablet_api.mcp.schemas import compact
from rae_tablet_api.schemas import IncidentIn, IncidentsOut, utc_or_none

PRINCIPAL_SCOPE_KEY = "rae.mcp.principal"
_F = TypeVar("_F", bound=Callable[..., Any])
_MANUAL_COLUMNS = ["id", "document_id", "section", "page", "error_codes", "text", "source"]


class MachineList(BaseModel):
    machines: list[MachineOut]


class VoiceNoteStatus(BaseModel):
    id: str
    status: str = Field(description="queued, transcribing, draft, confirmed or failed")
    machine_id: str | None = None
    transcript: str | None = None
    reason: str | None = None
    correction: dict[str, Any] | None = None


def expected_errors(error: type[Exception]) -> Callable[[_F], _F]:
    """The node's own refusals (unknown id, bad input, missing role) reach the agent as
    ``error`` with their message; the SDK would hide any other exception's text."""
    def deco(fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except (RaeError, PermissionError, ValidationError) as exc:
                raise error(str(exc)) from exc
        return cast("_F", wrapper)
    return deco


tool_errors = expected_errors(ToolError)
resource_errors = expected_errors(ResourceNotFoundError)


def principal_of(ctx: Context) -> Principal:
    """The authenticated caller (set by the mount; absent means a transport without it)."""
    request = ctx.request_context.request
    scope = cast("dict[str, Any]", getattr(request, "scope", {}))
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise PermissionError("no authenticated caller: connect with a bearer token")
    return principal


class NodeMCPServer(MCPServer[Any]):
    """The SDK's server, listing each tool's output schema compacted (computed once)."""

    _compact: dict[str, dict[str, Any]]

    async def list_tools(self) -> list[MCPTool]:
        cache = self.__dict__.setdefault("_compact", {})
        out: list[MCPTool] = []
        for t in await super().list_tools():
            if t.output_schema is not None:
                if t.name not in cache:
                    cache[t.name] = compact(t.output_schema)
                t = t.model_copy(update={"output_schema": cache[t.name]})
            out.append(t)
        return out


def build_server(node: EdgeNode, audit: AuditLog) -> MCPServer:
    """The MCP server of ``node``; ``audit`` records every call."""
    server: MCPServer = NodeMCPServer(
        name="rae-edge", version="1.0.0", log_level="WARNING",
        instructions="Maintenance memory of one plant's machines: look a machine up "
                     "(briefing), search its memories, pack a cited context for an answer, "
                     "and record corrections and incidents. Cite memories by their id.")

    def audited(ctx: Context, tool: str, out: BaseModel) -> dict[str, Any]:
        """``out`` as JSON data, once its call is on the audit log with its memory ids."""
        who = principal_of(ctx)
        data = out.model_dump(mode="json")
        audit.record(who.tenant_id, actor_of(who), f"MCP tool {tool}", "200",
                     list(memory_ids(data)))
        return data

    def done(ctx: Context, tool: str, out: BaseModel) -> CallToolResult:
        """A tool's answer: structured content and the same JSON, compact, as text."""
        data = audited(ctx, tool, out)
        text = pydantic_core.to_json(data).decode()
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=data)

    def caller(ctx: Context, role: Role) -> Principal:
        who = principal_of(ctx)
        if not who.can(role):
            raise PermissionError(f"this needs the {role.value} role; the token has "
                                  f"{who.role.value}")
        return who

    @server.tool(description="Briefing of a machine by QR payload or id: past incidents with "
                             "their fixes and corrections, recurring problems, manual sections, "
                             "drift alerts and a summary; as_of shows it as it was then.")
    @tool_errors
    def machine_briefing(code: str, ctx: Context, as_of: datetime | None = None,
                         error_code: str | None = None) -> Annotated[CallToolResult, Briefing]:
        who = caller(ctx, Role.TECHNICIAN)
        out = node.memory.briefing(who.tenant_id, code, as_of=utc_or_none(as_of),
                                   error_code=error_code)
        return done(ctx, "machine_briefing", out)

    @server.tool(description="Hybrid search over the plant's memories (incidents, manual "
                             "sections, shift notes, work orders, corrections).")
    @tool_errors
    def search_memory(query: str, ctx: Context, machine_id: str | None = None,
                      kind: str | None = None, k: Annotated[int, Field(ge=1, le=100)] = 10,
                      as_of: datetime | None = None) -> Annotated[CallToolResult, SearchResult]:
        who = caller(ctx, Role.TECHNICIAN)
        out = node.memory.search(who.tenant_id, query, machine_id=machine_id or None, kind=kind,
                                 k=k, as_of=utc_or_none(as_of))
        return done(ctx, "search_memory", out)

    @server.tool(description="The most relevant memories for a question packed under a token "
                             "budget, each with its id to cite; corrections stand before what "
                             "they correct.")
    @tool_errors
    def context_pack(query: str, ctx: Context, machine_id: str | None = None,
                     budget_tokens: Annotated[int, Field(ge=1, le=200_000)] = 4000,
                     as_of: datetime | None = None) -> Annotated[CallToolResult, ContextPack]:
        who = caller(ctx, Role.TECHNICIAN)
        out = node.memory.context(who.tenant_id, query, machine_id=machine_id or None,
                                  budget_tokens=budget_tokens, as_of=utc_or_none(as_of))
        return done(ctx, "context_pack", out)

    @server.tool(description="Record a correction of a machine's memory (what was really "
                             "wrong, what really fixed it); target_id: the memory it amends.")
    @tool_errors
    def record_correction(machine_id: str, text: str, ctx: Context,
                          target_id: str | None = None) -> Annotated[CallToolResult, CorrectionOut]:
        who = caller(ctx, Role.TECHNICIAN)
        c = node.memory.add_correction(who.tenant_id, machine_id=machine_id, text=text,
                                       target_id=target_id, author=actor_of(who))
        return done(ctx, "record_correction", CorrectionOut.of(c))

    @server.tool(description="Record an incident of a machine (supervisor role); the same "
                             "content again is not stored twice.")
    @tool_errors
    def record_incident(machine_id: str, occurred_at: datetime, symptom: str, ctx: Context,
                        error_code: str | None = None, action: str | None = None,
                        source: str = "mcp") -> Annotated[CallToolResult, IncidentsOut]:
        who = caller(ctx, Role.SUPERVISOR)
        incident = IncidentIn(machine_id=machine_id, occurred_at=occurred_at, symptom=symptom,
                              error_code=error_code, action=action, source=source)
        inc = Incident(tenant_id=who.tenant_id, **incident.model_dump())
        ids, new = node.memory.add_incidents(who.tenant_id, [inc])
        out = IncidentsOut(ids=ids, new_ids=[i.id for i in new], added=len(new),
                           duplicates=1 - len(new))
        return done(ctx, "record_incident", out)

    @server.tool(description="The machines of this plant (id, name, QR payload, line).")
    @tool_errors
    def list_machines(ctx: Context) -> Annotated[CallToolResult, MachineList]:
        who = caller(ctx, Role.TECHNICIAN)
        out = MachineList(machines=[MachineOut.of(m)
                                    for m in node.duck.list_machines(who.tenant_id)])
        return done(ctx, "list_machines", out)

    @server.tool(description="Status of a voice note (queued, transcribing, draft, confirmed, "
                             "failed), its transcript and the correction it became.")
    @tool_errors
    def voice_note_status(note_id: str, ctx: Context) -> Annotated[CallToolResult, VoiceNoteStatus]:
        who = caller(ctx, Role.TECHNICIAN)
        view = node.voice.view(node.voice.get(who.tenant_id, note_id))
        out = VoiceNoteStatus.model_validate(
            {k: view.get(k) for k in VoiceNoteStatus.model_fields})
        return done(ctx, "voice_note_status", out)

    @server.resource("rae://machines/{machine_id}", mime_type="application/json",
                     description="A machine of this plant")
    @resource_errors
    def machine_resource(machine_id: str, ctx: Context) -> str:
        who = caller(ctx, Role.TECHNICIAN)
        m = node.duck.get_machine(who.tenant_id, machine_id)
        if m is None:
            raise NotFoundError(f"unknown machine {machine_id!r}")
        out = MachineOut.of(m)
        audited(ctx, "resource machines", out)
        return out.model_dump_json()

    @server.resource("rae://manual-sections/{section_id}", mime_type="application/json",
                     description="A section of a machine manual (by its memory id)")
    @resource_errors
    def manual_resource(section_id: str, ctx: Context) -> str:
        who = caller(ctx, Role.TECHNICIAN)
        rows = node.lance.rows(f"tenant_id = {sql_literal(who.tenant_id)} AND kind = 'manual' "
                               f"AND id = {sql_literal(section_id)}", _MANUAL_COLUMNS, 1)
        if not rows:
            raise NotFoundError(f"unknown manual section {section_id!r}")
        r = rows[0]
        sec = ManualSection(id=r["id"], document_id=r.get("document_id"),
                            document_title=r.get("source"), section=r.get("section"),
                            page=r.get("page"), error_codes=list(r.get("error_codes") or []),
                            text=r["text"])
        audited(ctx, "resource manual-sections", sec)
        return sec.model_dump_json()

    return server
