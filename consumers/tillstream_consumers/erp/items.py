"""The item master: importing it from CSV (``tillstream items import FILE.csv``).

Header row ``sku,description,reorder_point,lead_time_days,supplier``; only ``sku`` is
required, and columns left out of the header are left as they are on existing items.
An empty cell is NULL. ``reorder_point`` is a decimal quantity (up to 3 decimal places),
``lead_time_days`` a whole number of days. SKUs follow the edge's SKU rule (never a card
number), and no text may hold a card number. A file with any bad row imports nothing.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tillstream.core.identifiers import sku_problem  # the one SKU rule of every way in
from tillstream.core.pan import contains_pan
from tillstream_consumers.erp.tables import COMPONENT, MIGRATIONS
from tillstream_consumers.runtime.api import QTY_SCALE, to_units
from tillstream_consumers.runtime.db import Database, chunks, marks

COLUMNS = ("sku", "description", "reorder_point", "lead_time_days", "supplier")


class ItemFileError(ValueError):
    """A CSV item file that cannot be imported, naming where it is wrong."""

    def __init__(self, path: Path, line: int | None, column: str | None, problem: str) -> None:
        where = (
            str(path)
            + (f", line {line}" if line else "")
            + (f", column {column!r}" if column else "")
        )
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class ItemFile:
    columns: tuple[str, ...]
    """The header's columns, ``sku`` first: the ones an import sets."""
    rows: list[tuple[Any, ...]]
    """Values in ``columns`` order (reorder points in thousandths)."""


def read_items(path: Path) -> ItemFile:
    """Parse and check the whole file; ItemFileError at the first bad row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            try:
                return _parse(path, reader)
            except csv.Error as exc:
                raise ItemFileError(path, reader.line_num, None, f"malformed CSV: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ItemFileError(path, 1, None, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ItemFileError(path, None, None, f"cannot read: {exc.strerror or exc}") from None


def _parse(path: Path, reader: Any) -> ItemFile:
    header = next(reader, None)
    if header is None:
        raise ItemFileError(path, 1, None, "empty file: expected a header row")
    names = [h.strip().lower() for h in header]
    for name in names:
        if name not in COLUMNS:
            raise ItemFileError(
                path, 1, name, f"unknown column; expected some of {', '.join(COLUMNS)}"
            )
        if names.count(name) > 1:
            raise ItemFileError(path, 1, name, "column appears twice")
    if "sku" not in names:
        raise ItemFileError(path, 1, "sku", "the header has no sku column")
    columns = ("sku", *(c for c in COLUMNS[1:] if c in names))
    rows: list[tuple[Any, ...]] = []
    first_line: dict[str, int] = {}
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) != len(names):
            raise ItemFileError(path, line, None, f"{len(cells)} values for {len(names)} columns")
        raw = {n: c.strip() for n, c in zip(names, cells, strict=True)}
        values = {name: _value(path, line, name, raw[name]) for name in columns}
        sku = values["sku"]
        if sku in first_line:
            raise ItemFileError(path, line, "sku", f"{sku!r} is already on line {first_line[sku]}")
        first_line[sku] = line
        rows.append(tuple(values[c] for c in columns))
    return ItemFile(columns, rows)


def _value(path: Path, line: int, column: str, text: str) -> Any:
    if column == "sku":
        if not text:
            raise ItemFileError(path, line, column, "sku is required")
        if (problem := sku_problem(text)) is not None:  # never quoted: it may be a card
            raise ItemFileError(path, line, column, problem.message)
        return text
    if not text:
        return None
    if column in ("description", "supplier") and contains_pan(text):
        raise ItemFileError(path, line, column, "looks like a card number (PAN)")
    if column == "reorder_point":
        try:
            point = Decimal(text)
        except InvalidOperation:
            raise ItemFileError(path, line, column, f"{text!r} is not a decimal") from None
        if not point.is_finite() or point < 0:
            raise ItemFileError(path, line, column, f"{text!r} must be zero or more")
        if int(point.as_tuple().exponent) < -QTY_SCALE:
            raise ItemFileError(
                path, line, column, f"{text!r} has more than {QTY_SCALE} decimal places"
            )
        return to_units(point, QTY_SCALE)
    if column == "lead_time_days":
        if not (text.isascii() and text.isdigit()):
            raise ItemFileError(path, line, column, f"{text!r} is not a whole number of days")
        return int(text)
    return text


def import_items(db: Database, items: ItemFile) -> tuple[int, int]:
    """Upsert the file's items by sku in one transaction; returns (inserted, updated)."""
    db.migrate(COMPONENT, list(MIGRATIONS))
    columns = items.columns
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    sql = (
        f"INSERT INTO erp_items ({', '.join(columns)}) VALUES ({marks(columns)}) "
        f"ON CONFLICT (sku) {conflict}"
    )
    with db.transaction():
        existing = 0
        for chunk in chunks([row[0] for row in items.rows]):
            row = db.fetchone(
                f"SELECT COUNT(*) FROM erp_items WHERE sku IN ({marks(chunk)})", chunk
            )
            existing += int(row[0]) if row else 0
        db.executemany(sql, items.rows)
    return len(items.rows) - existing, existing
