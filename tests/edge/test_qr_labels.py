"""``rae-edge qr-labels``: the PDF renders (PDFium) and every label decodes (zxing-cpp)
to its machine's QR payload, which the node resolves back to the machine."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pypdfium2 as pdfium
import pytest
import uvicorn
import zxingcpp

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Machine, Role
from rae_tablet_api.app import create_app
from rae_tablet_api.cli import main


def _machines(tenant: str, n: int) -> list[Machine]:
    return [
        Machine(tenant_id=tenant, id=f"PRESS-{i:02d}", name=f"Hydraulic press {i} (Müller)",
                qr_code=(f"https://plant.example/m/PRESS-{i:02d}" if i % 2 else f"PRESS-{i:02d}"),
                site="plant-1", line=f"L{i % 3}")
        for i in range(n)
    ]


def _decoded(pdf: Path) -> list[list[str]]:
    doc = pdfium.PdfDocument(pdf)
    try:
        return [sorted(r.text for r in zxingcpp.read_barcodes(doc[i].render(scale=150 / 72)
                                                                  .to_pil()))
                for i in range(len(doc))]
    finally:
        doc.close()


def _texts(pdf: Path) -> str:
    doc = pdfium.PdfDocument(pdf)
    try:
        return "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
    finally:
        doc.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "node"
    n = EdgeNode(config.load(None, data_dir=d, node={"tenant_id": "acme"}))
    try:
        n.duck.upsert_machines(_machines("acme", 11))
        n.duck.upsert_machines([Machine(tenant_id="other", id="SECRET-1", name="Not ours",
                                        qr_code="SECRET-1")])
    finally:
        n.close()
    return d


def _run(data_dir: Path, *args: str) -> int:
    return main(["qr-labels", "--data-dir", str(data_dir), *args])


def test_every_label_scans_to_its_machine(data_dir: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          artifacts_dir: Path) -> None:
    monkeypatch.setenv("RAE_NODE__TENANT_ID", "acme")
    out = tmp_path / "labels.pdf"
    assert _run(data_dir, str(out)) == 0
    pages = _decoded(out)
    assert len(pages) == 2  # 11 labels, 8 per page
    scanned = [code for page in pages for code in page]
    assert sorted(scanned) == sorted(m.qr_code for m in _machines("acme", 11))
    text = " ".join(_texts(out).split())
    for m in _machines("acme", 11):
        assert m.id in text and f"line {m.line}" in text
    assert "Hydraulic press 3 (Müller)" in text
    assert "SECRET-1" not in text and "SECRET-1" not in scanned
    (artifacts_dir / "qr-labels.pdf").write_bytes(out.read_bytes())
    # Same machines, same bytes: the sheet can be regenerated and diffed.
    again = tmp_path / "again.pdf"
    assert _run(data_dir, str(again)) == 0
    assert again.read_bytes() == out.read_bytes()
    # Each printed payload resolves to its machine on the node.
    n = EdgeNode(config.load(None, data_dir=data_dir, node={"tenant_id": "acme"}))
    try:
        for m in _machines("acme", 11):
            found = n.duck.find_machine_by_qr("acme", m.qr_code)
            assert found is not None and found.id == m.id
    finally:
        n.close()


def test_subset_grid_and_letter(data_dir: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAE_NODE__TENANT_ID", "acme")
    out = tmp_path / "two.pdf"
    assert _run(data_dir, str(out), "--machine", "PRESS-01", "--machine", "PRESS-04",
                "--grid", "3x7", "--page", "letter") == 0
    assert _decoded(out) == [["PRESS-04", "https://plant.example/m/PRESS-01"]]
    doc = pdfium.PdfDocument(out)
    assert tuple(round(v) for v in doc[0].get_size()) == (612, 792)
    doc.close()


def test_link_labels_open_the_tablet_page(data_dir: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAE_NODE__TENANT_ID", "acme")
    out = tmp_path / "links.pdf"
    assert _run(data_dir, str(out), "--machine", "PRESS-03", "--link",
                "https://rae-node.plant:8470/") == 0
    assert _decoded(out) == [["https://rae-node.plant:8470/?m=PRESS-03"]]
    assert _run(data_dir, str(out), "--link", "rae-node:8470") == 2


def test_bad_requests_name_the_problem(data_dir: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAE_NODE__TENANT_ID", "acme")
    out = tmp_path / "x.pdf"
    assert _run(data_dir, str(out), "--machine", "NOPE-9") == 2
    assert "NOPE-9" in capsys.readouterr().err
    assert _run(data_dir, str(out), "--grid", "two-by-four") == 2
    assert "--grid" in capsys.readouterr().err
    assert _run(data_dir, str(out), "--tenant", "empty-tenant") == 2
    assert "no machines" in capsys.readouterr().err
    assert not out.exists()  # nothing half-written


def test_locked_data_dir_points_to_url(data_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Another process (as a serving node would) holds the DuckDB file's write lock.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True);"
         " time.sleep(60)", str(data_dir / "node.duckdb")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert _run(data_dir, str(tmp_path / "x.pdf")) == 2
        err = capsys.readouterr().err
        assert "running node" in err and "--url" in err
    finally:
        holder.kill()
        holder.wait()


def test_through_a_live_node(data_dir: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """With --url the machines come from the serving node's GET /api/v1/machines."""
    node = EdgeNode(config.load(None, data_dir=data_dir, node={"tenant_id": "acme"}))
    token = create_token(node.duck, "acme", Role.TECHNICIAN, "labels")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(node), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.05)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        out = tmp_path / "live.pdf"
        assert main(["qr-labels", str(out), "--url", url, "--token", token,
                     "--machine", "PRESS-02"]) == 0
        assert _decoded(out) == [["PRESS-02"]]
        assert main(["qr-labels", str(out), "--url", url, "--token", "rae_wrong"]) == 2
        assert "401" in capsys.readouterr().err
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        node.close()
