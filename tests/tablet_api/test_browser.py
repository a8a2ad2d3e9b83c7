"""The tablet page in a real headless Chromium against a real node over HTTP/WebSocket.

The machine's QR label (segno) is turned into a Y4M video and fed through Chromium's fake
camera; a sentence spoken by espeak-ng is fed through its fake microphone. The page scans
the label, shows the briefing, shows a live push banner when an incident is posted through
the API, saves a typed correction that search then finds, and records a voice note.
Screenshots land in test-output/.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import segno

from rae_edge.node import EdgeNode
from tests.tablet_api.live_node import chromium, open_tablet, served_node

expect: Any = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser

MACHINE = {"id": "PRESS-07", "name": "Hydraulic press 7", "qr_code": "QR:PLANT1:PRESS-07",
           "site": "plant-1", "line": "L2"}
OTHER = {"id": "LATHE-02", "name": "CNC lathe 2", "qr_code": "QR:PLANT1:LATHE-02",
         "site": "plant-1", "line": "L1"}
FIRST_INCIDENT = {"machine_id": "PRESS-07", "occurred_at": "2026-11-12T08:30:00+00:00",
                  "error_code": "E404", "symptom": "Ram stops mid-stroke, light curtain fault",
                  "action": "Replaced light curtain sensor X"}
SPOKEN = "Sensor X was actually loose, not broken. Tighten the bracket."


def write_y4m(path: Path, payload: str, width: int = 640, height: int = 480,
              frames: int = 6) -> None:
    """A short 4:2:0 Y4M clip of a QR code on white (Chromium loops it as the camera)."""
    modules = np.array(list(segno.make_qr(payload, error="m").matrix_iter(scale=1, border=4)),
                       dtype=bool)
    scale = int(min(width, height) * 0.8) // modules.shape[0]
    qr = np.kron(modules, np.ones((scale, scale), dtype=bool))
    y = np.full((height, width), 235, dtype=np.uint8)
    top, left = (height - qr.shape[0]) // 2, (width - qr.shape[1]) // 2
    y[top:top + qr.shape[0], left:left + qr.shape[1]][qr] = 16
    chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8).tobytes()
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + y.tobytes() + chroma + chroma)


def write_speech(path: Path, text: str) -> None:
    """A WAV of ``text`` spoken by espeak-ng (plus a second of silence to end on)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (scripts/test installs it)")
    subprocess.run([espeak, "-s", "140", "-w", str(path), text + " . . . ."], check=True)


@dataclass
class LiveNode:
    url: str
    admin: str
    technician: str
    node: EdgeNode

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + "/api/v1" + path, timeout=30,
                             headers={"Authorization": f"Bearer {self.admin}"}, **kw)

    def has(self, method: str, path: str) -> bool:
        """Whether the node's OpenAPI lists ``method path`` (parameter names aside)."""
        paths = httpx.get(self.url + "/api/v1/schema/openapi.json", timeout=30).json()["paths"]
        shape = re.sub(r"\{[^}]*\}", "{}", path)
        return any(method.lower() in ops for p, ops in paths.items()
                   if re.sub(r"\{[^}]*\}", "{}", p) == shape)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    with served_node(tmp_path_factory.mktemp("browser-node") / "node") as s:
        yield LiveNode(s.url, s.tokens["acme_admin"], s.tokens["acme_technician"], s.node)


def _need(live: LiveNode, *routes: tuple[str, str]) -> None:
    missing = [f"{m} {p}" for m, p in routes if not live.has(m, p)]
    if missing:
        pytest.skip("the node does not serve " + ", ".join(missing) + " yet")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    write_y4m(d / "qr.y4m", MACHINE["qr_code"])
    write_speech(d / "speech.wav", SPOKEN)
    return {"video": d / "qr.y4m", "audio": d / "speech.wav"}


@pytest.fixture(scope="module")
def browser(media: dict[str, Path]) -> Iterator[Any]:
    with chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-video-capture={media['video']}",
                  f"--use-file-for-fake-audio-capture={media['audio']}") as b:
        yield b


@pytest.fixture(scope="module")
def seeded(live: LiveNode) -> dict[str, Any]:
    _need(live, ("post", "/api/v1/machines"), ("post", "/api/v1/incidents"),
          ("get", "/api/v1/machines/{code}/briefing"))
    r = live.api("POST", "/machines", json=[MACHINE, OTHER])
    assert r.status_code in (200, 201), r.text
    r = live.api("POST", "/incidents", json=[FIRST_INCIDENT])
    assert r.status_code in (200, 201), r.text
    ids = r.json()
    ids = ids.get("ids", ids) if isinstance(ids, dict) else ids
    first = ids[0]
    return {"incident_id": first if isinstance(first, str) else first["id"]}


def _open_page(browser: Any, live: LiveNode, errors: list[str]) -> Any:
    return open_tablet(browser, live.url, live.technician, errors, console_errors=True,
                       permissions=["camera", "microphone"])


def test_camera_scan_decodes_the_label(browser: Any, live: LiveNode) -> None:
    """The page's own decoder reads the label from the fake camera (no API route needed)."""
    errors: list[str] = []
    page = _open_page(browser, live, errors)
    page.click("#btn-camera")
    expect(page.locator("#scan-hint")).to_have_text(re.compile("^Found"), timeout=30_000)
    assert page.inner_text("#scan-hint") == "Found: " + MACHINE["qr_code"]
    assert page.evaluate("window.raeState.decoder") in ("jsQR", "BarcodeDetector")
    # The camera is released once the code is read.
    assert page.evaluate("document.getElementById('video').srcObject") is None
    page.context.close()


def test_photo_of_label_decodes(browser: Any, live: LiveNode, tmp_path: Path) -> None:
    """Without a live camera (plain http on a plant network), a photo of the label works."""
    photo = tmp_path / "label.png"
    segno.make_qr(OTHER["qr_code"], error="q").save(str(photo), scale=9, border=6)
    errors: list[str] = []
    page = _open_page(browser, live, errors)
    page.set_input_files("#photo-input", str(photo))
    expect(page.locator("#scan-hint")).to_have_text("Found: " + OTHER["qr_code"],
                                                    timeout=15_000)
    # A photo with no code in it says so.
    blank = tmp_path / "blank.png"
    segno.make_qr("x").save(str(blank), scale=1, border=0, dark="#fff")
    page.set_input_files("#photo-input", str(blank))
    expect(page.locator("#scan-error")).to_contain_text("No QR code found", timeout=15_000)
    page.context.close()


def test_scan_briefing_push_correction_search(browser: Any, live: LiveNode,
                                              seeded: dict[str, Any],
                                              artifacts_dir: Path) -> None:
    _need(live, ("post", "/api/v1/corrections"), ("get", "/api/v1/search"))
    errors: list[str] = []
    page = _open_page(browser, live, errors)
    page.screenshot(path=str(artifacts_dir / "tablet-scan.png"))

    # Scan: the label arrives through the fake camera and is decoded on the page.
    page.click("#btn-camera")
    page.wait_for_selector("#view-briefing:not([hidden])", timeout=30_000)
    assert page.evaluate("window.raeState.decoder") in ("jsQR", "BarcodeDetector")
    assert page.inner_text("#b-name") == MACHINE["name"]
    assert page.inner_text("#machine-chip").startswith(MACHINE["name"])
    summary = page.inner_text("#b-summary")
    assert "E404" in summary, summary
    card = page.locator(f"[data-incident-id='{seeded['incident_id']}']")
    assert "light curtain" in card.inner_text()
    assert "Replaced light curtain sensor X" in card.inner_text()

    # Live push: an incident posted through the API shows up as a banner.
    page.wait_for_selector("#live.on", timeout=15_000)
    new = {"machine_id": "PRESS-07", "occurred_at": "2026-11-24T09:00:00+00:00",
           "error_code": "E404", "symptom": "Ram stops again, light curtain fault",
           "action": None}
    assert live.api("POST", "/incidents", json=[new]).status_code in (200, 201)
    banner = page.wait_for_selector(".banner", timeout=10_000)
    assert "PRESS-07" in banner.inner_text()
    expect(page.locator("#b-incidents .incident")).to_have_count(2, timeout=10_000)
    page.screenshot(path=str(artifacts_dir / "tablet-briefing.png"))
    page.set_viewport_size({"width": 800, "height": 1280})  # the tablet held upright
    page.screenshot(path=str(artifacts_dir / "tablet-briefing-portrait.png"))
    page.set_viewport_size({"width": 1280, "height": 800})

    # Gloves: every control on the briefing is a big target.
    small = page.evaluate("""() => [...document.querySelectorAll(
        'button, .btn, select, textarea, input:not([type=checkbox]):not(.visually-hidden)')]
      .filter((el) => el.offsetParent !== null)
      .map((el) => [el.id || el.textContent.trim(), el.getBoundingClientRect()])
      .filter(([, r]) => r.height < 48 || r.width < 48)
      .map(([name, r]) => name + ' ' + Math.round(r.width) + 'x' + Math.round(r.height))""")
    assert small == [], small

    # A dropped connection resumes from its cursor: what was missed arrives, once.
    page.evaluate("() => { const ws = raeState.ws; raeState.ws = null; ws.onclose = null; "
                  "ws.close(); }")
    missed = {"machine_id": "PRESS-07", "occurred_at": "2026-11-24T09:30:00+00:00",
              "error_code": "E118", "symptom": "Oil temperature high while offline",
              "action": None}
    assert live.api("POST", "/incidents", json=[missed]).status_code in (200, 201)
    page.evaluate("() => raeState.reconnect()")
    expect(page.locator(".banner").first).to_contain_text("Oil temperature high",
                                                          timeout=10_000)
    page.wait_for_timeout(500)  # time for a duplicate to show up, were one sent
    assert page.locator(".banner", has_text="Oil temperature high").count() == 1
    assert page.locator(".banner", has_text="Ram stops again").count() == 1
    expect(page.locator("#b-incidents .incident")).to_have_count(3, timeout=10_000)

    # Correction against the first incident's fix, typed on the page.
    page.locator(f"[data-incident-id='{seeded['incident_id']}'] [data-action=correct]").click()
    page.wait_for_selector("#view-note:not([hidden])")
    assert page.input_value("#note-target") == seeded["incident_id"]
    text = "Sensor X on the light curtain was loose, not broken: retighten the bracket"
    page.fill("#correction-text", text)
    page.click("#form-correction button[type=submit]")
    expect(page.locator("#correction-status")).to_have_text(re.compile("^Saved"),
                                                            timeout=15_000)

    # The briefing now shows the fix as superseded, the correction beside it.
    page.click(".tabbar [data-view=briefing]")
    page.wait_for_selector(
        f"[data-incident-id='{seeded['incident_id']}'] .correction", timeout=10_000)
    fixed = page.locator(f"[data-incident-id='{seeded['incident_id']}']")
    assert "loose, not broken" in fixed.locator(".correction").inner_text()
    assert fixed.locator(".fix.superseded").count() == 1
    fixed.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "tablet-briefing-corrected.png"))

    # Search finds the correction.
    page.click(".tabbar [data-view=search]")
    page.fill("#search-input", "light curtain sensor loose")
    page.click("#form-search button[type=submit]")
    hit = page.wait_for_selector("#search-results .hit[data-kind=correction]", timeout=15_000)
    assert "loose, not broken" in hit.inner_text()
    page.screenshot(path=str(artifacts_dir / "tablet-search.png"))
    assert errors == [], errors
    page.context.close()


def test_unknown_code_says_so(browser: Any, live: LiveNode, seeded: dict[str, Any]) -> None:
    errors: list[str] = []
    page = _open_page(browser, live, errors)
    page.fill("#code-input", "NO-SUCH-MACHINE")
    page.click("#form-code button[type=submit]")
    err = page.wait_for_selector("#scan-error:not([hidden])", timeout=10_000)
    assert "NO-SUCH-MACHINE" in err.inner_text()
    # Typed by hand, the other machine opens; none of PRESS-07's incidents show on it.
    page.fill("#code-input", OTHER["id"])
    page.click("#form-code button[type=submit]")
    page.wait_for_selector("#view-briefing:not([hidden])", timeout=10_000)
    assert page.inner_text("#b-name") == OTHER["name"]
    assert "light curtain" not in page.inner_text("#b-incidents")
    page.context.close()


def test_voice_note_through_fake_microphone(browser: Any, live: LiveNode,
                                            seeded: dict[str, Any],
                                            artifacts_dir: Path) -> None:
    _need(live, ("post", "/api/v1/voice-notes"), ("get", "/api/v1/voice-notes/{id}"))
    errors: list[str] = []
    page = _open_page(browser, live, errors)
    page.fill("#code-input", MACHINE["id"])
    page.click("#form-code button[type=submit]")
    page.wait_for_selector("#view-briefing:not([hidden])", timeout=10_000)
    page.click("#btn-b-note")
    page.select_option("#note-target", seeded["incident_id"])
    page.click("#btn-record")
    expect(page.locator("#voice-status")).to_have_text(re.compile("^Recording"))
    page.wait_for_timeout(5_500)  # the espeak sentence is about 4 s
    page.click("#btn-record")
    page.wait_for_selector("#voice-draft:not([hidden])", timeout=90_000)
    draft = page.input_value("#voice-text")
    # Through the fake microphone, Opus and tiny.en a word may differ ("lose"/"loose");
    # the sentence's key words must be there.
    heard = set(re.findall(r"[a-z]+", draft.lower()))
    assert len({"sensor", "broken", "tighten", "bracket"} & heard) >= 3, draft
    page.screenshot(path=str(artifacts_dir / "tablet-voice-draft.png"))
    page.fill("#voice-text", draft + " (checked on site)")
    page.click("#btn-voice-confirm")
    expect(page.locator("#voice-status")).to_have_text(re.compile("^Saved"), timeout=15_000)
    page.click(".tabbar [data-view=briefing]")
    card = page.locator(f"[data-incident-id='{seeded['incident_id']}']")
    expect(card.locator(".correction").last).to_contain_text("(checked on site)",
                                                              timeout=10_000)
    expect(card.locator(".correction").last).to_contain_text("Correction (voice)")
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "tablet-voice-confirmed.png"))
    assert errors == [], errors
    page.context.close()
