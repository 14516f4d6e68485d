"""Cells a spreadsheet would run as formulas (CSV injection): one rule, refused where text comes
in and neutralised where CSV goes out.

A spreadsheet opening a CSV file takes a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or
a tab or carriage return before one) for a formula: ``=cmd|' /C calc'!A0`` runs a program,
``@HYPERLINK(...)`` sends data away. OWASP's guidance (CSV Injection) is to prefix such a
cell with ``'``, which makes it text. A plain number (``-1.50``, ``+3``) starts the same way
but is no formula: it is left alone, so negative amounts stay numbers.

Every CSV file tillstream writes goes through :func:`csv_writer`; head office's master-data
files are refused cell by cell where :func:`looks_like_formula` (``tillstream.masterdata``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["CsvWriter", "csv_writer", "looks_like_formula", "neutralise"]

# OWASP's list, and the full-width forms some spreadsheets read as the same operators.
_FORMULA_STARTS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?%?")


def looks_like_formula(text: str) -> bool:
    """Whether a spreadsheet would take ``text`` for a formula (not a plain number)."""
    return bool(text) and text[0] in _FORMULA_STARTS and not _NUMBER.fullmatch(text)


def neutralise(value: Any) -> Any:
    """``value`` as a CSV cell that no spreadsheet runs: text that looks like a formula gets
    a leading ``'``; anything else (numbers, other text) is left as it is."""
    if isinstance(value, str) and looks_like_formula(value):
        return "'" + value
    return value


class _Writes(Protocol):
    def write(self, text: str, /) -> Any: ...


class CsvWriter:
    """A :func:`csv.writer` that neutralises every cell (:func:`neutralise`), in RFC 4180's
    dialect: rows end in CRLF, so a cell holding a CR or an LF is quoted (with ``\n`` alone as
    the line end, csv leaves a lone CR unquoted, and a reader sees two rows)."""

    def __init__(self, out: _Writes) -> None:
        self._writer = csv.writer(out, dialect="excel")

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([neutralise(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(out: _Writes) -> CsvWriter:
    """The CSV writer of anything tillstream writes (open files with ``newline=""``)."""
    return CsvWriter(out)
