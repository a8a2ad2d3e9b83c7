"""The tablet page offline, in a real headless Chromium against a real node over HTTP.

The node is stopped (the tablet's Wi-Fi dead spot: nothing answers) and started again on
the same port and data folder. With the node gone: the page reloads from the service
worker's saved shell, a scan of a machine of the same line (never opened before) shows its
saved briefing marked "offline, as of HH:MM", and three corrections, a voice note and an
incident are queued ("5 notes waiting to send"). With the node back: the queue is sent,
each write stored exactly once, the banner gone, the briefing live again.
"""

from __future__ import annotations

import io
import math
import re
import struct
import time
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rae_edge.tokens import create_token
from rae_sync.domain import Role
from tests.tablet_api.live_node import LiveNode, chromium, open_tablet

expect: Any = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser

PRESS = {"id": "PRESS-07", "name": "Hydraulic press 7", "qr_code": "QR:PLANT1:PRESS-07",
         "site": "plant-1", "line": "L2"}
WELDER = {"id": "WELD-03", "name": "Spot welder 3", "qr_code": "QR:PLANT1:WELD-03",
          "site": "plant-1", "line": "L2"}
LATHE = {"id": "LATHE-02", "name": "CNC lathe 2", "qr_code": "QR:PLANT1:LATHE-02",
         "site": "plant-1", "line": "L1"}
WELD_INCIDENT = {"machine_id": "WELD-03", "occurred_at": "2026-11-12T08:30:00+00:00",
                 "error_code": "W17", "symptom": "Electrode tip sticks to the sheet",
                 "action": "Dressed the electrode tips, raised the squeeze time"}
NOTES = ["Weld 3: tip dresser blade is worn, order a spare",
         "Weld 3: cooling water flow was low, valve half closed",
         "Weld 3: W17 again after 200 spots, dressed the tips"]
# Writes made from the page's script, as the page's own forms make them (through the
# service worker, which queues them while the node is gone).
POST_JS = """async ([token, path, body]) => (await fetch(path, {method: 'POST',
    headers: {'Content-Type': 'application/json', Authorization: 'Bearer ' + token},
    body: JSON.stringify(body)})).status"""


def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * 330 * i
                                                                     / 16_000)))
                               for i in range(16_000)))
    return buf.getvalue()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LiveNode]:
    n = LiveNode(tmp_path / "node")
    live = n.start()
    n.tokens = {"admin": create_token(live.duck, "acme", Role.ADMIN, "offline test setup"),
                "tech": create_token(live.duck, "acme", Role.TECHNICIAN, "offline tablet"),
                "other": create_token(live.duck, "globex", Role.TECHNICIAN, "globex tablet")}
    h = {"Authorization": f"Bearer {n.tokens['admin']}"}
    assert httpx.post(f"{n.url}/api/v1/machines", json=[PRESS, WELDER, LATHE], headers=h,
                      timeout=30).status_code in (200, 201)
    assert httpx.post(f"{n.url}/api/v1/incidents", json=[WELD_INCIDENT], headers=h,
                      timeout=60).status_code == 200
    try:
        yield n
    finally:
        if n.running:
            n.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _until(page: Any, check_js: str, timeout_s: float = 30.0) -> None:
    """Waits until the page's (async) ``check_js`` answers true."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(check_js):
        assert time.monotonic() < deadline, f"not true within {timeout_s} s: {check_js}"
        time.sleep(0.2)


def _tablet(browser: Any, node: LiveNode, errors: list[str]) -> Any:
    """The tablet page signed in as the technician, its service worker in control."""
    page = open_tablet(browser, node.url, node.tokens["tech"], errors)
    page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=30_000)
    return page


def test_offline_scan_queue_and_send_once(browser: Any, node: LiveNode, tmp_path: Path) -> None:
    errors: list[str] = []
    page = _tablet(browser, node, errors)
    # Online: scan the press; the worker saves its briefing and those of its line (L2).
    page.fill("#code-input", PRESS["id"])
    page.click("#form-code button[type=submit]")
    expect(page.locator("#b-name")).to_have_text(PRESS["name"], timeout=30_000)
    # (Polled from here: wait_for_function takes the Promise of an async check as true.)
    _until(page, """async () => {
        const keys = await (await caches.open('rae-briefings-v1')).keys();
        const urls = keys.map((k) => decodeURIComponent(k.url));  // under its id and QR code
        return urls.some((u) => u.endsWith('/machines/WELD-03/briefing')) &&
            urls.some((u) => u.endsWith('/machines/QR:PLANT1:WELD-03/briefing'));
    }""")
    saved = page.evaluate("""async () => (await (await caches.open('rae-briefings-v1')).keys())
        .map((k) => decodeURIComponent(k.url.split('/machines/')[1]))""")
    assert "LATHE-02/briefing" not in saved  # another line: not fetched ahead
    assert page.locator("#offline-mark").count() == 0 or not page.is_visible("#offline-mark")

    node.stop()  # the dead spot: nothing answers on the node's address
    with pytest.raises(httpx.ConnectError):
        httpx.get(node.url + "/api/v1/health", timeout=5)
    page.reload()  # the shell comes from the worker's saved copy
    # The page reopens the machine in hand, from the saved briefing.
    expect(page.locator("#b-name")).to_have_text(PRESS["name"], timeout=30_000)
    expect(page.locator("#offline-mark")).to_have_text(
        re.compile(r"^offline, as of \d\d:\d\d$"), timeout=10_000)
    page.click("nav.tabbar button[data-view=scan]")
    # A scan of the line's other machine, never opened on this tablet: its saved briefing.
    page.fill("#code-input", WELDER["qr_code"])
    page.click("#form-code button[type=submit]")
    expect(page.locator("#b-name")).to_have_text(WELDER["name"], timeout=30_000)
    expect(page.locator("#offline-mark")).to_have_text(
        re.compile(r"^offline, as of \d\d:\d\d$"), timeout=10_000)
    assert "Electrode tip sticks" in page.inner_text("#b-incidents")
    # Saved briefings belong to the token that loaded them: another tenant's token on this
    # tablet gets none of them offline.
    page.evaluate("t => localStorage.setItem('rae.token', t)", node.tokens["other"])
    page.reload()
    expect(page.locator("#scan-error")).to_contain_text("no saved briefing", timeout=30_000)
    page.evaluate("t => localStorage.setItem('rae.token', t)", node.tokens["tech"])
    page.reload()
    expect(page.locator("#b-name")).to_have_text(WELDER["name"], timeout=30_000)
    # Three corrections, a voice note and an incident, all made offline.
    page.click("nav.tabbar button[data-view=note]")
    for i, text in enumerate(NOTES, start=1):
        page.fill("#correction-text", text)
        page.click("#form-correction button[type=submit]")
        expect(page.locator("#offline-queue")).to_have_text(
            f"{i} note{'s' if i > 1 else ''} waiting to send", timeout=10_000)
        expect(page.locator("#correction-status")).to_contain_text("Saved on this tablet")
    audio = tmp_path / "note.wav"
    audio.write_bytes(_wav())
    page.set_input_files("#audio-input", str(audio))
    expect(page.locator("#offline-queue")).to_have_text("4 notes waiting to send", timeout=10_000)
    expect(page.locator("#voice-status")).to_contain_text("Recorded on this tablet")
    status = page.evaluate(POST_JS, [node.tokens["admin"], "/api/v1/incidents", [{
        "machine_id": "WELD-03", "occurred_at": "2026-12-01T03:10:00+00:00",
        "error_code": "W17", "symptom": "Electrode sticks on the night shift"}]])
    assert status == 202
    expect(page.locator("#offline-queue")).to_have_text("5 notes waiting to send", timeout=10_000)
    page.screenshot(path=str(_out("offline-queued.png")))

    node.start()  # back in range: the queue goes out by itself, once
    expect(page.locator("#offline-queue")).to_be_hidden(timeout=60_000)
    q = "SELECT count(*) FROM corrections WHERE tenant_id = 'acme' AND text = ?"
    assert [node.count(q, [t]) for t in NOTES] == [1, 1, 1]
    assert node.count("SELECT count(*) FROM corrections WHERE tenant_id = 'acme'", []) == 3
    assert node.count("SELECT count(*) FROM voice_notes WHERE tenant_id = 'acme'", []) == 1
    assert node.count("SELECT count(*) FROM incidents WHERE tenant_id = 'acme' AND "
                      "symptom = 'Electrode sticks on the night shift'", []) == 1
    # Nothing is left to send: a later flush sends nothing again.
    page.evaluate("navigator.serviceWorker.controller.postMessage({type: 'rae-flush'})")
    time.sleep(1.0)
    assert node.count("SELECT count(*) FROM corrections WHERE tenant_id = 'acme'", []) == 3
    # Online again, the briefing is live (no offline mark) and shows the notes.
    page.click("nav.tabbar button[data-view=briefing]")
    page.click("#btn-b-refresh")
    expect(page.locator("#offline-mark")).to_be_hidden(timeout=30_000)
    expect(page.locator("#b-notes")).to_contain_text(NOTES[0], timeout=30_000)
    page.screenshot(path=str(_out("offline-sent.png")))
    assert errors == []
    page.context.close()


def test_many_queued_arrive_once_and_a_refused_one_waits(browser: Any, node: LiveNode) -> None:
    """24 corrections queued offline all arrive, each exactly once, sent several at a time;
    two the node refuses stay queued with the node's reason shown until the user sends one
    again (its machine added meanwhile) and discards the other."""
    errors: list[str] = []
    page = _tablet(browser, node, errors)
    tech = node.tokens["tech"]
    node.stop()
    tag = uuid.uuid4().hex[:8]
    made = [f"{tag} weld 3 note {i}: electrode tips dressed" for i in range(24)]
    for text in made:
        assert page.evaluate(POST_JS, [tech, "/api/v1/corrections",
                                       {"machine_id": "WELD-03", "text": text}]) == 202
    ghost = f"{tag} ghost note: this machine is not on the node yet"
    assert page.evaluate(POST_JS, [tech, "/api/v1/corrections",
                                   {"machine_id": "GHOST-9", "text": ghost}]) == 202
    assert page.evaluate(POST_JS, [tech, "/api/v1/corrections",
                                   {"machine_id": "WELD-03", "text": "   "}]) == 202
    expect(page.locator("#offline-queue")).to_have_text("26 notes waiting to send",
                                                        timeout=10_000)

    node.start()
    page.wait_for_function("() => window.raeOffline.count === 2", timeout=60_000)
    q = "SELECT text FROM corrections WHERE tenant_id = 'acme' AND text LIKE ?"
    assert node.node is not None
    stored = [r[0] for r in node.node.duck.query(q, [tag + " weld%"])]
    assert sorted(stored) == sorted(made)  # a list: a text stored twice would show
    # The two refused ones wait, each with the node's reason and the user's choice.
    expect(page.locator("#offline-queue")).to_have_text("2 notes waiting to send")
    items = page.locator("#offline-errors li")
    expect(items).to_have_count(2)
    expect(page.locator("#offline-errors")).to_contain_text("GHOST-9")
    expect(page.locator("#offline-errors")).to_contain_text(
        "text: String should have at least 1 character")
    # Waiting writes are not sent again by themselves.
    time.sleep(2.5)
    assert node.count("SELECT count(*) FROM corrections WHERE tenant_id = 'acme'") == 24
    # The machine is added: "Send again" delivers the note; "Discard" drops the empty one.
    assert httpx.post(f"{node.url}/api/v1/machines", timeout=30, json=[
        {"id": "GHOST-9", "name": "Ghost 9", "qr_code": "QR:GHOST-9", "line": "L2"}],
        headers={"Authorization": f"Bearer {node.tokens['admin']}"}).status_code in (200, 201)
    items.filter(has_text="GHOST-9").get_by_role("button", name="Send again").click()
    page.wait_for_function("() => window.raeOffline.count === 1", timeout=30_000)
    items.filter(has_text="text: String should").get_by_role("button", name="Discard").click()
    page.wait_for_function("() => window.raeOffline.count === 0", timeout=30_000)
    expect(page.locator("#offline-queue")).to_be_hidden()
    expect(page.locator("#offline-errors")).to_be_hidden()
    stored = [r[0] for r in node.node.duck.query(
        "SELECT text FROM corrections WHERE tenant_id = 'acme' AND text LIKE ?", [tag + "%"])]
    assert sorted(stored) == sorted([*made, ghost])
    assert errors == []
    page.context.close()


def _out(name: str) -> Path:
    out = Path(__file__).resolve().parents[2] / "test-output"
    out.mkdir(exist_ok=True)
    return out / name
