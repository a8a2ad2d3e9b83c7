"""``/ask`` against a real LLM server (llama.cpp with the Gemma 3 270M GGUF by default; any
OpenAI-compatible server through ``RAE_TEST_LLM_URL``). The small model's wording is not
judged: the tests assert structure — every citation resolves to a memory that was sent,
the audit entry proves what the model saw, streaming delivers the same answer, a question
the memory cannot answer is refused without calling the model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rae_edge.audit import stored_ids
from rae_edge.llm import prompt
from rae_edge.llm.ask import NO_EVIDENCE
from rae_edge.llm.citations import CITE
from rae_edge.memory.models import ContextPack
from rae_edge.sample_plant.loader import load_sample_plant
from rae_tablet_api.routes.ask import asker_of
from tests.llm.server import LlmServer, llm_server, structured_mode, unavailable_reason
from tests.tablet_api.api_client import Api, api_for

pytestmark = pytest.mark.skipif(unavailable_reason() is not None,
                                reason=unavailable_reason() or "")

QUESTIONS = ["What fixed E404 on the hydraulic press?",
             "What should I check when the oil temperature is too high?"]
BUDGET = 700


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmServer]:
    with llm_server(tmp_path_factory.mktemp("llm") / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def api(llm: LlmServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    mode = structured_mode()
    with api_for(tmp_path_factory.mktemp("ask") / "node", llm={
            "enabled": True, "base_url": llm.base_url, "model": llm.model,
            "structured_output": mode, "max_answer_tokens": 128, "timeout_s": 300}) as a:
        load_sample_plant(a.node)
        yield a


def ask(api: Api, question: str, **more: Any) -> Any:
    r = api.post("/ask", {"question": question, "budget_tokens": BUDGET, **more},
                 who="acme_technician")
    assert r.status_code == 200, r.text
    return r


def assert_grounded(body: dict[str, Any]) -> None:
    sent = body["context_ids"]
    assert sent and len(sent) == len(set(sent))
    cited = [c["id"] for c in body["citations"]]
    assert len(cited) == len(set(cited))
    assert all(c in sent for c in cited), (cited, sent)  # every citation resolves
    for c in cited:
        assert f"[{c}]" in body["answer"]
    inline = CITE.findall(body["answer"])
    assert all(i in sent for i in inline), inline  # no citation outside the pack
    if body["evidence"]:
        assert cited
    else:
        assert body["answer"] == NO_EVIDENCE and cited == []
    for c in body["citations"]:
        if c["kind"] == "correction":  # a correction names what it amends
            assert c["corrects"]


def test_answers_cite_only_memories_that_were_sent(api: Api) -> None:
    bodies = [ask(api, q).json() for q in QUESTIONS]
    for b in bodies:
        assert_grounded(b)
        assert b["structured"] is True and b["model"]
        assert b["completion_tokens"] and b["completion_tokens"] > 0
        assert b["tokens_context"] <= BUDGET
    # The schema's enum held the model to the pack: nothing had to be removed.
    assert [b["rejected_citations"] for b in bodies] == [[], []]
    assert any(b["citations"] for b in bodies), "no answer cited anything"


def test_the_audit_entry_proves_what_the_model_saw(api: Api) -> None:
    q = QUESTIONS[0]
    body = ask(api, q).json()
    rows = api.node.duck.query(
        "SELECT actor, resource, memory_ids FROM audit_log WHERE action = 'ASK llm' "
        "ORDER BY seq DESC LIMIT 1")
    actor, resource, ids = rows[0]
    assert actor.startswith("acme-technician#")
    assert list(stored_ids(ids)) == body["context_ids"]
    assert f"prompt_sha256={body['prompt_sha256']}" in resource
    assert f"model={api.node.settings.llm.model}" in resource
    # Anyone with the node can rebuild the exact request from the same pack and hash it.
    pack = ContextPack.model_validate(api.ok(api.get("/context", who="acme_technician", q=q,
                                                     budget_tokens=BUDGET)))
    assert [i.id for i in pack.items] == body["context_ids"]
    msgs = prompt.messages(q, pack, structured=True)
    schema = prompt.answer_schema(body["context_ids"])
    assert prompt.fingerprint(msgs, schema, api.node.settings.llm.model) == \
        body["prompt_sha256"]


def test_streamed_answer_is_the_checked_answer(api: Api) -> None:
    r = ask(api, QUESTIONS[0], stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [(e.split("\n", 1)[0].removeprefix("event: "),
               json.loads(e.split("data: ", 1)[1]))
              for e in r.text.replace("\r\n", "\n").strip().split("\n\n")
              if e.startswith("event:")]
    kinds = [k for k, _ in events]
    assert kinds[-1] == "answer" and kinds.count("answer") == 1
    assert "error" not in kinds
    assert kinds.count("delta") >= 1
    final = events[-1][1]
    assert_grounded(final)
    shown = "".join(d["text"] for k, d in events if k == "delta")
    if final["evidence"]:  # what streamed is the answer as it grew (ids held to the pack)
        for c in final["citations"]:
            assert f"[{c['id']}]" in shown


def test_no_memory_no_guess(api: Api) -> None:
    """A tenant with no memories: nothing to send, the model is not called."""
    r = api.post("/ask", {"question": "What fixed E404 on the hydraulic press?"},
                 who="globex_technician")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["evidence"] is False and body["answer"] == NO_EVIDENCE
    assert body["citations"] == [] and body["context_ids"] == []
    assert body["prompt_sha256"] is None and body["completion_tokens"] is None


def test_health_reports_the_llm(api: Api) -> None:
    import time
    deadline = time.monotonic() + 30
    while (state := api.client.get("/api/v1/health").json()["llm"])["state"] == "checking":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert state["state"] == "ok" and state["remote"] is False


def test_remote_endpoint_gets_no_personal_data(llm: LlmServer, tmp_path: Path) -> None:
    """``llm.remote``: names, e-mails and phones leave as placeholders and come back."""
    with api_for(tmp_path / "node", llm={
            "enabled": True, "base_url": llm.base_url, "model": llm.model, "remote": True,
            "structured_output": structured_mode(), "max_answer_tokens": 128,
            "timeout_s": 300}) as a:
        a.ok(a.post("/machines", [{"id": "press-1", "name": "Press 1", "qr_code": "P1",
                                   "site": "plant-1"}]))
        a.ok(a.post("/incidents", [{
            "machine_id": "press-1", "occurred_at": "2026-11-12T08:30:00Z",
            "error_code": "E404", "symptom": "Light curtain fault E404, reported by "
            "technician Anna Kowalski (anna.kowalski@plant.example, +49 171 2345678)",
            "action": "Replaced receiver LC-2 (part 6205-2RS), 24 V checked"}]))
        prep = a.node.memory.context  # the pack the node will send
        assert "Anna Kowalski" in prep("acme", "E404 light curtain").text
        asker = asker_of(a.client.app.state)
        p = asker.prepare("acme", "Who fixed E404 and what part was used?")
        sent = json.dumps(p.messages)
        for secret in ("Anna", "Kowalski", "anna.kowalski@plant.example", "2345678"):
            assert secret not in sent
        for kept in ("E404", "LC-2", "6205-2RS", "24 V", "press-1", "2026-11-12"):
            assert kept in sent
        body = ask(a, "Who fixed E404 and what part was used?").json()
        assert body["scrubbed"] >= 3
        assert "<PERSON_" not in body["answer"] and "<EMAIL_" not in body["answer"]
        assert_grounded(body)
