"""Issue 15's done-when, end to end against a real broker and through the real commands: head
office publishes 100,000 items and 100,000 prices with ``tillstream items publish`` and
``tillstream prices publish``; a running edge serves them; a store price overrides the chain
price within its validity window only; an item left out of a ``--full`` publish disappears
from the edge.

The test has a broker of its own: 200,000 records on the session broker's master-data topics
would slow every later test that reads them from the start. Measured on the 2 shared cores:
60 s at a load average of 2 (the two publishes 27 s, the edge holding everything 8 s after
them), 251 s at a load average of 10 with a chaos run beside it (publishes 163 s, then
18 s); about 57 s of CPU either way. It keeps 100,000 of each, as the issue asks, with a
timeout of its own for a loaded machine.
The cut-off-from-Kafka and restart cases are in tests/test_edge_masterdata.py.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.edge_masterdata_support import gtin13
from tests.edge_support import EdgeProcess
from tests.masterdata_support import ITEMS_HEADER, PRICES_HEADER, publish, write
from tillstream.core.settings import Settings
from tillstream.dev.broker import LocalKafka
from tillstream.dev.ports import free_port

COUNT = 100_000
STORE = "S-E2E"
ZONE = "Europe/Berlin"
TOKEN = "till-01-token-of-the-end-to-end-test"


def sku(n: int) -> str:
    return f"E2E-{n:06d}"


def gtin(n: int) -> str:
    return gtin13(f"4001{n:08d}")


def chain_amount(n: int) -> str:
    return f"{1 + n % 97}.{n % 100:02d}"


def item_rows(numbers: range, *, without: int | None = None) -> list[str]:
    return [
        f"{sku(n)},{gtin(n)},Item {n},EA,false,{'false' if n % 50 == 0 else 'true'},5,3"
        for n in numbers
        if n != without
    ]


@pytest.fixture(scope="module")
def hq(kafka_libs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A broker of this test's own (see the module docstring)."""
    broker = LocalKafka(
        data_dir=tmp_path_factory.mktemp("e2e-kafka"), libs=kafka_libs, port=free_port()
    )
    broker.start()
    yield Settings(kafka_bootstrap_servers=broker.bootstrap, topic_partitions=3)
    broker.stop()


@pytest.fixture(scope="module")
def edge(hq: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    work = tmp_path_factory.mktemp("e2e-edge")
    (work / "tokens.toml").write_text(f'[tills]\nT01 = "{TOKEN}"\n')
    process = EdgeProcess(
        STORE,
        hq.kafka_bootstrap_servers,
        work,
        ["--tokens", str(work / "tokens.toml")],
        env={"TILLSTREAM_STORE_TIMEZONE": ZONE},
    )
    process.start(timeout=60)
    yield process
    process.kill()


def served(edge: EdgeProcess, code: str) -> tuple[int, Any]:
    answer = httpx.get(
        f"{edge.url}/v1/items/{code}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    return answer.status_code, answer.json()


def wait(seconds: float, check: Any, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds}s: {what}")
        time.sleep(0.5)
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_head_office_publishes_100k_items_and_prices_and_the_edge_serves_them(
    hq: Settings, edge: EdgeProcess, tmp_path: Path
) -> None:
    store_day = datetime.now(ZoneInfo(ZONE)).date()  # the store's day, not UTC's
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")
    numbers = range(COUNT)
    items = write(tmp_path / "items.csv", ITEMS_HEADER, item_rows(numbers))
    prices = write(
        tmp_path / "prices.csv",
        PRICES_HEADER,
        [f"{sku(n)},,{chain_amount(n)},EUR,," for n in numbers]
        + [
            # Today in the store's zone, through its end: wins over the chain's 1.01.
            f"{sku(1)},{STORE},0.49,EUR,{store_day},{store_day}",
            # Ended yesterday: the chain's price holds again.
            f"{sku(2)},{STORE},0.59,EUR,,{store_day - timedelta(days=1)}",
            # Starts in an hour: not yet.
            f"{sku(3)},{STORE},0.69,EUR,{in_an_hour},",
            # Another store's: never held by this edge.
            f"{sku(4)},S-OTHER,0.79,EUR,,",
        ],
    )

    started = time.monotonic()
    published = publish(hq, "items", str(items))
    assert published.exit_code == 0, published.output[-2000:]
    assert f"items: {COUNT} new, 0 changed, 0 deleted, 0 unchanged" in published.output
    published = publish(hq, "prices", str(prices))
    assert published.exit_code == 0, published.output[-2000:]
    assert f"prices: {COUNT + 4} new" in published.output
    publishing = time.monotonic() - started

    # The copy's counts: every item, the chain's prices and this store's three.
    wait(90, lambda: edge.metric("tillstream_edge_masterdata_items") == COUNT, "items held")
    wait(60, lambda: edge.metric("tillstream_edge_masterdata_prices") == COUNT + 3, "prices held")
    applied = time.monotonic() - started
    print(f"published in {publishing:.1f}s; the edge held all of it {applied:.1f}s after start")
    assert edge.metric("tillstream_edge_masterdata_records_behind") == 0

    # Spot checks, by SKU and by GTIN (also as a GTIN-14).
    for n in [0, COUNT - 1, *random.Random(15).sample(range(5, COUNT), 20)]:
        status, body = served(edge, sku(n) if n % 2 else gtin(n))
        assert status == 200, (n, body)
        assert body["sku"] == sku(n) and body["description"] == f"Item {n}"
        assert body["gtins"] == [gtin(n)] and body["unit_of_measure"] == "EA"
        assert body["stock_item"] is (n % 50 != 0)
        assert body["price"] == {"amount": chain_amount(n), "currency": "EUR"}, n
    assert served(edge, "0" + gtin(77))[1]["sku"] == sku(77)

    # The store's price only within its window; another store's never.
    def amount(n: int) -> str:
        status, body = served(edge, sku(n))
        assert status == 200, body
        return str(body["price"]["amount"])

    assert amount(1) == "0.49"
    assert amount(2) == chain_amount(2)
    assert amount(3) == chain_amount(3)
    assert amount(4) == chain_amount(4)

    # Head office's next full export lacks one item: it is gone from the edge, SKU and GTIN.
    gone = 4242
    full = write(tmp_path / "items-full.csv", ITEMS_HEADER, item_rows(numbers, without=gone))
    assert served(edge, sku(gone))[0] == 200
    published = publish(hq, "items", str(full), "--full")
    assert published.exit_code == 0, published.output[-2000:]
    assert f"items: 0 new, 0 changed, 1 deleted, {COUNT - 1} unchanged" in published.output
    wait(30, lambda: served(edge, sku(gone))[0] == 404, "the deleted item gone")
    assert served(edge, gtin(gone))[0] == 404
    assert served(edge, sku(gone + 1))[0] == 200
    wait(10, lambda: edge.metric("tillstream_edge_masterdata_items") == COUNT - 1, "items held")
