"""The tablet page in headless Chromium against a real node whose alarm source watches a
real asyncua server: the PLC raises E404 on press-1 and the page watching press-1 gets
one alarm banner with press-1's history for that code (no second banner for the incident
it opened); its button opens the briefing; the clear turns the banner green."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rae_edge.alarms.sim_plc import PlcServer
from rae_edge.node import EdgeNode
from rae_sync.domain import Incident, Machine
from tests.fixtures.mosquitto import free_port
from tests.tablet_api.live_node import chromium, open_tablet, served_node

expect: Any = pytest.importorskip("playwright.sync_api").expect
pytestmark = pytest.mark.browser

TAG = "press-1.ErrorCode"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, PlcServer]]:
    from datetime import UTC, datetime

    plc = PlcServer(free_port(), tmp_path / "plc", {TAG: ""}, secure=False)
    plc.start()
    alarms = {"retry_min_s": 0.2, "sources": [{
        "type": "opcua", "name": "plc-1", "url": plc.url, "security": "none",
        "allow_insecure": True, "tags": [{"node_id": plc.node_id(TAG), "machine_id": "press-1"}]}]}

    def seed(node: EdgeNode) -> None:  # the alarm source's machines exist before it starts
        node.duck.upsert_machines([
            Machine(tenant_id="acme", id="press-1", name="Hydraulic press 1", qr_code="P-1",
                    line="Line A"),
            Machine(tenant_id="acme", id="cnc-2", name="CNC mill 2", qr_code="C-2",
                    line="Line A")])
        node.memory.add_incidents("acme", [Incident(
            tenant_id="acme", machine_id="press-1", occurred_at=datetime(2026, 2, 3, tzinfo=UTC),
            error_code="E404", symptom="Position sensor fault", action="Replaced sensor X")])

    try:
        with served_node(tmp_path / "node", seed, alarms=alarms) as s:
            yield s.url, s.tokens["acme_technician"], plc
    finally:
        plc.stop()


def test_alarm_banner_opens_the_briefing(served: tuple[str, str, PlcServer],
                                         artifacts_dir: Path) -> None:
    url, token, plc = served
    errors: list[str] = []
    with chromium() as browser:
        page = open_tablet(browser, url, token, errors)
        # the technician has press-1 open (its socket watches press-1)
        page.fill("#code-input", "P-1")
        page.click("#form-code button[type=submit]")
        page.wait_for_selector("#view-briefing:not([hidden])")
        page.wait_for_selector("#live.on", timeout=15_000)

        plc.write(TAG, "E404")
        banner = page.locator(".banner.type-alarm")
        expect(banner).to_have_count(1, timeout=15_000)
        text = banner.inner_text()
        assert "Alarm E404" in text and "Hydraulic press 1" in text, text
        assert "E404 on press-1 just now. Last time (3 Feb 2026) fixed by: Replaced " \
               "sensor X" in text, text
        # the incident the alarm opened is not announced a second time
        expect(page.locator(".banner")).to_have_count(1)
        page.screenshot(path=str(artifacts_dir / "tablet-alarm-banner.png"))

        page.click(".banner.type-alarm >> text=Open briefing")
        page.wait_for_selector("#view-briefing:not([hidden])")
        expect(page.locator("#b-name")).to_have_text("Hydraulic press 1")
        expect(page.locator("#b-incidents .incident")).to_have_count(2, timeout=10_000)

        plc.write(TAG, "E405")  # a new code: a new banner; E404's ends
        expect(page.locator(".banner.type-alarm")).to_have_count(1, timeout=15_000)
        plc.write(TAG, "")
        expect(page.locator(".banner.type-alarm.cleared")).to_have_count(1,
                                                                          timeout=15_000)
        assert "cleared after" in page.locator(".banner.type-alarm").inner_text()
    assert errors == []
