"""Reading item and price files (no broker): every problem by row and column, never the
value; the records and keys a good file gives."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tillstream.core.topics import item_key, price_key
from tillstream.masterdata.csv_file import MAX_PROBLEMS, MasterFileError
from tillstream.masterdata.items_csv import read_items
from tillstream.masterdata.prices_csv import describe_key, read_prices
from tillstream.simulate.catalog import CATALOG, DEPOSITS, items_csv, prices_csv

ITEMS = "sku,gtins,description,unit_of_measure,weighed,stock_item"
PRICES = "sku,store_id,amount,currency,valid_from,valid_until"


def write(tmp_path: Path, text: str, name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, read: object = read_items) -> MasterFileError:
    with pytest.raises(MasterFileError) as caught:
        read(path)  # type: ignore[operator]
    return caught.value


def test_a_good_item_file_gives_whole_items_by_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\ufeff" + ITEMS + ",reorder_point,supplier,note\n"  # a BOM, an unknown column
        "MILK,4006381333931|96385074,Milk 1 l,ea,FALSE,True,24.5,Dairy,x\n"
        "\n"  # blank rows are skipped
        'APPLES,,"Apples, loose",kgm,true,true,,,\n',
    )
    items = read_items(path)
    assert list(items) == [item_key("MILK"), item_key("APPLES")]
    milk = items[item_key("MILK")]
    assert milk == {
        "sku": "MILK",
        "gtins": ["4006381333931", "96385074"],
        "description": "Milk 1 l",
        "unit_of_measure": "EA",
        "weighed": False,
        "stock_item": True,
        "tax_class": None,
        "reorder_point": Decimal("24.5"),
        "lead_time_days": None,  # not in the header: null
        "supplier": "Dairy",
    }
    assert items[item_key("APPLES")]["unit_of_measure"] == "KGM"


def test_problems_are_listed_up_to_a_limit(tmp_path: Path) -> None:
    rows = "".join(f"SKU-{n},,Item,BOX,false,true\n" for n in range(MAX_PROBLEMS + 50))
    error = problems(write(tmp_path, ITEMS + "\n" + rows))
    assert len(error.problems) == MAX_PROBLEMS and not error.complete
    assert f"stopped after the first {MAX_PROBLEMS}" in str(error)
    assert str(error.problems[0]) == (
        "row 2, column 'unit_of_measure': not a unit of measure tillstream reads (UN/ECE Rec "
        "20 codes of pieces, weight, volume and length: EA, C62, PCE, KGM, GRM, LBR, LTR, MTR...)"
    )


def test_every_header_problem_is_named_at_once(tmp_path: Path) -> None:
    error = problems(write(tmp_path, "sku,SKU,description,weighed\n"))
    assert [str(p) for p in error.problems] == [
        "row 1, column 'sku': column appears twice",
        "row 1, column 'gtins': the header has no gtins column "
        "(needed: sku, gtins, description, unit_of_measure, weighed, stock_item)",
        "row 1, column 'unit_of_measure': the header has no unit_of_measure column "
        "(needed: sku, gtins, description, unit_of_measure, weighed, stock_item)",
        "row 1, column 'stock_item': the header has no stock_item column "
        "(needed: sku, gtins, description, unit_of_measure, weighed, stock_item)",
    ]
    assert "empty file" in str(problems(write(tmp_path, "")))


@pytest.mark.parametrize(
    "cell",
    [
        "4111111111111111",  # a card number as a GTIN
        "4111 1111 1111 1111",
        "4006381333931|5500000000000004",
    ],
)
def test_a_card_number_is_named_and_never_quoted(tmp_path: Path, cell: str) -> None:
    error = problems(write(tmp_path, f"{ITEMS},supplier\nA,{cell},Milk,EA,false,true,{cell}\n"))
    assert {(p.row, p.column) for p in error.problems} == {(2, "gtins"), (2, "supplier")}
    assert "1111" not in str(error) and "0004" not in str(error)


def test_a_good_price_file_keys_each_window(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        PRICES + "\n"
        "MILK,,1.19,EUR,,\n"
        "MILK,S001,1.09,EUR,2026-03-01,2026-03-01\n"  # one day: until is inclusive
        "MILK,S001,0.99,EUR,2026-03-02T08:00:00+01:00,2026-03-03\n"  # a time, then a day
        "MILK,,1.29,EUR,2026-04-01T00:00:00Z,\n",
    )
    prices = read_prices(path)
    keys = list(prices)
    assert keys == [
        price_key(None, "MILK", None),
        price_key("S001", "MILK", "2026-03-01"),
        price_key("S001", "MILK", "2026-03-02T07:00:00+00:00"),
        price_key(None, "MILK", "2026-04-01T00:00:00+00:00"),
    ]
    assert [describe_key(k) for k in keys] == [
        "*/MILK/-",
        "S001/MILK/2026-03-01",
        "S001/MILK/2026-03-02T07:00:00+00:00",
        "*/MILK/2026-04-01T00:00:00+00:00",
    ]
    timed = prices[keys[2]]
    assert timed["valid_from"] == datetime(2026, 3, 2, 7, tzinfo=UTC)
    assert timed["valid_from"].tzinfo is not None
    assert (timed["valid_from_day"], timed["valid_until_day"]) == (None, date(2026, 3, 3))
    assert isinstance(timed["amount"], Decimal) and timed["amount"] == Decimal("0.99")


def test_a_day_until_and_a_time_from_are_compared_in_utc(tmp_path: Path) -> None:
    # Until the end of 1 March (UTC midnight of the 2nd) is after 23:00 UTC on the 1st...
    ok = "MILK,,1,EUR,2026-03-01T23:00:00Z,2026-03-01\n"
    assert read_prices(write(tmp_path, PRICES + "\n" + ok))
    # ...but not after midnight UTC on the 2nd.
    bad = "MILK,,1,EUR,2026-03-02T00:00:00Z,2026-03-01\n"
    error = problems(write(tmp_path, PRICES + "\n" + bad, "bad.csv"), read_prices)
    assert [str(p) for p in error.problems] == ["row 2, column 'valid_until': not after valid_from"]


def test_the_simulated_catalog_is_a_valid_item_master_and_price_list(tmp_path: Path) -> None:
    items = read_items(write(tmp_path, items_csv(), "items.csv"))
    assert len(items) == len(CATALOG) + len(DEPOSITS)
    deposit = items[item_key("DEPOSIT-PET")]
    assert deposit["stock_item"] is False and deposit["reorder_point"] is None
    prices = read_prices(write(tmp_path, prices_csv(), "prices.csv"))
    assert prices[price_key(None, "MILK-1L", None)]["amount"] == Decimal("1.19")


@pytest.mark.parametrize(
    "row",
    [
        "MILK,,1,EUR,2026-03-01,9999-12-31",  # SAP's "for ever"
        "MILK,,1,EUR,2026-03-01T00:00:00Z,9999-12-31",
        "MILK,,1,EUR,0001-01-01,9999-12-31T23:59:59Z",
    ],
)
def test_the_last_day_of_the_calendar_is_a_day_like_any_other(tmp_path: Path, row: str) -> None:
    assert len(read_prices(write(tmp_path, f"{PRICES}\n{row}\n"))) == 1


def test_values_out_of_range_are_problems_not_crashes(tmp_path: Path) -> None:
    prices = write(tmp_path, f"{PRICES}\nMILK,,1,EUR,,9999-12-31T23:00:00-05:00\n", "p.csv")
    error = problems(prices, read_prices)
    assert [str(p) for p in error.problems] == [
        "row 2, column 'valid_until': out of range in UTC (years 1 to 9999)"
    ]
    items = write(tmp_path, f"{ITEMS},lead_time_days\nA,,Milk,EA,false,true,{'9' * 5000}\n")
    error = problems(items)
    assert [str(p) for p in error.problems] == [
        "row 2, column 'lead_time_days': must be a whole number from 0 to 3650"
    ]
    assert read_items(write(tmp_path, f"{ITEMS},lead_time_days\nA,,Milk,EA,false,true,0003\n"))


def test_a_file_that_cannot_be_read_says_so(tmp_path: Path) -> None:
    error = problems(tmp_path / "missing.csv")
    assert [str(p) for p in error.problems] == ["cannot read: No such file or directory"]
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(f"{ITEMS}\nA,,Caf\xe9,EA,false,true\n".encode("latin-1"))
    assert "not UTF-8 text" in str(problems(latin1))
