"""The tablet page in headless Chromium against a real node (uvicorn on loopback): the
"This fixed it" button on a briefing's incident stores one verdict (a double tap too) and
the incident's tally goes from "confirmed 1× at 1 plant" to "2×"; "Not relevant" on a
search hit is stored with the search's query; a tablet set to watch its line gets the
incident of another machine of that line while a machine of another line is in hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rae_edge.node import EdgeNode
from tests.tablet_api.live_node import chromium, open_tablet, served_node

expect: Any = pytest.importorskip("playwright.sync_api").expect
pytestmark = pytest.mark.browser

PRESS = {"id": "press-1", "name": "Hydraulic press 1", "qr_code": "P-1", "line": "Line A"}
MILL = {"id": "mill-3", "name": "Mill 3", "qr_code": "M-3", "line": "Line A"}
LATHE = {"id": "lathe-2", "name": "CNC lathe 2", "qr_code": "L-2", "line": "Line B"}
PAST = {"machine_id": "press-1", "occurred_at": "2026-02-03T09:15:00+00:00",
        "error_code": "E404", "symptom": "Ram stopped, position sensor fault",
        "action": "Replaced proximity sensor X"}


class Node:
    def __init__(self, url: str, admin: str, tech: str, node: EdgeNode) -> None:
        self.url, self.admin, self.tech, self.node = url, admin, tech, node

    def post(self, path: str, body: Any) -> Any:
        r = httpx.post(self.url + "/api/v1" + path, json=body, timeout=30,
                       headers={"Authorization": f"Bearer {self.admin}"})
        assert r.status_code < 300, (r.status_code, r.text)
        return r.json()

    def verdicts(self, memory_id: str) -> list[tuple[str, str | None]]:
        return [(str(v), q) for v, q in self.node.duck.query(
            "SELECT verdict, query FROM feedback WHERE memory_id = ? ORDER BY created_at",
            [memory_id])]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Node]:
    with served_node(tmp_path / "node") as s:
        yield Node(s.url, s.tokens["acme_admin"], s.tokens["acme_technician"], s.node)


def test_verdict_buttons_and_line_watch(served: Node, artifacts_dir: Path) -> None:
    n = served
    n.post("/machines", [PRESS, MILL, LATHE])
    inc_id = n.post("/incidents", [PAST])["ids"][0]
    # Another technician said it fixed it already: the briefing shows one confirmation.
    assert n.post("/feedback", {"memory_id": inc_id, "verdict": "fixed"})["memory"] == {
        "id": inc_id, "confirmations": 1, "plants": 1}
    errors: list[str] = []
    with chromium() as browser:
        page = open_tablet(browser, n.url, n.tech, errors)
        page.fill("#code-input", "P-1")
        page.click("#form-code button[type=submit]")
        page.wait_for_selector("#view-briefing:not([hidden])")
        card = page.locator(f'.incident[data-incident-id="{inc_id}"]')
        row = card.locator(f'.verdicts[data-memory-id="{inc_id}"]')
        expect(row.locator(".tally")).to_have_text("confirmed 1× at 1 plant")
        fixed = row.locator("button[data-verdict=fixed]")
        assert fixed.inner_text() == "This fixed it"
        box = fixed.bounding_box()
        assert box["height"] >= 64 and box["width"] >= 64  # glove-sized
        fixed.dblclick()  # a gloved double tap is one verdict
        expect(row.locator(".tally")).to_have_text("confirmed 2× at 1 plant",
                                                   timeout=15_000)
        # The briefing is fetched again: the node's tally, the button left pressed.
        page.wait_for_timeout(1000)
        row = page.locator(f'.incident[data-incident-id="{inc_id}"] .verdicts')
        expect(row.locator(".tally")).to_have_text("confirmed 2× at 1 plant")
        expect(row.locator("button[data-verdict=fixed]")).to_have_attribute(
            "aria-pressed", "true")
        expect(row.locator("button[data-verdict=fixed]")).to_be_disabled()
        assert n.verdicts(inc_id) == [("fixed", None), ("fixed", None)]
        page.screenshot(path=str(artifacts_dir / "tablet-verdict-buttons.png"))

        # "Not relevant" on a search hit is stored with what was searched for.
        page.click(".tabbar button[data-view=search]")
        page.fill("#search-input", "ram position sensor")
        page.click("#form-search button[type=submit]")
        hit = page.locator(f'.hit[data-hit-id="{inc_id}"]')
        expect(hit).to_have_count(1, timeout=15_000)
        hit.locator("button[data-verdict=not_relevant]").click()
        expect(hit.locator(".tally")).to_contain_text("Noted", timeout=15_000)
        assert n.verdicts(inc_id)[-1] == ("not_relevant", "ram position sensor")
        assert len(n.verdicts(inc_id)) == 3

        # Watch my line: with the lathe (line B) in hand, the mill's news (line A) comes.
        page.click("#btn-settings")
        page.fill("#line-input", "Line A")
        page.click("#form-line button[type=submit]")
        assert page.evaluate("localStorage.getItem('rae.line')") == "Line A"
        expect(page.locator("#line-status")).to_contain_text("every machine on Line A")
        page.click(".tabbar button[data-view=scan]")
        page.fill("#code-input", "L-2")
        page.click("#form-code button[type=submit]")
        page.wait_for_selector("#view-briefing:not([hidden])")
        page.wait_for_selector("#live.on", timeout=15_000)
        n.post("/incidents", [{**PAST, "machine_id": "mill-3", "error_code": "E7",
                               "occurred_at": "2026-11-30T10:00:00+00:00",
                               "symptom": "Mill spindle overheats"}])
        banner = page.locator(".banner.type-incident")
        expect(banner).to_have_count(1, timeout=15_000)
        assert "mill-3" in banner.inner_text() and "Mill spindle overheats" in \
            banner.inner_text()
    assert errors == []
