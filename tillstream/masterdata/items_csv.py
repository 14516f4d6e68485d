"""An item master file (``tillstream items publish FILE.csv``) to items by key.

Columns: ``sku,gtins,description,unit_of_measure,weighed,stock_item`` are required;
``tax_class,reorder_point,lead_time_days,supplier`` are optional (a column left out, or an
empty cell, is null). ``gtins`` are separated by ``|``; booleans are ``true`` or ``false``.
A row is the whole item: what it leaves out is not kept from an earlier publish.

A SKU twice in the file, or a GTIN on two items, is a problem: a barcode scans as one item.
GTINs compare in all their lengths (``tillstream.core.identifiers.gtin14``): the GTIN-13
``4006381333931`` and the GTIN-14 ``04006381333931`` are one GTIN, as a scanner sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tillstream.core.identifiers import gtin14, gtin_problem
from tillstream.core.topics import item_key
from tillstream.masterdata import cells
from tillstream.masterdata.cells import CellProblem
from tillstream.masterdata.csv_file import Problems, Progress, Row, read_rows

REQUIRED = ("sku", "gtins", "description", "unit_of_measure", "weighed", "stock_item")
OPTIONAL = ("tax_class", "reorder_point", "lead_time_days", "supplier")
CONTENT = (*REQUIRED, *OPTIONAL)
"""The fields of an item that say what it is (not ``event_id`` nor ``published_at``)."""
LEAD_TIME_MOST = 3650


def read_items(path: Path, progress: Progress | None = None) -> dict[bytes, dict[str, Any]]:
    """The file's items by message key (:func:`~tillstream.core.topics.item_key`), each with
    the :data:`CONTENT` fields; :class:`MasterFileError` listing every problem found."""
    problems = Problems(path)
    items: dict[bytes, dict[str, Any]] = {}
    first_row: dict[str, int] = {}
    gtin_row: dict[str, int] = {}
    for row in read_rows(path, REQUIRED, OPTIONAL, problems, progress):
        item = _item(row, problems)
        if item is None:
            continue
        sku = item["sku"]
        if sku in first_row:
            problems.add(row.number, "sku", f"the same SKU as row {first_row[sku]}")
            continue
        first_row[sku] = row.number
        for gtin in map(_same, item["gtins"]):
            if gtin in gtin_row:
                problems.add(row.number, "gtins", f"a GTIN of row {gtin_row[gtin]} too")
            gtin_row.setdefault(gtin, row.number)
        items[item_key(sku)] = item
    problems.raise_any()
    return items


def _item(row: Row, problems: Problems) -> dict[str, Any] | None:
    """The row's item, or None after adding its problems."""
    item: dict[str, Any] = {}
    ok = not row.refused
    for column in CONTENT:
        if column in row.refused:
            continue
        try:
            item[column] = _PARSE[column](row.cells.get(column, ""))
        except CellProblem as problem:
            problems.add(row.number, column, str(problem))
            ok = False
    return item if ok else None


def _gtins(text: str) -> list[str]:
    gtins = [g.strip() for g in text.split("|")] if text else []
    for gtin in gtins:
        if (problem := gtin_problem(gtin)) is not None:
            raise CellProblem(problem.message)
    if len(set(map(_same, gtins))) != len(gtins):
        raise CellProblem("a GTIN is listed twice (in the same or another length)")
    return gtins


def _same(gtin: str) -> str:
    """The form two GTINs compare in (checked GTINs always have one)."""
    return gtin14(gtin) or gtin


_PARSE: dict[str, Callable[[str], Any]] = {
    "sku": cells.sku,
    "gtins": _gtins,
    "description": lambda t: cells.text(t, required=True),
    "unit_of_measure": cells.unit,
    "weighed": cells.boolean,
    "stock_item": cells.boolean,
    "tax_class": cells.text,
    "reorder_point": lambda t: cells.decimal(t, scale=3, precision=15) if t else None,
    "lead_time_days": lambda t: cells.whole_number(t, most=LEAD_TIME_MOST) if t else None,
    "supplier": cells.text,
}


def gtin_clashes(master: Iterable[dict[str, Any]], most: int = 10) -> list[str]:
    """GTINs on two items of ``master`` (what the topic would hold after publishing), for
    people: a partial file that moves a GTIN to another item must publish both items."""
    owner: dict[str, str] = {}
    clashes: list[str] = []
    for item in master:
        sku = item["sku"]
        for gtin in item["gtins"]:
            first = owner.setdefault(_same(gtin), sku)
            if first != sku and len(clashes) < most:
                clashes.append(f"GTIN {gtin} would be on {first} and on {sku}")
    return clashes
