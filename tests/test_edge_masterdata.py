"""The store's copy of the item master and prices, against the real broker: served to tills,
used on sales and scans, kept while Kafka is away, never re-read from the start."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiokafka import TopicPartition

from chaos.proxy import Proxy
from tests.device_support import FakePort
from tests.edge_masterdata_support import (
    get_json,
    gtin13,
    item,
    price,
    publish,
    until,
)
from tests.edge_support import EdgeProcess, new_id, sale_json
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import create_topics, make_consumer
from tillstream.core.settings import Settings
from tillstream.core.topics import SALES, STOCK_MOVEMENTS
from tillstream.dev.broker import LocalKafka
from tillstream.dev.ports import free_port
from tillstream_edge.masterdata_copy import Applied, MasterDataCopy, RawRecord
from tillstream_edge.masterdata_sync import MasterDataSync

pytestmark = pytest.mark.usefixtures("kafka_topics")

ZONE = "Europe/Berlin"
TOKEN = "till-01-token-of-the-masterdata-tests"
RUN = f"{time.time_ns() % 10**8:08d}"
"""Makes this run's SKUs and stores unique on a shared broker."""


def sku(name: str) -> str:
    return f"MD{RUN}-{name}"


def gtin(n: int) -> str:
    return gtin13(f"400{RUN[-5:]}{n:04d}")


@pytest.fixture(scope="module")
def shop(
    kafka_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[EdgeProcess, FakePort]]:
    """One edge with till tokens, the store's zone and a scanner whose devices file maps one
    GTIN by hand ([items], the override)."""
    work = tmp_path_factory.mktemp("md-edge")
    (work / "tokens.toml").write_text(f'[tills]\nT01 = "{TOKEN}"\n')
    scanner = FakePort(work / "scanner")
    (work / "devices.toml").write_text(f"""
[items]
"{gtin(9)}" = "{sku("OVERRIDE")}"

[devices.dock-scanner]
protocol = "scanner"
port = "{scanner.link}"
mode = "receive"
terminator = "CR"
""")
    edge = EdgeProcess(
        f"S-MD{RUN}",
        kafka_broker,
        work,
        ["--tokens", str(work / "tokens.toml"), "--devices", str(work / "devices.toml")],
        env={"TILLSTREAM_STORE_TIMEZONE": ZONE},
    )
    edge.start()
    yield edge, scanner
    edge.kill()
    scanner.unplug()


async def served(edge: EdgeProcess, code: str) -> dict[str, Any] | None:
    status, body = await get_json(f"{edge.url}/v1/items/{code}", TOKEN)
    return body if status == 200 else None


async def test_a_running_edge_serves_published_items_with_their_price(
    shop: tuple[EdgeProcess, FakePort], settings: Settings, codec: AvroCodec
) -> None:
    edge, _ = shop
    milk, deposit = sku("MILK"), sku("DEPOSIT")
    await publish(
        settings,
        codec,
        items=[
            item(milk, gtin(1), description="Milk 1 l"),
            item(deposit, stock_item=False),
            item(sku("CHEESE/500G")),  # SKUs may hold a slash
        ],
        prices=[
            price(milk, "1.1900"),
            price(deposit, "0.25"),
            price(milk, "0.10", store="ANOTHER-STORE"),  # never held by this edge
        ],
    )
    await until(30, lambda: served(edge, milk), "milk served")
    body = await served(edge, milk)
    assert body is not None
    assert body["sku"] == milk and body["description"] == "Milk 1 l"
    assert body["gtins"] == [gtin(1)] and body["unit_of_measure"] == "EA"
    assert body["weighed"] is False and body["stock_item"] is True
    assert body["price"] == {"amount": "1.19", "currency": "EUR"}
    # By GTIN, in its own length and padded to GTIN-14.
    assert (await served(edge, gtin(1)))["sku"] == milk  # type: ignore[index]
    assert (await served(edge, "0" + gtin(1)))["sku"] == milk  # type: ignore[index]
    await until(10, lambda: served(edge, deposit), "deposit served")
    assert (await served(edge, deposit))["stock_item"] is False  # type: ignore[index]
    assert (await served(edge, sku("CHEESE/500G")))["price"] is None  # type: ignore[index]

    status, body = await get_json(f"{edge.url}/v1/items/{sku('NOPE')}", TOKEN)
    assert status == 404 and body["error"] == "not_found"
    assert sku("NOPE") not in str(body)  # what was asked is not echoed
    status, _ = await get_json(f"{edge.url}/v1/items/{milk}")
    assert status == 401  # the tills' tokens, as for posting
    status, _ = await get_json(f"{edge.url}/v1/items/{milk}", "not-a-known-token-at-all")
    assert status == 401
    await until(10, lambda: edge.metric("tillstream_edge_masterdata_items") >= 2, "items held")
    await until(10, lambda: edge.metric("tillstream_edge_masterdata_prices") >= 2, "prices held")


async def test_a_store_price_overrides_the_chain_price_only_within_its_window(
    shop: tuple[EdgeProcess, FakePort], settings: Settings, codec: AvroCodec
) -> None:
    edge, _ = shop
    store = edge.store
    today = datetime.now(ZoneInfo(ZONE)).date()  # the store's day, not UTC's
    now = datetime.now(UTC)
    cheese, bread, soap = sku("CHEESE"), sku("BREAD"), sku("SOAP")
    await publish(
        settings,
        codec,
        items=[item(cheese), item(bread), item(soap)],
        prices=[
            price(cheese, "4.99"),
            # Valid today in the store's zone, through its end: wins over the chain's.
            price(cheese, "3.99", store, valid_from_day=today, valid_until_day=today),
            # Next week's chain price does not replace today's (another key).
            price(cheese, "5.49", valid_from_day=today + timedelta(days=7)),
            price(bread, "2.49"),
            # Ended yesterday (store's day): the chain price holds again.
            price(bread, "1.99", store, valid_until_day=today - timedelta(days=1)),
            price(soap, "1.00"),
            # Starts in an hour: not yet.
            price(soap, "0.80", store, valid_from=now + timedelta(hours=1)),
        ],
    )
    await until(30, lambda: served(edge, soap), "soap served")

    async def amount(code: str) -> str:
        body = await served(edge, code)
        assert body is not None and body["price"] is not None
        return str(body["price"]["amount"])

    await until(10, lambda: _equals(amount(cheese), "3.99"), "the store's cheese price")
    assert await amount(bread) == "2.49"
    assert await amount(soap) == "1.00"
    status, feed = await get_json(f"{edge.url}/v1/prices?limit=10000", TOKEN)
    assert status == 200
    mine = [p for p in feed["prices"] if p["sku"] in (cheese, bread, soap)]
    assert len(mine) == 7 and all(p["store_id"] in (None, store) for p in mine)


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_a_tombstone_removes_the_item_and_the_delta_feeds_say_so(
    shop: tuple[EdgeProcess, FakePort], settings: Settings, codec: AvroCodec
) -> None:
    edge, _ = shop
    gone, kept = sku("GONE"), sku("KEPT")
    gone_price = price(gone, "9.99")
    await publish(settings, codec, items=[item(gone, gtin(2)), item(kept)], prices=[gone_price])
    await until(30, lambda: served(edge, gone), "item served")

    # A till syncs everything, page by page, to a token.
    token, seen = await sync(edge, "items", limit=1)
    assert seen[gone]["deleted"] is False and seen[kept]["deleted"] is False
    price_token, prices = await sync(edge, "prices")
    assert prices[gone_price_id(gone_price)]["amount"] == "9.99"

    await publish(settings, codec, deleted_items=[gone], deleted_prices=[gone_price])
    await until(30, lambda: _is_none(served(edge, gone)), "deleted item gone")
    assert await served(edge, gtin(2)) is None  # its GTIN too
    assert await served(edge, kept) is not None

    _, changes = await sync(edge, "items", since=token)
    assert changes == {gone: {"sku": gone, "deleted": True}}
    _, price_changes = await sync(edge, "prices", since=price_token)
    assert price_changes[gone_price_id(gone_price)]["deleted"] is True

    for bad in ("nonsense", f"{token}0", "x-1"):
        status, body = await get_json(f"{edge.url}/v1/items?since={bad}", TOKEN)
        assert status in (400, 410) and body["problems"][0]["field"] == "since", bad
    status, body = await get_json(f"{edge.url}/v1/items?limit=0", TOKEN)
    assert status == 400 and body["problems"][0]["field"] == "limit"
    status, _ = await get_json(f"{edge.url}/v1/items")
    assert status == 401


async def _is_none(value: Any) -> bool:
    return await value is None


def gone_price_id(record: dict[str, Any]) -> str:
    return f'[null,"{record["sku"]}",null]'


async def sync(
    edge: EdgeProcess, feed: str, since: str | None = None, limit: int = 1000
) -> tuple[str, dict[str, dict[str, Any]]]:
    """Follow a delta feed until a page is empty, as a till does: the last token and the
    latest entry per id (an item's SKU, a price's id)."""
    latest: dict[str, dict[str, Any]] = {}
    token = since
    while True:
        query = f"limit={limit}" + (f"&since={token}" if token else "")
        status, body = await get_json(f"{edge.url}/v1/{feed}?{query}", TOKEN)
        assert status == 200, body
        for entry in body[feed]:
            latest[entry["sku"] if feed == "items" else entry["id"]] = entry
        if not body[feed]:
            assert body["next"] == (token or body["next"])
            return body["next"], latest
        token = body["next"]


async def test_a_sale_over_http_is_marked_by_the_item_master(
    shop: tuple[EdgeProcess, FakePort], settings: Settings, codec: AvroCodec
) -> None:
    edge, _ = shop
    store = edge.store
    beer, deposit, override, unknown = sku("BEER"), sku("BOTTLE"), sku("PROMO"), sku("UNKNOWN")
    await publish(
        settings,
        codec,
        items=[item(beer), item(deposit, stock_item=False), item(override)],
        prices=[price(beer, "1.2900"), price(deposit, "0.08"), price(override, "3.00")],
    )
    await until(30, lambda: served(edge, override), "items served")
    lines = [
        line(1, beer, "1.29"),  # at list price: list_price null
        line(2, deposit, "0.08"),  # the till says stock, the master says deposit
        line(3, override, "2.50"),  # overridden at the till: list_price 3.00
        line(4, unknown, "1.00"),  # unknown to the master: as sent
    ]
    total = str(sum(Decimal(ln["extended_amount"]) for ln in lines))
    sale = sale_json(
        store,
        event_id=new_id(),
        lines=lines,
        totals={
            "gross_amount": total,
            "discount_amount": "0",
            "tax_amount": "0",
            "net_amount": total,
        },
    )
    async with httpx.AsyncClient(timeout=10) as http:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        # The list price is the edge's to set: a till may send null, never a value.
        forged = {**sale, "lines": [{**lines[2], "list_price": "2.50"}, *lines[:2], lines[3]]}
        refused = await http.post(f"{edge.url}/v1/events", json=forged, headers=headers)
        assert refused.status_code == 422
        assert refused.json()["problems"][0]["field"] == "lines[0].list_price"
        answer = await http.post(f"{edge.url}/v1/events", json=sale, headers=headers)
        assert answer.status_code == 202, answer.text
        # The price changes; the till resends the same sale: the same sale, not a conflict.
        await publish(settings, codec, prices=[price(override, "3.50")])
        await until(
            30,
            lambda: _equals(_amount(edge, override), "3.50"),
            "new price served",
        )
        again = await http.post(f"{edge.url}/v1/events", json=sale, headers=headers)
        assert again.status_code == 202, again.text
    published = await sale_from_kafka(settings, codec, store, sale["event_id"])
    by_sku = {ln["sku"]: ln for ln in published["lines"]}
    assert by_sku[beer]["stock_item"] is True and by_sku[beer]["list_price"] is None
    assert by_sku[deposit]["stock_item"] is False and by_sku[deposit]["list_price"] is None
    assert by_sku[override]["list_price"] == Decimal("3.00")
    assert by_sku[override]["unit_price"] == Decimal("2.50")
    assert by_sku[unknown]["stock_item"] is True and by_sku[unknown]["list_price"] is None


async def _amount(edge: EdgeProcess, code: str) -> str | None:
    body = await served(edge, code)
    return None if body is None or body["price"] is None else str(body["price"]["amount"])


def line(number: int, code: str, unit_price: str) -> dict[str, Any]:
    return {
        "line_number": number,
        "kind": "SALE",
        "sku": code,
        "quantity": "1",
        "unit_price": unit_price,
        "extended_amount": unit_price,
    }


async def sale_from_kafka(
    settings: Settings, codec: AvroCodec, store: str, event_id: str
) -> dict[str, Any]:
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [
            TopicPartition(SALES.name, p) for p in cluster.partitions_for_topic(SALES.name)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(30):
            while True:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    for m in batch:
                        if m.key == store.encode():
                            record = codec.decode(m.value).record
                            if str(record["event_id"]) == event_id:
                                return record
    finally:
        await consumer.stop()


async def test_a_scanned_gtin_maps_to_the_item_masters_sku(
    shop: tuple[EdgeProcess, FakePort], settings: Settings, codec: AvroCodec
) -> None:
    edge, scanner = shop
    juice = sku("JUICE")
    await publish(settings, codec, items=[item(juice, gtin(3)), item(sku("SHADOWED"), gtin(9))])
    await until(30, lambda: served(edge, gtin(3)), "juice served")
    consumer = make_consumer(
        settings, STOCK_MOVEMENTS.name, group_id=f"md-{new_id()}", auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        await consumer.seek_to_end()
        await until(15, lambda: _scanner_up(edge), "scanner up")
        scanner.send(f"{gtin(3)}\r".encode())
        scanner.send(f"{gtin(9)}\r".encode())  # the devices file's [items] wins
        got: dict[str, str] = {}
        async with asyncio.timeout(30):
            while len(got) < 2:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    for m in batch:
                        if m.key == edge.store.encode():
                            record = codec.decode(m.value).record
                            got[record["gtin"]] = record["sku"]
    finally:
        await consumer.stop()
    assert got == {gtin(3): juice, gtin(9): sku("OVERRIDE")}


async def _post_sale(edge: EdgeProcess, code: str, unit_price: str) -> str:
    """A sale of one ``code`` at ``unit_price``, accepted by the edge; its event id."""
    sale = sale_json(edge.store, event_id=new_id(), lines=[line(1, code, unit_price)])
    sale["totals"] = {"gross_amount": unit_price, "net_amount": unit_price}
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{edge.url}/v1/events", json=sale, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert answer.status_code == 202, answer.text
    return str(sale["event_id"])


async def test_a_price_valid_for_ever_is_served_and_compared_never_a_500(
    shop: tuple[EdgeProcess, FakePort], settings: Settings, codec: AvroCodec
) -> None:
    """ERP exports' "for ever" (9999-12-31) and a first day before the calendar starts in
    UTC (0001-01-01 in Berlin), as records on the topic may say them (a publisher before
    this one, or another tool): the lookup, the sales and the delta feed read them."""
    edge, _ = shop
    forever, ancient = sku("FOREVER"), sku("ANCIENT")
    await publish(
        settings,
        codec,
        items=[item(forever), item(ancient)],
        prices=[
            price(forever, "1.19", valid_until_day=date(9999, 12, 31)),
            price(ancient, "2.49", valid_from_day=date(1, 1, 1)),
        ],
    )
    await until(30, lambda: served(edge, ancient), "both served")
    for code, amount in ((forever, "1.19"), (ancient, "2.49")):
        status, body = await get_json(f"{edge.url}/v1/items/{code}", TOKEN)
        assert status == 200, body
        assert body["price"] == {"amount": amount, "currency": "EUR"}
    event_id = await _post_sale(edge, forever, "0.99")
    sold = await sale_from_kafka(settings, codec, edge.store, event_id)
    assert sold["lines"][0]["list_price"] == Decimal("1.19")  # the price override is seen
    _, feed = await sync(edge, "prices")
    assert feed[gone_price_id({"sku": forever})]["valid_until_day"] == "9999-12-31"
    assert "item master not readable" not in edge.log()


async def test_a_price_in_another_currency_is_never_the_stores_price(
    shop: tuple[EdgeProcess, FakePort], settings: Settings, codec: AvroCodec
) -> None:
    edge, _ = shop
    tea = sku("TEA")
    counted = edge.metric("tillstream_edge_masterdata_prices_other_currency_total")
    await publish(
        settings,
        codec,
        items=[item(tea)],
        prices=[price(tea, "2.50"), {**price(tea, "3.00", edge.store), "currency": "USD"}],
    )
    await until(30, lambda: served(edge, tea), "tea served")
    await until(
        10,
        lambda: edge.metric("tillstream_edge_masterdata_prices_other_currency_total") > counted,
        "the USD price counted",
    )
    # The store's own price would win, but it is in dollars in a euro store: the chain's.
    assert (await served(edge, tea))["price"] == {"amount": "2.50", "currency": "EUR"}  # type: ignore[index]
    sold = await sale_from_kafka(settings, codec, edge.store, await _post_sale(edge, tea, "3.00"))
    assert sold["lines"][0]["list_price"] == Decimal("2.50")
    assert "in another currency than the store's EUR" in edge.log()


@pytest.mark.parametrize(
    "forged",
    ["x-1", "-1", "1" * 10_000 + "-1", "0a1b2c3d-" + "9" * 1000, "%00-1", "abcdef01-01"],
    ids=["x-1", "-1", "long-epoch", "long-number", "nul", "leading-zero"],
)
async def test_a_forged_token_is_invalid_never_expired(
    shop: tuple[EdgeProcess, FakePort], forged: str
) -> None:
    """410 would tell the till to throw its copy away; a token the edge never gave out is
    the till's mistake (or an attack), and the till keeps its copy."""
    edge, _ = shop
    for feed in ("items", "prices"):
        status, body = await get_json(f"{edge.url}/v1/{feed}?since={forged}", TOKEN)
        assert (status, body["error"]) == (400, "invalid_token"), body
        assert body["problems"][0]["field"] == "since"
        assert forged not in str(body)


def test_a_token_longer_than_any_request_is_refused_before_the_api(
    shop: tuple[EdgeProcess, FakePort],
) -> None:
    """A 100,000-digit epoch never reaches the feed: the HTTP server refuses a request line
    that long (400) before it is parsed, as it refuses any oversized request."""
    edge, _ = shop
    host, port = edge.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(
            "GET",
            "/v1/items?since=" + "1" * 100_000 + "-1",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        answer = connection.getresponse()
        assert answer.status == 400
        assert b"token_expired" not in answer.read()
    finally:
        connection.close()


async def _scanner_up(edge: EdgeProcess) -> bool:
    _, state = await get_json(f"{edge.url}/readyz")
    return bool(state["devices"]["dock-scanner"]["up"])


def copy_positions(work: Path) -> dict[tuple[str, int], int]:
    with sqlite3.connect(work / "outbox.masterdata.db") as db:
        rows = db.execute("SELECT topic, partition, next_offset FROM positions").fetchall()
    return {(t, p): o for t, p, o in rows}


async def caught_up(edge: EdgeProcess) -> bool:
    _, state = await get_json(f"{edge.url}/readyz")
    return bool(state["masterdata"]["caught_up"])


async def test_a_restarted_edge_does_not_read_the_topics_again(
    kafka_broker: str, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    names = [sku(f"R{i}") for i in range(200)]
    await publish(settings, codec, items=[item(n) for n in names])
    edge = EdgeProcess(f"S-MDR{RUN}", kafka_broker, tmp_path)
    try:
        edge.start()
        await until(60, lambda: caught_up(edge), "first copy caught up")
        first = edge.metric("tillstream_edge_masterdata_records_read_total")
        assert first >= 200  # everything on the topics, from the beginning
        positions = copy_positions(tmp_path)
        assert edge.stop() == 0

        edge.start()
        await until(60, lambda: caught_up(edge), "caught up after the restart")
        assert edge.metric("tillstream_edge_masterdata_records_read_total") == 0
        assert copy_positions(tmp_path) == positions
        assert await served(edge, names[-1]) is not None  # from the copy kept on disk
        await publish(settings, codec, items=[item(sku("R-NEW"))])
        await until(30, lambda: served(edge, sku("R-NEW")), "new item served")
        # Only what is new (records other tests publish meanwhile may come too).
        assert edge.metric("tillstream_edge_masterdata_records_read_total") < 50
    finally:
        edge.kill()


async def test_an_edge_cut_off_from_kafka_serves_its_copy_and_catches_up_when_back(
    kafka_libs: Path, tmp_path: Path, codec: AvroCodec
) -> None:
    """The edge reaches the broker through a proxy (its uplink); head office does not. The
    uplink goes down while head office publishes changes."""
    port, edge_port, uplink_port, controller = free_port(), free_port(), free_port(), free_port()
    broker = LocalKafka(
        data_dir=tmp_path / "kafka",
        libs=kafka_libs,
        port=port,
        controller_port=controller,
        extra_config={
            "listeners": f"PLAINTEXT://127.0.0.1:{port},EDGE://127.0.0.1:{edge_port},"
            f"CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},EDGE://127.0.0.1:{uplink_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,EDGE:PLAINTEXT,"
            "CONTROLLER:PLAINTEXT",
        },
    )
    broker.start()
    uplink = Proxy(uplink_port, edge_port)
    uplink.start()
    hq = Settings(kafka_bootstrap_servers=broker.bootstrap, topic_partitions=3)
    work = tmp_path / "edge"
    work.mkdir()
    edge = EdgeProcess("S-CUT", f"127.0.0.1:{uplink_port}", work)
    try:
        await create_topics(hq)
        await publish(hq, codec, items=[item(f"C{i}") for i in range(100)])
        await publish(hq, codec, prices=[price(f"C{i}", "1.00") for i in range(100)])
        edge.start()
        await until(60, lambda: caught_up(edge), "copy built")
        read_before = edge.metric("tillstream_edge_masterdata_records_read_total")
        assert read_before == 200

        uplink.cut()
        await until(30, lambda: _not(caught_up(edge)), "the edge knows it is cut off")
        # Head office publishes changes meanwhile: 20 new prices, 10 deletions, 5 new items.
        changes = await publish(
            hq,
            codec,
            items=[item(f"N{i}") for i in range(5)],
            prices=[price(f"C{i}", "2.00") for i in range(20)],
            deleted_items=[f"C{i}" for i in range(90, 100)],
        )
        await asyncio.sleep(3)
        # The copy is served as it was: old prices, deleted items still there, nothing new.
        assert await _amount_open(edge, "C0") == "1.00"
        assert await _amount_open(edge, "C95") == "1.00"
        assert (await get_json(f"{edge.url}/v1/items/N0"))[0] == 404
        # Sales are taken meanwhile (and marked from the copy).
        sale = sale_json("S-CUT", event_id=new_id(), lines=[line(1, "C1", "1.00")])
        sale["totals"] = {"gross_amount": "1.00", "net_amount": "1.00"}
        answer = httpx.post(f"{edge.url}/v1/events", json=sale, timeout=10)
        assert answer.status_code == 202, answer.text
        assert edge.metric("tillstream_edge_masterdata_records_read_total") == read_before

        uplink.restore()
        took = await until(90, lambda: caught_up(edge), "caught up after the uplink returned")
        assert await _amount_open(edge, "C0") == "2.00"
        assert await _amount_open(edge, "C25") == "1.00"
        assert (await get_json(f"{edge.url}/v1/items/C95"))[0] == 404
        assert await _amount_open(edge, "N4") is None  # an item without a price
        assert (await get_json(f"{edge.url}/v1/items/N4"))[0] == 200
        # Exactly the changes, each once: nothing read again, nothing missed.
        assert edge.metric("tillstream_edge_masterdata_records_read_total") == read_before + changes
        assert edge.metric("tillstream_edge_masterdata_items") == 95
        assert edge.metric("tillstream_edge_masterdata_records_behind") == 0
        print(f"caught up {took:.1f}s after the uplink returned ({changes} changes)")
    finally:
        edge.kill()
        uplink.close()
        broker.stop()


async def test_the_copy_is_not_called_caught_up_once_reading_fails(
    settings: Settings, codec: AvroCodec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What was known before a failure is not known after it: /readyz must not go on saying
    caught up while every attempt to apply what comes in fails."""
    copy = MasterDataCopy(tmp_path / "md.db", f"S-MDF{RUN}", ZoneInfo(ZONE), codec)
    await copy.open()
    sync = MasterDataSync(settings, copy, rebuild_after=timedelta(days=1))
    reading = asyncio.create_task(sync.run())
    try:
        await until(60, lambda: sync.health()["caught_up"], "caught up")

        async def broken(records: list[RawRecord]) -> Applied:
            raise OSError("disk gone")

        monkeypatch.setattr(copy, "apply", broken)
        await publish(settings, codec, items=[item(sku("F-1"))])
        await until(15, lambda: not sync.health()["caught_up"], "not caught up any more")
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        await copy.close()


async def _not(value: Any) -> bool:
    return not await value


async def _amount_open(edge: EdgeProcess, code: str) -> str | None:
    status, body = await get_json(f"{edge.url}/v1/items/{code}")
    assert status == 200, (code, body)
    return None if body["price"] is None else str(body["price"]["amount"])


@pytest.mark.fills_topics
async def test_100000_items_and_prices_are_applied(
    kafka_broker: str, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    count = 100_000
    names = [sku(f"B{i:06d}") for i in range(count)]
    start = time.monotonic()
    await publish(
        settings,
        codec,
        items=(item(n, gtin13(f"41{RUN[-2:]}{i:08d}")) for i, n in enumerate(names)),
        prices=(price(n, f"{i % 100}.99") for i, n in enumerate(names)),
    )
    published = time.monotonic() - start
    edge = EdgeProcess(f"S-MDB{RUN}", kafka_broker, tmp_path)
    try:
        started = time.monotonic()
        edge.start()
        # Tills keep selling while the copy is built: the sales path must not wait for it.
        latencies: list[float] = []
        async with httpx.AsyncClient(timeout=30) as http:
            while not await caught_up(edge):
                assert time.monotonic() - started < 80, "100,000 items and prices not applied"
                sale = sale_json(edge.store, event_id=new_id(), lines=[line(1, names[7], "1.00")])
                sale["totals"] = {"gross_amount": "1.00", "net_amount": "1.00"}
                sent = time.monotonic()
                answer = await http.post(f"{edge.url}/v1/events", json=sale)
                latencies.append(time.monotonic() - sent)
                assert answer.status_code == 202, answer.text
                await asyncio.sleep(0.2)
        took = time.monotonic() - started
        latencies.sort()
        assert latencies and latencies[-1] < 2.0, latencies[-5:]
        body = await get_json(f"{edge.url}/v1/items/{names[-1]}")
        assert body[0] == 200 and body[1]["price"] == {"amount": "99.99", "currency": "EUR"}
        read = edge.metric("tillstream_edge_masterdata_records_read_total")
        assert read >= 2 * count
        # The gauge is refreshed with the next check (every 2 s).
        await until(10, lambda: edge.metric("tillstream_edge_masterdata_items") >= count, "held")
        held = edge.metric("tillstream_edge_masterdata_items")
        print(
            f"\npublished {2 * count} records in {published:.1f}s; the edge applied {read:.0f} "
            f"records in {took:.1f}s from its start: {read / took:,.0f} records/s, "
            f"{held / took:,.0f} items/s; {len(latencies)} sales posted meanwhile, slowest "
            f"{latencies[-1] * 1000:.0f} ms, median {latencies[len(latencies) // 2] * 1000:.0f} ms"
        )
    finally:
        edge.kill()


async def test_an_edge_away_longer_than_deletions_are_kept_rebuilds_its_copy(
    kafka_broker: str, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    """An edge last caught up longer ago than the rebuild limit reads the topics from the
    beginning again and deletes what it no longer finds there (a deletion whose tombstone
    compaction removed while it was away: played here by a row the topics never held)."""
    real = sku("REAL")
    await publish(settings, codec, items=[item(real)])
    edge = EdgeProcess(
        f"S-MDG{RUN}",
        kafka_broker,
        tmp_path,
        env={"TILLSTREAM_EDGE_MASTERDATA_REBUILD_AFTER": "4"},
    )
    try:
        edge.start()
        await until(60, lambda: served(edge, real), "copy built")
        await until(60, lambda: caught_up(edge), "copy caught up")
        assert edge.stop() == 0
        with sqlite3.connect(tmp_path / "outbox.masterdata.db") as db:
            db.execute(
                "INSERT INTO items (sku, seq, gen, deleted, event_id, gtins, description,"
                " unit_of_measure, weighed, stock_item) VALUES"
                " ('GHOST', 999999999, 1, 0, 'x', '[]', 'deleted at head office', 'EA', 0, 1)"
            )
        await asyncio.sleep(5)  # away longer than the limit
        edge.start()
        await until(60, lambda: _is_none(served(edge, "GHOST")), "the ghost deleted")
        assert await served(edge, real) is not None
        assert edge.metric("tillstream_edge_masterdata_rebuilds_total") == 1
        assert "rebuilding the copy from the beginning" in edge.log()
    finally:
        edge.kill()


async def test_an_edge_whose_copy_cannot_be_opened_still_takes_sales(
    kafka_broker: str, tmp_path: Path
) -> None:
    broken = tmp_path / "not-a-database"
    broken.mkdir()  # a directory where the copy's file should be
    edge = EdgeProcess(
        f"S-MDX{RUN}", kafka_broker, tmp_path, env={"TILLSTREAM_EDGE_MASTERDATA": str(broken)}
    )
    try:
        edge.start()
        sale = sale_json(edge.store, event_id=new_id(), lines=[line(1, sku("ANY"), "1.00")])
        sale["totals"] = {"gross_amount": "1.00", "net_amount": "1.00"}
        answer = httpx.post(f"{edge.url}/v1/events", json=sale, timeout=10)
        assert answer.status_code == 202, answer.text
        status, body = await get_json(f"{edge.url}/v1/items/{sku('ANY')}")
        assert status == 503 and body["error"] == "unavailable"
        assert "cannot be opened" in edge.log()
    finally:
        edge.kill()
