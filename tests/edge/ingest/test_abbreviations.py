"""Abbreviation expansion for search: built-in table, the MaintNet CSV, a plant's own CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from rae_edge.abbreviations import Abbreviations, expand, read_csv
from rae_edge.errors import InvalidInputError
from tests.conftest import shared_data


def test_builtin_expansions_keep_the_original_tokens() -> None:
    assert expand("L/H BUCKET CYL LEAKING") == "L/H (left hand) BUCKET CYL (cylinder) LEAKING"
    assert expand("R&R FUEL SERVO") == "R&R (remove and replace) FUEL SERVO"
    assert expand("replaced hyd pump w/ new assy.") == (
        "replaced hyd (hydraulic) pump w/ (with) new assy (assembly).")
    # Words that merely contain an abbreviation are left alone.
    assert expand("cylinders pressed hydrant") == "cylinders pressed hydrant"


def test_maintnet_table_adds_meanings(tmp_path: Path) -> None:
    csv_path = shared_data("maintnet", "aviation_abbreviations.csv")
    table = Abbreviations.load([csv_path])
    assert len(table) > len(Abbreviations.load())
    assert "above ground level" in table.expand("descended below 500 AGL")
    # An abbreviation with two meanings in the file shows both.
    assert table.expand("CO detector") == "CO (carbon monoxide / cuttoff) detector"


def test_plant_table_extends_and_bad_rows_are_named(tmp_path: Path) -> None:
    own = tmp_path / "plant.csv"
    own.write_text("abbr,expansion\nLB,light barrier\nCNV,conveyor\n", encoding="utf-8")
    assert read_csv(own) == [("lb", "light barrier"), ("cnv", "conveyor")]
    table = Abbreviations.load([own])
    assert table.expand("CNV 2 LB dirty, R&R") == (
        "CNV (conveyor) 2 LB (light barrier) dirty, R&R (remove and replace)")
    bad = tmp_path / "bad.csv"
    bad.write_text("LB,light barrier\nCNV\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"bad\.csv, row 2"):
        Abbreviations.load([bad])
    with pytest.raises(InvalidInputError, match="cannot read"):
        Abbreviations.load([tmp_path / "absent.csv"])
