"""Shift reports written the way people write them, through the real ingest pipeline.

A Markdown report headed ``# Night shift 2026-11-20`` then plain notes; German headings with
European dates, some without a year; a plain-text file dated only by its name; a file with
no date anywhere (refused with advice). Each test checks the stored dates, texts and
machine links.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from rae_edge.ingest import ingest_paths
from rae_edge.ingest.result import RejectedFileError
from rae_edge.ingest.shift import entry_date, name_date, parse_shift
from rae_edge.node import EdgeNode
from rae_edge.store.lance import sql_literal
from rae_sync.domain import Machine

BERLIN = ZoneInfo("Europe/Berlin")
MACHINES = [
    Machine(tenant_id="acme", id="press-7", name="Presse 7", qr_code="QR-P7"),
    Machine(tenant_id="acme", id="conveyor-3", name="Förderband 3", qr_code="QR-C3"),
]

NIGHT_SHIFT = """# Night shift 2026-11-20
Press 7 stopped twice with E404 around 01:00. Tightened the bracket of sensor X,
ran fine afterwards.

Conveyor 3 belt tracking adjusted, belt was running off to the left.

Handed over to early shift, nothing open.
"""

SCHICHTBUCH = """# Schichtbuch Halle 2

## Spätschicht 19.11.2026 14:00–22:00
- Presse 7 Werkzeugwechsel, 40 min Stillstand
- Förderband 3 ok

## Nachtschicht 19.11.
- 23:40 press-7 E404 Lichtgitter, Sensor X nachgezogen
- 02:15 Förderband 3 läuft links, Bandlauf nachgestellt

**Frühschicht 20/11/2026**
Keine Störungen.
"""


def _parse(path: Path, text: str) -> list[tuple[str, tuple[str, ...], str]]:
    path.write_text(text, encoding="utf-8")
    return [(e.occurred_at.isoformat(), e.machine_ids, e.text.split("\n")[-1])
            for e in parse_shift(path, MACHINES, zone=BERLIN).entries]


def test_night_shift_heading_then_plain_notes(node: EdgeNode, tmp_path: Path) -> None:
    node.duck.upsert_machines(MACHINES)
    report = tmp_path / "report.md"
    report.write_text(NIGHT_SHIFT, encoding="utf-8")
    res = ingest_paths(node, [report], timezone="Europe/Berlin")
    assert res.rejected == []
    rows = node.lance.rows(f"tenant_id = {sql_literal('acme')} AND kind = 'shift'",
                           ["machine_id", "occurred_at", "text"], 100)
    got = sorted((r["machine_id"] or "-", r["occurred_at"].astimezone(BERLIN).isoformat(),
                  r["text"].split("\n")[-1]) for r in rows)
    # Each paragraph about a different machine is its own memory, linked to that machine.
    assert got == [
        ("-", "2026-11-20T00:00:00+01:00", "Handed over to early shift, nothing open."),
        ("conveyor-3", "2026-11-20T00:00:00+01:00",
         "Conveyor 3 belt tracking adjusted, belt was running off to the left."),
        ("press-7", "2026-11-20T00:00:00+01:00",
         "Press 7 stopped twice with E404 around 01:00. Tightened the bracket of sensor X, "
         "ran fine afterwards."),
    ]
    assert all(r["text"].startswith("Night shift 2026-11-20\n") for r in rows)
    assert res.added == 3


def test_european_dates_yearless_headings_and_night_times(tmp_path: Path) -> None:
    got = _parse(tmp_path / "schichtbuch.md", SCHICHTBUCH)
    assert got == [
        ("2026-11-19T14:00:00+01:00", ("press-7",),
         "- Presse 7 Werkzeugwechsel, 40 min Stillstand"),
        ("2026-11-19T14:00:00+01:00", ("conveyor-3",), "- Förderband 3 ok"),
        # The year comes from the report; a night note after midnight is the next day.
        ("2026-11-19T23:40:00+01:00", ("press-7",),
         "- 23:40 press-7 E404 Lichtgitter, Sensor X nachgezogen"),
        ("2026-11-20T02:15:00+01:00", ("conveyor-3",),
         "- 02:15 Förderband 3 läuft links, Bandlauf nachgestellt"),
        ("2026-11-20T00:00:00+01:00", (), "Keine Störungen."),
    ]


def test_year_from_file_name_and_year_end(tmp_path: Path) -> None:
    text = "# Nachtschicht 31.12.\nPresse 7 ohne Befund\n\n# Frühschicht 1.1.\nFörderband 3 ok\n"
    got = _parse(tmp_path / "Schichtbuch_KW53_2026.md", text)
    assert [(when[:10], ids) for when, ids, _ in got] == [
        ("2026-12-31", ("press-7",)), ("2027-01-01", ("conveyor-3",))]


def test_yearless_report_without_a_year_anywhere_is_refused_with_advice(
        tmp_path: Path) -> None:
    path = tmp_path / "Schichtbuch.md"
    path.write_text("# Nachtschicht 20.11.\n- Presse 7 ok\n", encoding="utf-8")
    with pytest.raises(RejectedFileError) as exc:
        parse_shift(path, MACHINES, zone=BERLIN)
    assert "'20.11.' (line 1) has no year" in str(exc.value)
    assert "file name" in str(exc.value)


def test_undated_file_dated_by_its_name_or_refused(node: EdgeNode, tmp_path: Path) -> None:
    node.duck.upsert_machines(MACHINES)
    notes = "Press 7 ran all night without a stop.\nConveyor 3: belt replaced by maintenance.\n"
    dated = tmp_path / "Schichtbericht_22.11.2026.txt"
    dated.write_text(notes, encoding="utf-8")
    undated = tmp_path / "notes.txt"
    undated.write_text(notes.replace("all night", "all shift"), encoding="utf-8")
    res = ingest_paths(node, [dated, undated], timezone="Europe/Berlin")
    assert res.added == 2
    assert len(res.rejected) == 1 and res.rejected[0].source.endswith("notes.txt")
    assert "put the date in the file name" in res.rejected[0].reason
    assert "'# Night shift 2026-11-20'" in res.rejected[0].reason
    rows = node.lance.rows(f"tenant_id = {sql_literal('acme')} AND kind = 'shift'",
                           ["machine_id", "occurred_at", "text"], 100)
    got = sorted((r["machine_id"], r["occurred_at"].astimezone(BERLIN).date().isoformat(),
                  r["text"].split("\n")[-1]) for r in rows)
    assert got == [("conveyor-3", "2026-11-22", "Conveyor 3: belt replaced by maintenance."),
                   ("press-7", "2026-11-22", "Press 7 ran all night without a stop.")]


def test_date_forms_in_headings_names_and_line_starts() -> None:
    def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
        return datetime(y, mo, d, h, mi, tzinfo=BERLIN)

    assert entry_date("20.11.2026 22:00 Nachtschicht", BERLIN) == at(2026, 11, 20, 22)
    assert entry_date("- 20/11/2026 press stopped", BERLIN) == at(2026, 11, 20)
    assert entry_date("11/20/2026 night", BERLIN) == at(2026, 11, 20)  # month first: day > 12
    assert entry_date("20. November 2026", BERLIN) == at(2026, 11, 20)
    assert entry_date("Nov 20th, 2026 at 6h30", BERLIN) == at(2026, 11, 20, 6, 30)
    assert entry_date("20.11.26 Frühschicht", BERLIN) == at(2026, 11, 20)
    assert entry_date("Press 7 stopped on 20.11.2026", BERLIN) is None  # not at the start
    assert entry_date("3.5 mm gap on the ram guide", BERLIN) is None
    assert name_date("shift-2026-11-20.md", BERLIN) == at(2026, 11, 20)
    assert name_date("night_20261120.md", BERLIN) == at(2026, 11, 20)
    assert name_date("Schichtbericht 20.11.2026.txt", BERLIN) == at(2026, 11, 20)
    assert name_date("Schichtbuch.md", BERLIN) is None


def test_a_short_note_mentioning_a_date_is_not_a_heading(tmp_path: Path) -> None:
    text = ("# Late shift 2026-11-20 14:00\nPress 7 filter due 01.12.2026 per vendor\n"
            "Seal kit ordered 18.11.2026\n")
    got = _parse(tmp_path / "late.md", text)
    assert [when for when, _, _ in got] == ["2026-11-20T14:00:00+01:00"] * len(got)
    assert "Seal kit ordered 18.11.2026" in " ".join(t for _, _, t in got)
