"""The tablet page's Ask view in a real headless Chromium against a real node: the answer
streams in from a real LLM (llama.cpp, see :mod:`tests.llm.server`), each citation links to
its source card, and with no LLM the page says the assistant is not available."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rae_edge.sample_plant.loader import load_sample_plant
from tests.llm.server import LlmServer, llm_server, structured_mode, unavailable_reason
from tests.tablet_api.live_node import Served, chromium, open_tablet, served_node

expect: Any = pytest.importorskip("playwright.sync_api").expect
pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[2] / "test-output"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def open_ask(browser: Any, node: Served, errors: list[str]) -> Any:
    page = open_tablet(browser, node.url, node.tokens["acme_technician"], errors,
                       viewport={"width": 1280, "height": 900})
    page.click(".tabbar button[data-view=ask]")
    page.wait_for_selector("#view-ask:not([hidden])")
    return page


def test_no_llm_the_page_says_so(browser: Any, tmp_path: Path) -> None:
    errors: list[str] = []
    with served_node(tmp_path / "node") as node:
        page = open_ask(browser, node, errors)
        page.fill("#ask-input", "What fixed E404?")
        page.click("#btn-ask")
        expect(page.locator("#ask-answer")).to_have_attribute("data-state", "error")
        assert "not available" in page.inner_text("#ask-answer")
        assert "no LLM is configured" in page.inner_text("#ask-answer")
        page.context.close()
    assert errors == []


@pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")
def test_answer_streams_with_linked_citations(browser: Any, tmp_path: Path) -> None:
    errors: list[str] = []
    with llm_server(tmp_path / "llm.log") as llm, served_node(tmp_path / "node", llm=_llm(
            llm)) as node:
        load_sample_plant(node.node)
        page = open_ask(browser, node, errors)
        page.uncheck("#ask-this")
        page.fill("#ask-input", "What fixed E404 on the hydraulic press?")
        page.click("#btn-ask")
        expect(page.locator("#ask-answer")).to_have_attribute("data-state", "done",
                                                              timeout=240_000)
        ask = page.evaluate("window.raeState.ask")
        answer = ask["answer"]
        assert ask["deltas"] >= 1  # the text arrived in pieces before the checked answer
        sent = answer["context_ids"]
        links = page.eval_on_selector_all("#ask-answer a.cite",
                                          "els => els.map(e => e.dataset.cite)")
        cards = page.eval_on_selector_all("#ask-cites li", "els => els.map(e => e.id)")
        assert all(i in sent for i in links)  # every link is a memory the model was sent
        assert sorted(set(links)) == sorted(c["id"] for c in answer["citations"])
        assert cards == [f"cite-{i}" for i in dict.fromkeys(links)]
        if links:  # a link goes to its source card
            page.click("#ask-answer a.cite")
            assert page.evaluate("location.hash") == f"#cite-{links[0]}"
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "ask-view.png"), full_page=True)
        page.context.close()
    assert errors == []


def _llm(llm: LlmServer) -> dict[str, Any]:
    return {"enabled": True, "base_url": llm.base_url, "model": llm.model,
            "structured_output": structured_mode(), "max_answer_tokens": 128, "timeout_s": 300,
            "budget_tokens": 700}
