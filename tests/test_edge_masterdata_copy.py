"""The store's master-data copy on its own (SQLite, no broker): records applied with their
positions, other stores' prices never held, tombstones, tokens, and a rebuild that deletes
what it no longer finds (tombstones compacted away while an edge was offline)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.edge_masterdata_support import Topics, gtin13, item, price
from tillstream.core.codec import AvroCodec
from tillstream.core.topics import ITEMS, PRICES
from tillstream_edge.masterdata_copy import MasterDataCopy
from tillstream_edge.masterdata_tokens import TokenError

STORE = "S001"


@pytest.fixture
async def copy(tmp_path: Path, codec: AvroCodec) -> Any:
    kept = MasterDataCopy(tmp_path / "md.db", STORE, ZoneInfo("Europe/Berlin"), codec)
    await kept.open()
    yield kept
    await kept.close()


NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


async def test_items_prices_positions_and_tombstones(
    copy: MasterDataCopy, codec: AvroCodec
) -> None:
    topics = Topics(codec)
    milk = item("MILK", gtin13("400000000001"))
    chain, mine, theirs = (
        price("MILK", "1.19"),
        price("MILK", "0.99", STORE),
        price("MILK", "0.5", "S2"),
    )
    applied = await copy.apply(
        [topics.item(milk), topics.price(chain), topics.price(mine), topics.price(theirs)]
    )
    assert applied.read == {ITEMS.name: 1, PRICES.name: 3}
    assert copy.counts() == (1, 2)  # another store's price is not held
    assert await copy.positions() == {(ITEMS.name, 0): 1, (PRICES.name, 0): 3}
    shown = copy.item("MILK", NOW)
    assert shown is not None and shown["price"] == {"amount": "0.99", "currency": "EUR"}
    assert copy.item("0" + gtin13("400000000001"), NOW) == shown
    assert copy.sku_of_gtin(gtin13("400000000001")) == "MILK"

    token = copy.token(copy.parse_token(None))
    rows, last = copy.item_changes(0, 10)
    assert [r["sku"] for r in rows] == ["MILK"]
    await copy.apply([topics.item_gone("MILK"), topics.price_gone(mine), topics.price_gone(theirs)])
    assert copy.item("MILK", NOW) is None and copy.sku_of_gtin(gtin13("400000000001")) is None
    assert copy.counts() == (0, 1)
    changes, _ = copy.item_changes(last, 10)
    assert changes == [{"sku": "MILK", "deleted": True}]
    price_changes, _ = copy.price_changes(0, 10)
    assert [(p["store_id"], p["deleted"]) for p in price_changes] == [(None, False), (STORE, True)]
    assert copy.parse_token(token) == 0
    with pytest.raises(TokenError) as bad:
        copy.parse_token("abc")
    assert not bad.value.gone
    with pytest.raises(TokenError) as old:
        copy.parse_token(f"{copy.epoch[:4]}00000000-1")  # an earlier copy of this store's
    assert old.value.gone


async def test_the_same_version_again_changes_nothing(
    copy: MasterDataCopy, codec: AvroCodec
) -> None:
    topics = Topics(codec)
    bread = item("BREAD")
    await copy.apply([topics.item(bread)])
    _, first = copy.item_changes(0, 10)
    await copy.apply([topics.item(bread)])  # re-read: same event id
    _, second = copy.item_changes(0, 10)
    assert first == second


async def test_a_rebuild_deletes_what_it_no_longer_finds(
    copy: MasterDataCopy, codec: AvroCodec
) -> None:
    topics = Topics(codec)
    kept, lost = item("KEPT"), item("LOST")
    lost_price = price("LOST", "2.00")
    await copy.apply([topics.item(kept), topics.item(lost), topics.price(lost_price)])
    await copy.caught_up({(ITEMS.name, 0): 2, (PRICES.name, 0): 1}, 1000.0)
    assert (await copy.state()).last_caught_up_at == 1000.0
    # Offline for weeks: LOST was deleted and its tombstone compacted away. The rebuild reads
    # the topics from the beginning and finds only KEPT.
    await copy.start_rebuild()
    assert await copy.positions() == {}
    assert copy.item("LOST", NOW) is not None  # served meanwhile
    rebuilt = Topics(codec)
    await copy.apply([rebuilt.item(kept)])
    swept = await copy.caught_up({(ITEMS.name, 0): 1, (PRICES.name, 0): 0}, 2000.0)
    assert swept == 2
    assert copy.item("LOST", NOW) is None and copy.item("KEPT", NOW) is not None
    assert copy.counts() == (1, 0)
    state = await copy.state()
    assert not state.rebuilding and state.generation == 2


async def test_a_sale_is_marked_from_the_copy(copy: MasterDataCopy, codec: AvroCodec) -> None:
    topics = Topics(codec)
    await copy.apply(
        [
            topics.item(item("BEER")),
            topics.item(item("DEPOSIT", stock_item=False)),
            topics.price(price("BEER", "1.29")),
            topics.price(price("DEPOSIT", "0.25")),
        ]
    )
    sale = {
        "occurred_at": NOW,
        "currency": "EUR",
        "lines": [
            {"sku": "BEER", "unit_price": Decimal("1.29"), "stock_item": True},
            {"sku": "BEER", "unit_price": Decimal("0.99"), "stock_item": True},
            {"sku": "DEPOSIT", "unit_price": Decimal("0.25"), "stock_item": True},
            {"sku": "OTHER", "unit_price": Decimal("5"), "stock_item": True},
        ],
    }
    marked = copy.annotate_sale(sale)
    assert marked is not None
    assert [ln.get("list_price") for ln in marked["lines"]] == [None, Decimal("1.29"), None, None]
    assert [ln["stock_item"] for ln in marked["lines"]] == [True, True, False, True]
    assert copy.annotate_sale({**sale, "lines": [sale["lines"][0]]}) is None  # nothing to add
    assert copy.annotate_sale({**sale, "currency": "USD", "lines": [sale["lines"][1]]}) is None


async def test_a_poslog_sale_is_marked_in_the_one_accept_path(
    copy: MasterDataCopy, codec: AvroCodec, tmp_path: Path
) -> None:
    """POSLog passes the same Ingestor.encode as HTTP: the item master marks its lines."""
    from tests.test_edge_poslog import live
    from tillstream_edge.ingest import Ingestor
    from tillstream_edge.outbox import Outbox
    from tillstream_edge.poslog_intake import poslog_events

    topics = Topics(codec)
    await copy.apply(
        [
            topics.item(item("WRAP-01", stock_item=False)),  # gift wrap: no stock
            topics.item(item("8718824914497")),
            topics.price(price("8718824914497", "29.99")),  # sold at 26.99: an override
            topics.price(price("WRAP-01", "5.00")),  # at list price
        ]
    )
    copy.store_id = "100"  # the sample's store
    ingestor = Ingestor("100", codec, Outbox(tmp_path / "outbox.db"), window=None)
    ingestor.master = copy
    batch = poslog_events(ingestor, live("v6_customer_card.xml"), "poslog")
    sale = next(codec.decode(e.value).record for e in batch.events if e.event_type == "sale")
    lines = {ln["sku"]: ln for ln in sale["lines"] if ln["kind"] == "SALE"}
    assert lines["WRAP-01"]["stock_item"] is False and lines["WRAP-01"]["list_price"] is None
    assert lines["8718824914497"]["list_price"] == Decimal("29.9900")
    assert lines["8718824914497"]["stock_item"] is True
    assert lines["4022847518216"]["list_price"] is None  # unknown to the item master
    marked = next(e for e in batch.events if e.event_type == "sale")
    assert marked.digest is not None  # duplicates are judged on what the till sent


# -- hardening round 3 (issue 23) ------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "x-1",
        "-1",
        "1" * 100_000 + "-1",  # a 100,000-digit epoch
        "abcdef01-" + "9" * 100_000,
        "",
        "-",
        "abcdef01-",
        "abcdef01--1",
        "abcdef01-01",  # never written with a leading zero
        "ABCDEF01-1",
        "abcdef01-1 ",
        "abcdef01-\uff11",  # a full-width digit
        "abcdef0-1",
        "abcdef0123-1",
        "0000-1",
    ],
)
async def test_anything_not_a_token_this_edge_could_have_given_is_invalid(
    copy: MasterDataCopy, token: str
) -> None:
    with pytest.raises(TokenError) as refused:
        copy.parse_token(token)
    assert not refused.value.gone  # 400 invalid_token: the till's copy is not thrown away


async def test_only_a_token_of_an_earlier_copy_of_this_store_is_gone(
    copy: MasterDataCopy, tmp_path: Path, codec: AvroCodec
) -> None:
    await copy.apply([Topics(codec).item(item("MILK"))])
    token = copy.token(1)
    assert copy.parse_token(token) == 1
    # The copy thrown away and built anew: the same store's token, of another epoch.
    again = MasterDataCopy(tmp_path / "new.db", STORE, ZoneInfo("Europe/Berlin"), codec)
    await again.open()
    try:
        assert again.epoch != copy.epoch and again.epoch[:4] == copy.epoch[:4]
        with pytest.raises(TokenError) as gone:
            again.parse_token(token)
        assert gone.value.gone  # 410: sync from the start
        with pytest.raises(TokenError) as legacy:  # a copy made before epochs had the tag
            again.parse_token("0a1b2c3d-5")
        assert legacy.value.gone
    finally:
        await again.close()
    other = MasterDataCopy(tmp_path / "other.db", "S002", ZoneInfo("Europe/Berlin"), codec)
    await other.open()
    try:
        with pytest.raises(TokenError) as theirs:
            other.parse_token(token)  # another store's edge's token: 400
        assert not theirs.value.gone
    finally:
        await other.close()


async def test_a_price_valid_for_ever_is_served_and_compared(
    copy: MasterDataCopy, codec: AvroCodec
) -> None:
    """ERP exports' 9999-12-31, and a day before the calendar starts in UTC (Berlin's
    0001-01-01), as records on the topic say them: never an OverflowError."""
    topics = Topics(codec)
    await copy.apply(
        [
            topics.item(item("MILK")),
            topics.item(item("BREAD")),
            topics.price(price("MILK", "1.19", valid_until_day=date(9999, 12, 31))),
            topics.price(
                price(
                    "BREAD",
                    "2.49",
                    valid_from_day=date(1, 1, 1),
                    valid_until=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
                )
            ),
        ]
    )
    for sku, amount in (("MILK", "1.19"), ("BREAD", "2.49")):
        shown = copy.item(sku, NOW)
        assert shown is not None and shown["price"] == {"amount": amount, "currency": "EUR"}
    sale = {
        "occurred_at": NOW,
        "currency": "EUR",
        "lines": [{"sku": "MILK", "unit_price": Decimal("0.99"), "stock_item": True}],
    }
    marked = copy.annotate_sale(sale)
    assert marked is not None and marked["lines"][0]["list_price"] == Decimal("1.19")
    feed, _ = copy.price_changes(0, 10)
    assert [p["valid_until_day"] for p in feed] == ["9999-12-31", None]


async def test_a_price_in_another_currency_is_no_price_here(
    copy: MasterDataCopy, codec: AvroCodec
) -> None:
    topics = Topics(codec)
    chain_usd = {**price("MILK", "1.29"), "currency": "USD"}
    mine = price("BREAD", "2.49", STORE)
    applied = await copy.apply(
        [topics.item(item("MILK")), topics.item(item("BREAD")), topics.price(chain_usd),
         topics.price(mine), topics.price({**price("MILK", "0.5", "S2"), "currency": "USD"})]
    )  # fmt: skip
    assert applied.other_currency == 1  # another store's is not this store's business
    assert copy.counts() == (2, 1)
    shown = copy.item("MILK", NOW)
    assert shown is not None and shown["price"] is None
    usd_sale = {
        "occurred_at": NOW,
        "currency": "USD",  # even a sale in the price's currency gets no list price from it
        "lines": [{"sku": "MILK", "unit_price": Decimal("0.99"), "stock_item": True}],
    }
    assert copy.annotate_sale(usd_sale) is None
    # Head office moves the store's bread price to CHF: what the key held goes, tills told.
    _, last = copy.price_changes(0, 10)
    applied = await copy.apply(
        [topics.price({**mine, "event_id": str(uuid.uuid4()), "currency": "CHF"})]
    )
    assert applied.other_currency == 1
    assert copy.item("BREAD", NOW)["price"] is None  # type: ignore[index]
    changes, _ = copy.price_changes(last, 10)
    assert [(c["sku"], c["deleted"]) for c in changes] == [("BREAD", True)]


async def test_a_copy_opened_in_another_currency_drops_its_prices_and_rebuilds(
    tmp_path: Path, codec: AvroCodec
) -> None:
    topics = Topics(codec)
    path, zone = tmp_path / "md.db", ZoneInfo("Europe/Zagreb")
    kuna = MasterDataCopy(path, STORE, zone, codec, "HRK")
    await kuna.open()
    await kuna.apply([topics.item(item("MILK")), topics.price({**price("MILK", "9"),
                                                                "currency": "HRK"})])  # fmt: skip
    await kuna.caught_up({(ITEMS.name, 0): 1, (PRICES.name, 0): 1}, 1000.0)
    await kuna.close()
    euro = MasterDataCopy(path, STORE, zone, codec, "EUR")
    await euro.open()
    try:
        assert euro.counts() == (1, 0)
        state = await euro.state()
        assert state.rebuilding and await euro.positions() == {}  # the EUR prices skipped: read
        changes, _ = euro.price_changes(0, 10)
        assert [c["deleted"] for c in changes] == [True]
    finally:
        await euro.close()
