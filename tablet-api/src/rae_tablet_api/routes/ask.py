"""``POST /api/v1/ask`` (technician): a question answered by the configured LLM from the
node's context pack, citing memories inline by id; every citation left in the answer is a
memory that was sent (see :mod:`rae_edge.llm`). ``stream: true`` answers as server-sent
events: ``delta`` (text as it comes), then ``answer`` (the checked answer) or ``error``.

No LLM configured, or the LLM down: 503; too slow: 504; both with the reason, and search,
briefing and context are not affected. Each call is audited twice: the request (with the
cited ids) like any read, and ``ASK llm`` with the memory ids sent, the model and the
sha256 of the exact prompt.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import chain
from typing import Any

from litestar import Response, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.response import ServerSentEvent, ServerSentEventMessage
from pydantic import BaseModel, ConfigDict, Field

from rae_edge.audit import AuditLog, actor_of
from rae_edge.llm.ask import AskAnswer, Asker, Prepared
from rae_edge.llm.client import LlmError
from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal
from rae_tablet_api import guards
from rae_tablet_api.app import error_body
from rae_tablet_api.schemas import UtcDatetime


class AskIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    question: str = Field(min_length=1, max_length=2000)
    machine_id: str | None = Field(default=None, max_length=128)
    as_of: UtcDatetime | None = Field(default=None, description="answer from what was "
                                      "known then (ISO-8601)")
    budget_tokens: int | None = Field(default=None, ge=100, le=200_000,
                                      description="context budget (default llm.budget_tokens)")
    stream: bool = Field(default=False, description="answer as server-sent events")


def asker_of(state: State) -> Asker:
    """The node's :class:`Asker`, made on first use."""
    asker = state.get("asker")
    if asker is None:
        node: EdgeNode = state.node
        asker = state["asker"] = Asker(node.memory, node.settings.llm)
    return asker


def _audit(audit: AuditLog, principal: Principal, prep: Prepared) -> None:
    audit.record(
        principal.tenant_id, actor_of(principal), "ASK llm",
        f"model={prep.model} prompt_sha256={prep.sha256} scrubbed={prep.scrubber.count}",
        prep.ids)


def _events(events: Iterator[tuple[str, Any]]) -> Iterator[ServerSentEventMessage]:
    try:
        for kind, value in events:
            data = (value.model_dump_json() if isinstance(value, AskAnswer)
                    else json.dumps({"text": value}))
            yield ServerSentEventMessage(event=kind, data=data)
    except LlmError as exc:  # after the stream began: the status is sent already
        yield ServerSentEventMessage(event="error",
                                     data=json.dumps(error_body(exc.code, str(exc))))


@post("/api/v1/ask", status_code=200, sync_to_thread=True, tags=["ask"],
      summary="Ask a question; cited answer from the configured LLM",
      responses={200: ResponseSpec(AskAnswer, description="the checked, cited answer (or "
                                   "text/event-stream with stream: true)"),
                 503: ResponseSpec(dict[str, Any], description="no LLM configured, or down"),
                 504: ResponseSpec(dict[str, Any], description="the LLM was too slow")},
      guards=guards.TECHNICIAN)
def ask(data: AskIn, principal: Principal, state: State, audit: AuditLog) -> Response[Any]:
    asker = asker_of(state)
    try:
        prep = asker.prepare(principal.tenant_id, data.question,
                             machine_id=data.machine_id or None, as_of=data.as_of,
                             budget_tokens=data.budget_tokens)
        _audit(audit, principal, prep)
        if not data.stream:
            return Response(asker.answer(prep).model_dump(mode="json"))
        events = asker.stream(prep)
        first = next(events)  # a dead or slow endpoint fails here, as a status code
        return ServerSentEvent(_events(chain([first], events)))
    except LlmError as exc:
        return Response(error_body(exc.code, str(exc)), status_code=exc.status)


ROUTES = [ask]
