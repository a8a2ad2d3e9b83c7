"""The admin sync console in headless Chromium, served by ``rae-central serve``: a node
with its outbox depth and lag (from its status message), its last seq and a gap, a dead
letter with its reason, a drift alert with its evidence and the node's audit chain; then
revoking the node from the page. With the tenant's console token; the operator token
sees the node and the dead letter but no correction text and no drift alert."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rae_sync.domain import AuditEntry, utcnow
from rae_sync.messages import (
    AuditEntryMsg,
    CorrectionMsg,
    DriftAlertMsg,
    DriftSection,
    NodeStatusMsg,
)
from tests.central.conftest import Central
from tests.central.edge_sim import wait_for
from tests.central.serve_proc import ADMIN_TOKEN, TENANT_TOKENS, ServeProc

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")


def test_console_shows_nodes_lag_and_dead_letters(central: Central,
                                                  artifacts_dir: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    from playwright.sync_api import expect, sync_playwright

    serve = ServeProc(central, workers=1).start()
    a = central.edge("a")
    try:
        assert a.transport is not None
        cor = a.correction("the coupling bolt was loose, not the sensor")
        # a drift alert with its evidence, and one audit entry of the node's chain
        drift = a.envelope(DriftAlertMsg(
            id="drift_acme_e404", tenant_id="acme", error_code="E404", status="open",
            summary="field corrections amend E404", machine_ids=("press-7",),
            correction_ids=(cor.message_as(CorrectionMsg).correction.id,),
            manual_section_ids=("man-e404",), manual_sections=(DriftSection(
                id="man-e404", section="4.2 E404", text="Step 1: replace the sensor."),)))
        a.outbox[drift.message_id] = drift
        at = utcnow()
        entry = AuditEntry(tenant_id="acme", seq=1, at=at, actor="tok:ana", action="search",
                           prev_hash="0" * 64, hash=AuditEntry.compute_hash(
                               "0" * 64, 1, at, "acme", "tok:ana", "search", "", ()))
        audit = a.envelope(AuditEntryMsg(entry=entry))
        a.outbox[audit.message_id] = audit
        a.deliver_all(timeout=60)
        status = a.envelope(NodeStatusMsg(outbox_depth=42, last_seq=a.seq + 1,
                                          oldest_unacked_at=utcnow() - timedelta(seconds=90)))
        a.outbox[status.message_id] = status
        a.deliver_all(timeout=30)
        a.transport.publish("rae/v1/acme/plant-1/node-a/up/correction", b"\x00garbage")
        wait_for(lambda: central.store.count("dead_letters") == 1, what="the dead letter")

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
                "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.on("dialog", lambda d: d.accept())
                page.goto(f"{serve.url}/#token={ADMIN_TOKEN}")
                row = page.locator("#nodes tbody tr", has_text="acme/plant-1/node-a")
                expect(row).to_be_visible(timeout=15_000)
                expect(page.locator("#dead tbody tr").first).to_contain_text("malformed")
                expect(page.locator("#corrections-note")).to_contain_text("operator token")
                assert "coupling bolt" not in page.locator("#corrections").inner_text()
                expect(page.locator("#drift-note")).to_contain_text("operator token")
                assert "coupling bolt" not in page.locator("#drift").inner_text()
                page.evaluate("sessionStorage.clear()")
                page.goto(f"{serve.url}/#token={TENANT_TOKENS['acme']}")
                page.reload()
                row = page.locator("#nodes tbody tr", has_text="acme/plant-1/node-a")
                expect(row).to_be_visible(timeout=15_000)
                expect(row).to_contain_text("active")
                expect(row.locator("td").nth(3)).to_have_text("42")  # outbox depth
                expect(row.locator("td").nth(4)).to_contain_text(" s")  # lag
                lag = float(row.locator("td").nth(4).inner_text().split()[0])
                assert 85 <= lag <= 200
                expect(row.locator("td").nth(5)).to_have_text("4")  # last seq
                dead = page.locator("#dead tbody tr").first
                expect(dead).to_contain_text("malformed")
                expect(dead).to_contain_text("acme/plant-1/node-a")
                expect(page.locator("#corrections tbody")).to_contain_text(
                    "coupling bolt was loose")
                alert = page.locator("#drift tbody tr", has_text="E404")
                expect(alert).to_contain_text("coupling bolt was loose")
                expect(alert).to_contain_text("Step 1: replace the sensor.")
                expect(alert).to_contain_text("press-7")
                expect(page.locator("#audit tbody tr", has_text="node-a")).to_contain_text(
                    "audit chain ok (1 entry)")
                page.screenshot(path=str(artifacts_dir / "central-sync-console.png"),
                                full_page=True)
                row.get_by_role("button", name="Revoke").click()
                expect(row).to_contain_text("revoked", timeout=10_000)
                assert central.store.node_state(a.node) == "revoked"
            finally:
                browser.close()
    finally:
        a.close()
        serve.kill()
