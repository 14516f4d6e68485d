"""``tillstream items publish`` and ``tillstream prices publish`` against the real broker:
files checked by row and column, only changes published, deletion by tombstone."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.masterdata_support import (
    ITEMS_HEADER,
    PRICES_HEADER,
    clear,
    end_offsets,
    held,
    item_row,
    publish,
    write,
)
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.core.topics import ITEMS, PRICES, item_key, price_key
from tillstream.dev.processes import run_tillstream

MILK_GTIN = "4006381333931"
CARD = "4111111111111111"


@pytest.fixture
def empty_topics(settings: Settings, tmp_path: Path) -> Settings:
    """Both master-data topics hold nothing when the test starts."""
    clear(settings, tmp_path)
    return settings


# -- files with problems (what the topics hold does not matter: nothing is published) ---


def test_a_file_with_problems_publishes_nothing_and_names_each_row_and_column(
    kafka_topics: Settings, tmp_path: Path
) -> None:
    bad = write(
        tmp_path / "items.csv",
        ITEMS_HEADER + ",supplier",
        [
            "SKU-1,4006381333931,Milk,EA,false,true,5,3,Dairy",
            "SKU-2,4006381333932,Bread,EA,false,true,,,",  # wrong check digit
            "SKU-3,,Cheese,BOX,false,true,,,",  # not a unit
            "SKU-4,,Eggs,EA,yes,true,,,",  # not a boolean
            "SKU-5,,Butter,EA,false,true,-1,2.5,",  # negative, not whole
            f"SKU-6,,paid with {CARD},EA,false,true,,,",  # a card number in free text
            f"{CARD},,Card,EA,false,true,,,",  # a card number as SKU
            "SKU-1,,Milk again,EA,false,true,,,",  # the same SKU twice
            "SKU-7,4006381333931,Milk too,EA,false,true,,,",  # a GTIN on two items
            "SKU-8,,,EA,false,true,,,",  # no description
            "SKU-9,,Short row",
        ],
    )
    before = end_offsets(kafka_topics, ITEMS.name)
    result = publish(kafka_topics, "items", str(bad))
    assert result.exit_code == 1
    out = result.output
    for where in [
        "row 3, column 'gtins'",
        "row 4, column 'unit_of_measure'",
        "row 5, column 'weighed'",
        "row 6, column 'reorder_point'",
        "row 6, column 'lead_time_days'",
        "row 7, column 'description'",
        "row 8, column 'sku'",
        "row 9, column 'sku': the same SKU as row 2",
        "row 10, column 'gtins': a GTIN of row 2 too",
        "row 11, column 'description'",
        "row 12: 3 values for 9 columns",
    ]:
        assert where in out, (where, out)
    assert "nothing published" in out
    assert "1111" not in out  # never the value
    assert end_offsets(kafka_topics, ITEMS.name) == before


@pytest.mark.parametrize(
    ("row", "where"),
    [
        ("SKU-1,,1.99,EUR,2026-03-01T08:00:00,", "column 'valid_from': a time needs its offset"),
        ("SKU-1,,1.99,EUR,2026-03-01,2026-02-28", "column 'valid_until': not after valid_from"),
        ("SKU-1,,1.99,EUR,2026-03-01T08:00+01:00,2026-03-01T07:00Z", "column 'valid_until'"),
        ("SKU-1,,-1,EUR,,", "row 2, column 'amount': must be zero or more"),
        ("SKU-1,,1.00001,EUR,,", "row 2, column 'amount': more than 4 decimal places"),
        ("SKU-1,,1e400,EUR,,", "row 2, column 'amount'"),
        ("SKU-1,,1.99,euro,,", "row 2, column 'currency'"),
        ("SKU-1,S 1,1.99,EUR,,", "row 2, column 'store_id'"),
        ("SKU-1,,1.99,EUR,2026-13-01,", "row 2, column 'valid_from': not a date"),
    ],
)  # fmt: skip
def test_a_bad_price_names_row_and_column_and_publishes_nothing(
    kafka_topics: Settings, tmp_path: Path, row: str, where: str
) -> None:
    bad = write(tmp_path / "prices.csv", PRICES_HEADER, [row])
    before = end_offsets(kafka_topics, PRICES.name)
    result = publish(kafka_topics, "prices", str(bad))
    assert result.exit_code == 1
    assert where in result.output and "nothing published" in result.output
    assert end_offsets(kafka_topics, PRICES.name) == before


def test_a_header_without_a_required_column_names_it(
    kafka_topics: Settings, tmp_path: Path
) -> None:
    bad = write(tmp_path / "prices.csv", "sku,amount,currency,valid_from,valid_until,note", [])
    result = publish(kafka_topics, "prices", str(bad))
    assert result.exit_code == 1
    assert "row 1, column 'store_id': the header has no store_id column" in result.output


def test_the_same_store_sku_and_start_twice_is_a_problem(
    kafka_topics: Settings, tmp_path: Path
) -> None:
    bad = write(
        tmp_path / "prices.csv",
        PRICES_HEADER,
        [
            "SKU-1,,1.99,EUR,2026-03-01,",
            "SKU-1,S1,1.89,EUR,2026-03-01,",  # another store: another key
            "SKU-1,,2.09,EUR,2026-03-01,2026-04-01",
        ],
    )
    result = publish(kafka_topics, "prices", str(bad))
    assert result.exit_code == 1
    assert "row 4, column 'valid_from': the same store, SKU and start as row 2" in result.output


# -- publishing what changed ----------------------------------------------------------------


def test_publishing_twice_publishes_nothing_the_second_time_and_a_change_only_the_change(
    empty_topics: Settings, tmp_path: Path, codec: AvroCodec
) -> None:
    rows = [
        f"SKU-MILK,{MILK_GTIN}|96385074,Milk 1 l,EA,false,true,24,3",
        "SKU-APPLES,,Apples loose,KGM,true,true,5.5,",
        "SKU-DEPOSIT,,Bottle deposit,EA,false,false,,",
    ]
    file = write(tmp_path / "items.csv", ITEMS_HEADER + ",ignored", [r + ",x" for r in rows])
    first = publish(empty_topics, "items", str(file))
    assert first.exit_code == 0, first.output
    assert "items: 3 new, 0 changed, 0 deleted, 0 unchanged" in first.stderr
    offsets = end_offsets(empty_topics, ITEMS.name)

    again = publish(empty_topics, "items", str(file))
    assert "items: 0 new, 0 changed, 0 deleted, 3 unchanged" in again.stderr
    assert end_offsets(empty_topics, ITEMS.name) == offsets

    # Columns in another order, one reorder point changed: one record.
    changed = write(
        tmp_path / "changed.csv",
        "description,sku,weighed,stock_item,unit_of_measure,gtins,lead_time_days,reorder_point",
        [
            f"Milk 1 l,SKU-MILK,false,true,EA,{MILK_GTIN}|96385074,3,30",
            "Apples loose,SKU-APPLES,true,true,KGM,,,5.500",  # 5.500 is 5.5: unchanged
            "Bottle deposit,SKU-DEPOSIT,false,false,EA,,,",
        ],
    )
    third = publish(empty_topics, "items", str(changed))
    assert "items: 0 new, 1 changed, 0 deleted, 2 unchanged" in third.stderr, third.output
    assert end_offsets(empty_topics, ITEMS.name) == offsets + 1
    milk = held(empty_topics, codec, "items")[item_key("SKU-MILK")]
    assert milk is not None
    assert milk["reorder_point"] == Decimal("30") and milk["gtins"] == [MILK_GTIN, "96385074"]
    deposit = held(empty_topics, codec, "items")[item_key("SKU-DEPOSIT")]
    assert deposit is not None and deposit["stock_item"] is False


def test_prices_are_keyed_by_store_sku_and_start_and_keep_their_window(
    empty_topics: Settings, tmp_path: Path, codec: AvroCodec
) -> None:
    file = write(
        tmp_path / "prices.csv",
        PRICES_HEADER,
        [
            "SKU-MILK,,1.19,EUR,,",
            "SKU-MILK,S001,1.09,EUR,2026-03-01,2026-03-31",
            "SKU-MILK,S001,0.99,EUR,2026-04-01T06:00:00+02:00,2026-04-08T00:00:00Z",
            "SKU-FREE-BAG,,0,EUR,,",
        ],
    )
    result = publish(empty_topics, "prices", str(file))
    assert result.exit_code == 0, result.output
    assert "prices: 4 new, 0 changed, 0 deleted, 0 unchanged" in result.stderr
    prices = held(empty_topics, codec, "prices")
    assert set(prices) == {
        price_key(None, "SKU-MILK", None),
        price_key("S001", "SKU-MILK", "2026-03-01"),
        price_key("S001", "SKU-MILK", "2026-04-01T04:00:00+00:00"),
        price_key(None, "SKU-FREE-BAG", None),
    }
    day = prices[price_key("S001", "SKU-MILK", "2026-03-01")]
    assert day is not None
    assert (day["valid_from_day"], day["valid_until_day"]) == (date(2026, 3, 1), date(2026, 3, 31))
    assert day["valid_from"] is None and day["amount"] == Decimal("1.09")
    timed = prices[price_key("S001", "SKU-MILK", "2026-04-01T04:00:00+00:00")]
    assert timed is not None
    assert timed["valid_from"] == datetime(2026, 4, 1, 4, tzinfo=UTC)
    assert timed["valid_until"] == datetime(2026, 4, 8, tzinfo=UTC)
    again = publish(empty_topics, "prices", str(file))
    assert "prices: 0 new, 0 changed, 0 deleted, 4 unchanged" in again.stderr


def test_a_dry_run_says_what_would_change_and_publishes_nothing(
    empty_topics: Settings, tmp_path: Path
) -> None:
    file = write(tmp_path / "items.csv", ITEMS_HEADER, [item_row(n) for n in range(15)])
    before = end_offsets(empty_topics, ITEMS.name)
    dry = publish(empty_topics, "items", str(file), "--dry-run", "--show", "3")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.splitlines() == [
        "new      SKU-000000",
        "new      SKU-000001",
        "new      SKU-000002",
        "new      ... and 12 more",
    ]
    assert "items: 15 new, 0 changed, 0 deleted, 0 unchanged (dry run" in dry.stderr
    assert end_offsets(empty_topics, ITEMS.name) == before


def test_a_partial_file_that_moves_a_gtin_must_publish_the_item_it_leaves(
    empty_topics: Settings, tmp_path: Path
) -> None:
    first = write(tmp_path / "a.csv", ITEMS_HEADER, [f"OLD,{MILK_GTIN},Milk,EA,false,true,,"])
    assert publish(empty_topics, "items", str(first)).exit_code == 0
    moved = write(tmp_path / "b.csv", ITEMS_HEADER, [f"NEW,{MILK_GTIN},Milk,EA,false,true,,"])
    before = end_offsets(empty_topics, ITEMS.name)
    refused = publish(empty_topics, "items", str(moved))
    assert refused.exit_code == 1
    assert f"GTIN {MILK_GTIN} would be on OLD and on NEW" in refused.output
    assert "nothing published" in refused.output
    assert end_offsets(empty_topics, ITEMS.name) == before
    both = write(
        tmp_path / "c.csv",
        ITEMS_HEADER,
        [
            "OLD,,Milk (old barcode retired),EA,false,true,,",
            f"NEW,{MILK_GTIN},Milk,EA,false,true,,",
        ],
    )
    done = publish(empty_topics, "items", str(both))
    assert "items: 1 new, 1 changed, 0 deleted, 0 unchanged" in done.stderr, done.output


def test_a_gtin_in_another_length_is_the_same_gtin_in_a_file_and_against_the_topic(
    empty_topics: Settings, tmp_path: Path
) -> None:
    """A scanner reads 04006381333931 as the GTIN-13 4006381333931: one item, whatever the
    length head office's export writes it in."""
    before = end_offsets(empty_topics, ITEMS.name)
    one_file = write(
        tmp_path / "one.csv",
        ITEMS_HEADER,
        [f"A,{MILK_GTIN},Milk,EA,false,true,,", f"B,0{MILK_GTIN},Milk too,EA,false,true,,"],
    )
    refused = publish(empty_topics, "items", str(one_file))
    assert refused.exit_code == 1
    assert "one.csv, row 3, column 'gtins': a GTIN of row 2 too" in refused.output
    assert end_offsets(empty_topics, ITEMS.name) == before
    first = write(tmp_path / "a.csv", ITEMS_HEADER, [f"A,{MILK_GTIN},Milk,EA,false,true,,"])
    assert publish(empty_topics, "items", str(first)).exit_code == 0
    moved = write(tmp_path / "b.csv", ITEMS_HEADER, [f"B,0{MILK_GTIN},Milk,EA,false,true,,"])
    refused = publish(empty_topics, "items", str(moved))
    assert refused.exit_code == 1
    assert f"GTIN 0{MILK_GTIN} would be on A and on B" in refused.output
    assert end_offsets(empty_topics, ITEMS.name) == before + 1


def test_a_store_or_the_chain_priced_in_a_second_currency_is_refused(
    empty_topics: Settings, tmp_path: Path
) -> None:
    euros = write(tmp_path / "eur.csv", PRICES_HEADER, ["MILK,,1.19,EUR,,", "MILK,S7,0.99,EUR,,"])
    assert publish(empty_topics, "prices", str(euros)).exit_code == 0
    before = end_offsets(empty_topics, PRICES.name)
    dollars = write(
        tmp_path / "usd.csv", PRICES_HEADER, ["BREAD,,2.00,USD,,", "BREAD,S7,1.99,USD,,"]
    )
    refused = publish(empty_topics, "prices", str(dollars))
    assert refused.exit_code == 1
    assert "the chain would have prices in EUR and in USD" in refused.output
    assert "store S7 would have prices in EUR and in USD" in refused.output
    assert "nothing published" in refused.output
    assert end_offsets(empty_topics, PRICES.name) == before
    # Another store in its own currency is fine; a full file may move a store to another.
    francs = write(tmp_path / "chf.csv", PRICES_HEADER, ["MILK,S8,1.45,CHF,,"])
    assert publish(empty_topics, "prices", str(francs)).exit_code == 0
    moved = write(
        tmp_path / "all.csv",
        PRICES_HEADER,
        ["MILK,,1.19,EUR,,", "MILK,S7,1.05,CHF,,", "MILK,S8,1.45,CHF,,"],
    )
    done = publish(empty_topics, "prices", str(moved), "--full")
    assert done.exit_code == 0, done.output


# -- deleting ------------------------------------------------------------------------------


def test_a_full_file_deletes_what_it_leaves_out_with_tombstones(
    empty_topics: Settings, tmp_path: Path, codec: AvroCodec
) -> None:
    all_items = write(tmp_path / "all.csv", ITEMS_HEADER, [item_row(n) for n in range(20)])
    assert publish(empty_topics, "items", str(all_items)).exit_code == 0
    # Without --full a shorter file deletes nothing.
    fewer = write(tmp_path / "fewer.csv", ITEMS_HEADER, [item_row(n) for n in range(18)])
    partial = publish(empty_topics, "items", str(fewer))
    assert "items: 0 new, 0 changed, 0 deleted, 18 unchanged" in partial.stderr
    assert len(held(empty_topics, codec, "items")) == 20

    dry = publish(empty_topics, "items", str(fewer), "--full", "--dry-run")
    assert dry.stdout.splitlines() == ["deleted  SKU-000018", "deleted  SKU-000019"]
    offsets = end_offsets(empty_topics, ITEMS.name)
    full = publish(empty_topics, "items", str(fewer), "--full")
    assert full.exit_code == 0, full.output
    assert "items: 0 new, 0 changed, 2 deleted, 18 unchanged" in full.stderr
    assert end_offsets(empty_topics, ITEMS.name) == offsets + 2
    now = held(empty_topics, codec, "items")
    assert len(now) == 18 and item_key("SKU-000019") not in now


def test_tail_shows_a_tombstone_as_a_deletion(empty_topics: Settings, tmp_path: Path) -> None:
    one = write(tmp_path / "one.csv", ITEMS_HEADER, [item_row(1)])
    assert publish(empty_topics, "items", str(one)).exit_code == 0
    none = write(tmp_path / "none.csv", ITEMS_HEADER, [])
    gone = publish(empty_topics, "items", str(none), "--full", "--allow-mass-delete")
    assert "items: 0 new, 0 changed, 1 deleted, 0 unchanged" in gone.stderr
    env = {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": empty_topics.kafka_bootstrap_servers}
    args = ("tail", ITEMS.name, "--from-beginning", "--json", "--idle-timeout", "3")
    tail = run_tillstream(*args, env=env)
    assert tail.returncode == 0, tail.stderr
    mine = [json.loads(line) for line in tail.stdout.splitlines()]
    mine = [line for line in mine if line["key"] == "SKU-000001"]
    assert [line.get("tombstone", False) for line in mine][-2:] == [False, True]
    assert mine[-2]["value"]["sku"] == "SKU-000001" and "value" not in mine[-1]
    assert "undecodable" not in tail.stderr


def test_a_full_file_that_would_delete_much_needs_allow_mass_delete(
    empty_topics: Settings, tmp_path: Path, codec: AvroCodec
) -> None:
    all_items = write(tmp_path / "all.csv", ITEMS_HEADER, [item_row(n) for n in range(20)])
    assert publish(empty_topics, "items", str(all_items)).exit_code == 0
    half = write(tmp_path / "half.csv", ITEMS_HEADER, [item_row(n) for n in range(10)])
    refused = publish(empty_topics, "items", str(half), "--full")
    assert refused.exit_code == 1
    assert "would delete 10 of the 20" in refused.output and "--allow-mass-delete" in refused.output
    assert len(held(empty_topics, codec, "items")) == 20
    allowed = publish(empty_topics, "items", str(half), "--full", "--allow-mass-delete")
    assert "items: 0 new, 0 changed, 10 deleted, 10 unchanged" in allowed.stderr
    assert len(held(empty_topics, codec, "items")) == 10


# -- a large master ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.fills_topics
def test_a_hundred_thousand_items_publish_and_publish_again_as_nothing(
    empty_topics: Settings, tmp_path: Path
) -> None:
    file = write(tmp_path / "big.csv", ITEMS_HEADER, [item_row(n) for n in range(100_000)])
    started = time.monotonic()
    first = publish(empty_topics, "items", str(file))
    took = time.monotonic() - started
    assert first.exit_code == 0, first.output
    assert "items: 100000 new, 0 changed, 0 deleted, 0 unchanged" in first.stderr
    assert "big.csv: 10000 rows read" in first.stderr  # progress
    assert "tillstream.items: 50000 of 100000 records sent" in first.stderr
    offsets = end_offsets(empty_topics, ITEMS.name)
    started = time.monotonic()
    again = publish(empty_topics, "items", str(file))
    took_again = time.monotonic() - started
    assert "items: 0 new, 0 changed, 0 deleted, 100000 unchanged" in again.stderr
    assert end_offsets(empty_topics, ITEMS.name) == offsets
    print(f"100,000 items: published in {took:.1f} s, compared again in {took_again:.1f} s")
    assert took < 60 and took_again < 60


@pytest.mark.slow
@pytest.mark.fills_topics
def test_a_hundred_thousand_prices_publish_and_one_change_publishes_one(
    empty_topics: Settings, tmp_path: Path
) -> None:
    rows = [
        f"SKU-{n:06d},{'' if n % 2 else 'S001'},{n % 97}.99,EUR,2026-03-01," for n in range(100_000)
    ]
    file = write(tmp_path / "prices.csv", PRICES_HEADER, rows)
    started = time.monotonic()
    first = publish(empty_topics, "prices", str(file))
    took = time.monotonic() - started
    assert first.exit_code == 0, first.output
    assert "prices: 100000 new, 0 changed, 0 deleted, 0 unchanged" in first.stderr
    rows[4242] = rows[4242].replace(".99,EUR,", ".49,EUR,")  # 50 cents off
    changed = publish(
        empty_topics, "prices", str(write(tmp_path / "changed.csv", PRICES_HEADER, rows))
    )
    assert "prices: 0 new, 1 changed, 0 deleted, 99999 unchanged" in changed.stderr
    print(f"100,000 prices: published in {took:.1f} s")
    assert took < 60
