"""Ingest of real files into a real node: a generated PDF manual, error logs with broken
rows, a shift book, files the node must refuse, and the shared data sets. Each test
asserts what was stored and what was rejected, and that a second run stores nothing."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from rae_edge.errors import InvalidInputError, NotFoundError
from rae_edge.ingest import IngestResult, ingest_paths
from rae_edge.node import EdgeNode
from rae_edge.sample_plant.pdfgen import write_pdf
from rae_edge.store.lance import sql_literal
from rae_sync.domain import Machine
from tests.conftest import ROOT, shared_data

EXAMPLES = ROOT / "edge" / "examples"


def _machines(node: EdgeNode) -> None:
    node.duck.upsert_machines([
        Machine(tenant_id="acme", id="press-1", name="Hydraulic press 1", qr_code="QR-P1"),
        Machine(tenant_id="acme", id="conveyor-3", name="Packaging conveyor 3", qr_code="QR-C3"),
    ])


def _manual(path: Path, password: str | None = None) -> Path:
    return write_pdf(path, [
        ("h1", "1 Safety"),
        ("p", "Lock out the main switch before any work on the hydraulics."),
        ("h1", "4 Troubleshooting"),
        ("h2", "4.1 Error codes"),
        ("p", "E404 light curtain receiver does not answer. F-12 pump motor overload."),
        ("page", ""),
        ("h2", "4.2 Sensor faults"),
        ("p", "E404: clean the lenses and check connector X4. If E404 stays, replace the "
              "receiver (sensor X). After a replacement ALM 3001 may show once."),
    ], title="HP-200 manual", encrypt_password=password)


def _rows(node: EdgeNode, where: str, cols: list[str]) -> list[dict[str, object]]:
    return node.lance.rows(f"tenant_id = {sql_literal('acme')} AND ({where})", cols, 10_000)


def test_pdf_manual_chunks_keep_pages_sections_and_codes(node: EdgeNode, tmp_path: Path) -> None:
    _machines(node)
    pdf = _manual(tmp_path / "hp200.pdf")
    res = ingest_paths(node, [pdf], machine_id="press-1")
    assert res.rejected == [] and res.added == 3
    rows = _rows(node, "kind = 'manual'",
                 ["id", "machine_id", "page", "section", "text", "error_codes", "source",
                  "document_id", "model_id"])
    by_section = {r["section"]: r for r in rows}
    assert set(by_section) == {"1 Safety", "4 Troubleshooting > 4.1 Error codes",
                               "4 Troubleshooting > 4.2 Sensor faults"}
    sensor = by_section["4 Troubleshooting > 4.2 Sensor faults"]
    assert sensor["page"] == 2  # the section started on the second page
    assert sensor["error_codes"] == ["E404", "ALM 3001"]
    assert by_section["4 Troubleshooting > 4.1 Error codes"]["error_codes"] == ["E404", "F-12"]
    assert all(r["machine_id"] == "press-1" and r["source"] == "HP-200 manual" for r in rows)
    assert all(r["model_id"] == node.embedder.model_id for r in rows)
    doc = node.duck.query("SELECT id, title, kind, chunks FROM documents WHERE tenant_id = 'acme'")
    assert doc == [(sensor["document_id"], "hp200.pdf", "manual", 3)]
    # A scan of press-1 with E404 finds the manual section by its structured code.
    hits = _rows(node, "machine_id = 'press-1' AND array_has(error_codes, 'E404')", ["section"])
    assert {h["section"] for h in hits} >= {"4 Troubleshooting > 4.2 Sensor faults"}

    again = ingest_paths(node, [pdf], machine_id="press-1")
    assert (again.added, again.duplicates) == (0, 3)
    # The same content saved again (other bytes) is recognised chunk by chunk.
    copy = _manual(tmp_path / "hp200-copy.pdf")
    third = ingest_paths(node, [copy], machine_id="press-1")
    assert (third.added, third.duplicates) == (0, 3)
    assert node.lance.count("kind = 'manual'") == 3


def test_bad_pdfs_are_rejected_with_their_reason(node: EdgeNode, tmp_path: Path) -> None:
    good = _manual(tmp_path / "good.pdf")
    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(good.read_bytes()[:300])  # cut off: no pages, no xref
    misnamed = tmp_path / "notes.pdf"
    misnamed.write_text("this is not a PDF at all")
    locked = _manual(tmp_path / "locked.pdf", password="s3cret")
    assert PdfReader(str(locked)).is_encrypted
    # Owner-password only (opens without a password): readable, so ingested.
    owner_only = tmp_path / "owner-only.pdf"
    writer = PdfWriter(clone_from=str(good))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    writer.write(str(owner_only))

    res = ingest_paths(node, [corrupt, misnamed, locked, good, owner_only])
    reasons = {Path(r.source).name: r.reason for r in res.rejected}
    assert set(reasons) == {"corrupt.pdf", "notes.pdf", "locked.pdf"}
    assert reasons["corrupt.pdf"].startswith(("corrupt PDF", "no extractable text"))
    assert "not a PDF" in reasons["notes.pdf"]
    assert "encrypted PDF" in reasons["locked.pdf"] and "password" in reasons["locked.pdf"]
    assert res.added == 3 and res.duplicates == 3  # good.pdf, then owner-only.pdf: same text
    assert node.lance.count("kind = 'manual'") == 3


ERROR_LOG = """timestamp,machine,code,message,fix
2026-01-14 06:42,press-1,E404,Press stopped: light curtain receiver not responding,Cleaned lenses
2026-02-03 06:58,press-1,E404,E404 three times in one hour,Replaced sensor X
2026-02-03 07:10,press-1,E404,too,many,fields,here
31/02/2026 08:00,conveyor-3,F-12,Drive tripped,Reset Q1
2026-02-05 09:00,conveyor-3,,,Nothing written
2026-02-06 10:00,,F-12,No machine in this row,Reset
2026-02-07 11:00,lathe-9,,Spindle noise ALM 3001 after warm-up,Greased spindle bearing
"""


def test_error_log_csv_with_broken_rows(node: EdgeNode, tmp_path: Path) -> None:
    _machines(node)
    log = tmp_path / "controller.csv"
    log.write_text(ERROR_LOG, encoding="utf-8")
    res = ingest_paths(node, [log], mapping=EXAMPLES / "error_log.yaml")
    reasons = {r.source.rsplit(", ", 1)[1]: r.reason for r in res.rejected}
    assert reasons == {
        "line 4": "7 fields where the header has 5",
        "line 5": reasons["line 5"],
        "line 6": "empty symptom",
        "line 7": "no machine id (column 'machine' is empty)",
    }
    assert "31/02/2026" in reasons["line 5"]
    assert res.added == 3 and res.files[0].machines_created == ["lathe-9"]
    stored = node.duck.incidents_for_machine("acme", "press-1")
    assert [(i.error_code, i.action) for i in stored] == [
        ("E404", "Replaced sensor X"), ("E404", "Cleaned lenses")]
    # The mapping's zone: 06:58 in Berlin (winter) is 05:58 UTC.
    assert stored[0].occurred_at == datetime(2026, 2, 3, 5, 58, tzinfo=UTC)
    lathe = node.duck.incidents_for_machine("acme", "lathe-9")
    assert lathe[0].error_code == "ALM 3001"  # no code column value: found in the text
    assert node.duck.get_machine("acme", "lathe-9") is not None
    assert node.lance.count("kind = 'incident'") == 3

    again = ingest_paths(node, [log], mapping=EXAMPLES / "error_log.yaml")
    assert (again.added, again.duplicates) == (0, 3)
    # The file grows by one row: only that row is new.
    log.write_text(ERROR_LOG + "2026-02-08 12:00,press-1,E117,Oil hot,Cleaned cooler\n")
    grown = ingest_paths(node, [log], mapping=EXAMPLES / "error_log.yaml")
    assert (grown.added, grown.duplicates, len(grown.rejected)) == (1, 3, 4)
    assert node.duck.query("SELECT count(*) FROM incidents")[0][0] == 4


def test_json_lines_log_with_guessed_columns(node: EdgeNode, tmp_path: Path) -> None:
    _machines(node)
    log = tmp_path / "alarms.jsonl"
    log.write_text("\n".join([
        json.dumps({"time": "2026-03-01T08:00:00Z", "machine": "conveyor-3", "code": "F-12",
                    "message": "Drive overload", "action": "Removed jammed carton"}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"time": "2026-03-02T08:00:00Z", "machine": "conveyor-3",
                    "message": "Belt drifts to the left"}),
    ]) + "\n")
    res = ingest_paths(node, [log])
    assert res.added == 2
    reasons = sorted(r.reason for r in res.rejected)
    assert reasons[0].startswith("expected a JSON object") and "not valid JSON" in reasons[1]
    incs = node.duck.incidents_for_machine("acme", "conveyor-3")
    assert [(i.error_code, i.symptom) for i in incs] == [
        (None, "Belt drifts to the left"), ("F-12", "Drive overload")]


SHIFT_BOOK = """# Shift book line A
Handover notes are kept below.

## 2026-02-03 06:00 Early shift
- Press 1: E404 three times. Maintenance replaced sensor X on the light curtain.
- packaging conveyor 3 belt tracking adjusted, PRESS-1 waited for cartons.

## 2026-02-03 14:00 Late shift
Quiet shift, nothing to report on the machines.

03.02.2026 22:00 Night shift: conveyor-3 stopped with F-12, reset Q1.
"""


def test_shift_report_entries_are_dated_and_linked(node: EdgeNode, tmp_path: Path) -> None:
    _machines(node)
    book = tmp_path / "shift.md"
    book.write_text(SHIFT_BOOK, encoding="utf-8")
    res = ingest_paths(node, [book], timezone="Europe/Berlin")
    assert [r.reason for r in res.rejected] == [
        "text before the first dated entry: no date to file it under"]
    assert res.rejected[0].source.endswith("lines 2-2")
    rows = _rows(node, "kind = 'shift'", ["id", "machine_id", "occurred_at", "text",
                                         "error_codes"])
    linked = sorted((r["machine_id"] or "-", r["occurred_at"].hour, r["text"].split("\n")[-1][:20])
                    for r in rows)
    assert linked == [
        ("-", 13, "Quiet shift, nothing"),
        ("conveyor-3", 5, "- packaging conveyor"),
        ("conveyor-3", 21, "03.02.2026 22:00 Nig"),
        ("press-1", 5, "- Press 1: E404 thre"),
        ("press-1", 5, "- packaging conveyor"),
    ]
    e404 = [r for r in rows if "E404" in r["text"]]
    assert e404[0]["error_codes"] == ["E404"]
    assert res.added == 4  # entries; the one naming two machines is one entry, two rows
    again = ingest_paths(node, [book], timezone="Europe/Berlin")
    assert (again.added, again.duplicates) == (0, 4)


def test_unknown_format_is_rejected_and_the_rest_ingested(node: EdgeNode, tmp_path: Path) -> None:
    _machines(node)
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "minutes.docx").write_bytes(b"PK\x03\x04 word file")
    (folder / "README").write_text("no extension")
    _manual(folder / "manual.pdf")
    (folder / "book.md").write_text("2026-02-03 Press 1 leaking oil at the ram seal.\n")
    (folder / ".hidden.csv").write_text("ignored")
    res = ingest_paths(node, [folder, tmp_path / "absent.csv"])
    reasons = {Path(r.source).name: r.reason for r in res.rejected}
    assert set(reasons) == {"minutes.docx", "README", "absent.csv"}
    assert reasons["minutes.docx"].startswith("unknown format '.docx'")
    assert reasons["absent.csv"] == "no such file or folder"
    assert res.added == 4  # 3 manual chunks + 1 shift entry
    summary = res.summary()
    assert "added 4" in summary and "minutes.docx: unknown format" in summary


def test_bad_calls_raise(node: EdgeNode, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="unknown machine 'nope'"):
        ingest_paths(node, [tmp_path], machine_id="nope")
    bad = tmp_path / "m.yaml"
    bad.write_text("symptom: text\ncolour: blue\n")
    with pytest.raises(InvalidInputError, match="colour"):
        ingest_paths(node, [tmp_path], mapping=bad)
    (tmp_path / "a.csv").write_text("when,what\n2026-01-01,thing\n")
    (tmp_path / "b.csv").write_text("when,message\n2026-01-01,thing\n")
    res = ingest_paths(node, [tmp_path / "a.csv", tmp_path / "b.csv"])
    assert "no symptom column recognised among 'when', 'what'" in res.rejected[0].reason
    assert res.rejected[1].reason.startswith("no machine: the mapping names no machine column")


def test_mwo2kg_work_orders_with_the_example_mapping(node: EdgeNode) -> None:
    src = shared_data("mwo2kg", "work_orders.csv")
    res = ingest_paths(node, [src], mapping=EXAMPLES / "mwo2kg_work_orders.yaml")
    with src.open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    good = [r for r in rows if r["AssetID"].startswith("AID")]
    assert res.added == len(good) == 499
    assert [r.reason for r in res.rejected] == [
        "machine id 'SID1' does not match machine_pattern 'AID[0-9]+' (columns shifted in "
        "this row?)"]
    assert res.files[0].machines_created == sorted({r["AssetID"] for r in good})
    aid5 = node.duck.incidents_for_machine("acme", "AID5", limit=1000)
    assert len(aid5) == sum(1 for r in good if r["AssetID"] == "AID5")
    newest = max((r for r in good if r["AssetID"] == "AID5"),
                  key=lambda r: datetime.strptime(r["Work_Order_Basic_Start_Date"], "%d/%m/%Y"))
    assert aid5[0].occurred_at == datetime.strptime(
        newest["Work_Order_Basic_Start_Date"], "%d/%m/%Y").replace(tzinfo=UTC)
    assert aid5[0].symptom == (f"{newest['ShortText'].strip()}. "
                               f"{newest['Functional_Location_Description'].strip()}")
    assert node.lance.count("machine_id = 'AID5'") == len(aid5)
    assert ingest_paths(node, [src], mapping=EXAMPLES / "mwo2kg_work_orders.yaml").added == 0


def test_maintnet_lines_with_the_example_mapping(node: EdgeNode, tmp_path: Path) -> None:
    src = shared_data("maintnet", "aircraft_problem_action.csv")
    # The first 300 lines, as the file has them (the benchmark ingests all 6,169).
    lines = src.read_text(encoding="utf-8-sig").splitlines(keepends=True)[:301]
    part = tmp_path / "maintnet_head.csv"
    part.write_text("".join(lines), encoding="utf-8")
    res = ingest_paths(node, [part], mapping=EXAMPLES / "maintnet_problem_action.yaml")
    assert res.rejected == [] and res.added == 300  # same words, other IDENT: kept apart
    incs = node.duck.incidents_for_machine("acme", "aircraft-fleet", limit=1000)
    assert {i.symptom for i in incs} >= {"ENGINE IDLE OVERRIDE KILLED ENGINE."}
    r_and_r = [i for i in incs if i.action == "REMOVED & REPLACED FUEL SERVO"]
    assert r_and_r and r_and_r[0].source.startswith("workorders:maintnet_head.csv#1000")
    assert ingest_paths(node, [part], mapping=EXAMPLES / "maintnet_problem_action.yaml"
                        ).duplicates == 300


def test_cli_ingest_prints_the_summary(tmp_path: Path) -> None:
    data = tmp_path / "node"
    folder = tmp_path / "in"
    _manual(folder / "manual.pdf")
    (folder / "scan.tiff").write_bytes(b"II*\x00")
    cmd = [str(Path(sys.executable).parent / "rae-edge"), "ingest", "--data-dir", str(data),
           str(folder), "--no-progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr  # a whole file (scan.tiff) was rejected
    assert "added 3, skipped 0 as duplicate, rejected 1" in out.stdout
    assert "scan.tiff: unknown format '.tiff'" in out.stdout
    (folder / "scan.tiff").unlink()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "added 0, skipped 3 as duplicate" in out.stdout


def test_result_serialises() -> None:
    assert IngestResult().to_dict() == {"added": 0, "duplicates": 0, "rejected": [],
                                        "files": []}


def test_cli_beside_a_node_without_a_token_says_so(node: EdgeNode, tmp_path: Path) -> None:
    pdf = _manual(tmp_path / "m.pdf")
    out = subprocess.run([str(Path(sys.executable).parent / "rae-edge"), "ingest", "--data-dir",
                          str(node.data_dir), str(pdf)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2
    # An in-process node opens no local admin channel: the command says so and names
    # the token route (the channel itself: tests/security/test_live_node_commands.py).
    assert "is held by a running node" in out.stderr
    assert "local admin channel cannot be used" in out.stderr
    assert "--token-file" in out.stderr
    assert node.lance.count() == 0
