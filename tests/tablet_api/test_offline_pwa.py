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
import socket
import struct
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Role
from rae_tablet_api.app import create_app

expect: Any = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
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


class Node:
    """One node on a fixed loopback port that can be stopped and started again."""

    def __init__(self, data: Path) -> None:
        self.data = data
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.node: EdgeNode | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> EdgeNode:
        self.node = EdgeNode(config.load(None, data_dir=self.data, node={"tenant_id": "acme"}))
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self._server = uvicorn.Server(uvicorn.Config(create_app(self.node), log_level="warning",
                                                     lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "no start"
            time.sleep(0.05)
        return self.node

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None and self.node is not None
        self._server.should_exit = True
        self._thread.join(30)
        self.node.close()  # (the app's shutdown closes it too; closing twice is harmless)

    def count(self, sql: str, params: list[Any]) -> int:
        assert self.node is not None
        return int(self.node.duck.query(sql, params)[0][0])


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
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "node")
    live = n.start()
    n.admin = create_token(live.duck, "acme", Role.ADMIN, "offline test setup")  # type: ignore[attr-defined]
    n.tech = create_token(live.duck, "acme", Role.TECHNICIAN, "offline tablet")  # type: ignore[attr-defined]
    n.other = create_token(live.duck, "globex", Role.TECHNICIAN, "globex tablet")  # type: ignore[attr-defined]
    h = {"Authorization": f"Bearer {n.admin}"}  # type: ignore[attr-defined]
    assert httpx.post(f"{n.url}/api/v1/machines", json=[PRESS, WELDER, LATHE], headers=h,
                      timeout=30).status_code in (200, 201)
    assert httpx.post(f"{n.url}/api/v1/incidents", json=[WELD_INCIDENT], headers=h,
                      timeout=60).status_code == 200
    try:
        yield n
    finally:
        if n._server is not None and not n._server.should_exit:
            n.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            yield b
        finally:
            b.close()


def test_offline_scan_queue_and_send_once(browser: Any, node: Node, tmp_path: Path) -> None:
    errors: list[str] = []
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.goto(node.url + "/")
    page.wait_for_selector("#view-token:not([hidden])")
    page.fill("#token-input", node.tech)  # type: ignore[attr-defined]
    page.click("#form-token button[type=submit]")
    page.wait_for_selector("#view-scan:not([hidden])")
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30_000)
    # Online: scan the press; the worker saves its briefing and those of its line (L2).
    page.fill("#code-input", PRESS["id"])
    page.click("#form-code button[type=submit]")
    expect(page.locator("#b-name")).to_have_text(PRESS["name"], timeout=30_000)
    page.wait_for_function("""async () => {
        const keys = await (await caches.open('rae-briefings-v1')).keys();
        return keys.some((k) => k.url.endsWith('/machines/WELD-03/briefing'));
    }""", timeout=30_000)
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
    page.evaluate("t => localStorage.setItem('rae.token', t)", node.other)  # type: ignore[attr-defined]
    page.reload()
    expect(page.locator("#scan-error")).to_contain_text("no saved briefing", timeout=30_000)
    page.evaluate("t => localStorage.setItem('rae.token', t)", node.tech)  # type: ignore[attr-defined]
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
    status = page.evaluate("""async (token) => (await fetch('/api/v1/incidents', {
        method: 'POST', headers: {'Content-Type': 'application/json',
        Authorization: 'Bearer ' + token}, body: JSON.stringify([{machine_id: 'WELD-03',
        occurred_at: '2026-12-01T03:10:00+00:00', error_code: 'W17',
        symptom: 'Electrode sticks on the night shift'}])})).status""",
        node.admin)  # type: ignore[attr-defined]
    assert status == 202
    expect(page.locator("#offline-queue")).to_have_text("5 notes waiting to send", timeout=10_000)
    page.screenshot(path=str(_out("offline-queued.png")))

    node.start()  # back in range: the queue goes out by itself, in order, once
    expect(page.locator("#offline-queue")).to_be_hidden(timeout=60_000)
    q = "SELECT count(*) FROM corrections WHERE tenant_id = 'acme' AND text = ?"
    assert [node.count(q, [t]) for t in NOTES] == [1, 1, 1]
    assert node.count("SELECT count(*) FROM corrections WHERE tenant_id = 'acme'", []) == 3
    assert node.count("SELECT count(*) FROM voice_notes WHERE tenant_id = 'acme'", []) == 1
    assert node.count("SELECT count(*) FROM incidents WHERE tenant_id = 'acme' AND "
                      "symptom = 'Electrode sticks on the night shift'", []) == 1
    # The order they were made in is the order they were stored in.
    got = node.node.duck.query(  # type: ignore[union-attr]
        "SELECT text FROM corrections WHERE tenant_id = 'acme' ORDER BY valid_from, id")
    assert [r[0] for r in got] == NOTES
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
    ctx.close()


def _out(name: str) -> Path:
    out = Path(__file__).resolve().parents[2] / "test-output"
    out.mkdir(exist_ok=True)
    return out / name
