"""``tillstream stock`` and the retired ``tillstream items import``, through click's runner."""

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


def test_items_import_is_retired_with_a_pointer_to_items_publish(url: str) -> None:
    """The ERP takes its item master from tillstream.items (docs/erp.md): the old import
    says so, whatever it is given, and touches no database."""
    result = CliRunner().invoke(main, ["items", "import", "items.csv", "--db", url])
    assert result.exit_code == 1
    assert "retired" in result.output and "tillstream items publish FILE.csv" in result.output
    assert "reorder_point" in result.output  # the new file's columns are named


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
