"""``tillstream items import`` and ``tillstream stock``, through click's runner."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from tillstream.cli import main
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.core.topics import STOCK_MOVEMENTS
from tillstream.dev.samples import sample_stock_movement
from tillstream_consumers.erp import ErpInventory
from tillstream_consumers.runtime.api import Record
from tillstream_consumers.runtime.applier import Applier
from tillstream_consumers.runtime.db import Database


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'erp.db'}"


def items(url: str) -> list[tuple[object, ...]]:
    db = Database(url)
    try:
        return db.fetchall(
            "SELECT sku, description, reorder_point, lead_time_days, supplier "
            "FROM erp_items ORDER BY sku"
        )
    finally:
        db.close()


def test_items_import_inserts_then_updates(tmp_path: Path, url: str) -> None:
    good = tmp_path / "items.csv"
    good.write_text(
        "sku,description,reorder_point,lead_time_days,supplier\n"
        "SKU-MILK-1L,Milk 1 l,24,3,Dairy Co\n"
        'SKU-APPLES,"Apples, loose",5.5,,\n'
        "SKU-BREAD,,,,\n",
        encoding="utf-8",
    )
    first = CliRunner().invoke(main, ["items", "import", str(good), "--db", url])
    assert first.exit_code == 0, first.output
    assert "3 item(s) inserted, 0 updated" in first.output
    # A file with only some columns updates those and leaves the others as they are.
    update = tmp_path / "points.csv"
    update.write_text("sku,reorder_point\nSKU-BREAD,2.125\nSKU-EGGS,10\n", encoding="utf-8")
    second = CliRunner().invoke(main, ["items", "import", str(update), "--db", url])
    assert second.exit_code == 0, second.output
    assert "1 item(s) inserted, 1 updated" in second.output
    assert items(url) == [
        ("SKU-APPLES", "Apples, loose", 5500, None, None),
        ("SKU-BREAD", None, 2125, None, None),
        ("SKU-EGGS", None, 10000, None, None),
        ("SKU-MILK-1L", "Milk 1 l", 24000, 3, "Dairy Co"),
    ]


def _import_refused(tmp_path: Path, url: str, content: str, where: str) -> str:
    """``items import`` of ``content``: refused at ``where``, nothing imported; the output
    without the file's path."""
    bad = tmp_path / "bad.csv"
    bad.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(main, ["items", "import", str(bad), "--db", url])
    assert result.exit_code == 1
    assert f"{bad}, {where}" in result.output and "nothing imported" in result.output
    db = Database(url)
    db.migrate(ErpInventory.name, list(ErpInventory.migrations))
    db.close()
    assert items(url) == []
    return result.output.replace(str(bad), "")


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("sku,reorder_point\nA,1\nB,lots\n", "line 3, column 'reorder_point'"),
        ("sku,lead_time_days\nA,1\nB,2.5\n", "line 3, column 'lead_time_days'"),
        ("sku,reorder_point\nA,1\n,2\n", "line 3, column 'sku'"),
        ("sku,reorder_point\nA,1\nA,2\n", "line 3, column 'sku'"),
        ("sku,reorder_point\nA,1.0001\n", "line 2, column 'reorder_point'"),
        ("sku,price\nA,1\n", "line 1, column 'price'"),
        ("description\nMilk\n", "line 1, column 'sku'"),
    ],
)
def test_a_bad_items_file_names_line_and_column_and_imports_nothing(
    tmp_path: Path, url: str, content: str, where: str
) -> None:
    _import_refused(tmp_path, url, content, where)


FULL_WIDTH_PAN = "４１１１ １１１１ １１１１ １１１１"


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("sku,description\n4111111111111111,Milk\n", "line 2, column 'sku'"),
        ("sku,description\nSKU-4111.1111.1111.1111,Milk\n", "line 2, column 'sku'"),
        (
            "sku,description\nA,paid ４１１１ １１１１ １１１１ １１１１\n",
            "line 2, column 'description'",
        ),
        ("sku,supplier\nA,4111_1111_1111_1111\n", "line 2, column 'supplier'"),
        ("sku\nA'; DROP TABLE erp_items; --1111\n", "line 2, column 'sku'"),
    ],
)
def test_an_items_file_with_a_card_number_imports_nothing_and_quotes_none(
    tmp_path: Path, url: str, content: str, where: str
) -> None:
    output = _import_refused(tmp_path, url, content, where)
    assert "1111" not in output


def test_stock_prints_json_and_a_table(url: str, codec: AvroCodec) -> None:
    db = Database(url)
    applier = Applier(ErpInventory(Settings()), db, codec.encode)
    applier.prepare()
    batch = []
    for offset, (store, sku, quantity) in enumerate(
        [("S1", "SKU-APPLES", "1.234"), ("S1", "SKU-MILK", "24"), ("S2", "SKU-MILK", "-2")]
    ):
        value = sample_stock_movement(store, at=datetime(2026, 3, 2, tzinfo=UTC))
        value.update(sku=sku, quantity=Decimal(quantity))
        batch.append(
            Record(STOCK_MOVEMENTS.name, 0, offset, store.encode(), "stock_movement", value, 0)
        )
    applier.apply(batch, {(STOCK_MOVEMENTS.name, 0): len(batch)})
    db.close()

    everything = CliRunner().invoke(main, ["stock", "--db", url, "--json"])
    assert everything.exit_code == 0, everything.output
    rows = json.loads(everything.output)
    assert [(r["store_id"], r["sku"], r["on_hand"]) for r in rows] == [
        ("S1", "SKU-APPLES", "1.234"),
        ("S1", "SKU-MILK", "24.000"),
        ("S2", "SKU-MILK", "-2.000"),
    ]
    one = CliRunner().invoke(main, ["stock", "S1", "SKU-MILK", "--db", url, "--json"])
    assert [r["on_hand"] for r in json.loads(one.output)] == ["24.000"]
    # --db falls back to TILLSTREAM_DB_URL; people get a table.
    table = CliRunner().invoke(main, ["stock", "S2"], env={"TILLSTREAM_DB_URL": url})
    assert table.exit_code == 0, table.output
    assert "SKU-MILK" in table.output and "-2.000" in table.output
    assert "S1" not in table.output
