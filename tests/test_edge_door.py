"""The edge refuses at the door what Kafka could never take, on every channel, naming the
limit; the store's later events keep flowing (a real edge process and the real broker)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from tests.edge_support import EdgeProcess, dumps, sale_json, stock_json
from tests.test_edge_http import read_store
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.dev.samples import sample_stock_movement
from tillstream_edge.edge import EdgeService

pytestmark = pytest.mark.usefixtures("kafka_topics")

CLI = [sys.executable, "-m", "tillstream"]
LIMIT = "1048576"  # the producer's default max_request_size, below the topics' 1048588
WORDS = "organic hand picked heirloom tomatoes from the valley farm cooperative "


def big_sale(store: str, lines: int = 2000) -> dict[str, Any]:
    """A valid sale of ``lines`` lines with long descriptions: about 1.2 MB once encoded."""
    sale = sale_json(store)
    line = {**sale["lines"][0], "kind": "SALE", "gtin": None}
    line.update(quantity="1", unit_price="1.00", discount_amount="0", tax_amount="0")
    line["extended_amount"] = "1.00"
    sale["lines"] = [
        {
            **line,
            "line_number": n,
            "sku": f"SKU-LONG-{n:05d}-" + "X" * 40,
            "description": (WORDS * 8)[:500],
        }
        for n in range(1, lines + 1)
    ]
    total = str(Decimal(lines))
    sale["totals"] = {
        "gross_amount": total,
        "discount_amount": "0",
        "tax_amount": "0",
        "net_amount": total,
    }
    return sale


def big_poslog(store: str, sequence: int, lines: int = 2000) -> bytes:
    """A POSLog document holding one valid transaction as large as :func:`big_sale`."""
    items = "".join(
        f"<LineItem><SequenceNumber>{n}</SequenceNumber><Sale><ItemID>SKU-LONG-{n:05d}</ItemID>"
        f"<Description>{(WORDS * 8)[:500]}</Description>"
        "<RegularSalesUnitPrice>1.00</RegularSalesUnitPrice><ExtendedAmount>1.00"
        "</ExtendedAmount><Quantity>1</Quantity></Sale></LineItem>"
        for n in range(1, lines + 1)
    )
    return f"""<POSLog><Transaction>
<RetailStoreID>{store}</RetailStoreID><WorkstationID>7</WorkstationID>
<SequenceNumber>{sequence}</SequenceNumber><BusinessDayDate>2026-11-25</BusinessDayDate>
<EndDateTime>2026-11-25T10:15:00+01:00</EndDateTime><CurrencyCode>EUR</CurrencyCode>
<RetailTransaction>{items}
<LineItem><SequenceNumber>{lines + 1}</SequenceNumber><Tender TenderType="Cash">
<Amount>{lines}.00</Amount></Tender></LineItem>
<Total TotalType="TransactionGrandAmount">{lines}.00</Total>
</RetailTransaction></Transaction></POSLog>""".encode()


def assert_names_the_limit(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 413, answer.text
    body = answer.json()
    assert body["error"] == "too_large"
    (problem,) = body["problems"]
    assert problem["field"] == field
    assert f"at most {LIMIT} bytes per record" in problem["message"]
    assert "heirloom" not in answer.text  # sizes, never content


async def test_a_sale_kafka_could_never_take_is_refused_413_and_the_store_keeps_selling(
    edge_factory: Any, consumer_factory: Any, codec: AvroCodec
) -> None:
    store = f"S-DOOR-{uuid.uuid4().hex[:4]}"
    edge = edge_factory(store)
    later = [stock_json(store) for _ in range(5)]
    async with httpx.AsyncClient(base_url=edge.url, timeout=60) as http:
        refused = await http.post("/v1/events", content=dumps(big_sale(store)))
        assert_names_the_limit(refused, "event")
        in_batch = await http.post(
            "/v1/events", content=dumps([stock_json(store), big_sale(store)])
        )
        assert_names_the_limit(in_batch, "events[1]")
        fits = big_sale(store, lines=1000)  # about half the limit: taken
        assert (await http.post("/v1/events", content=dumps(fits))).status_code == 202
        for event in later:
            assert (await http.post("/v1/events", content=dumps(event))).status_code == 202
        posted = await http.post("/v1/poslog", content=big_poslog(store, 9001))
        assert posted.status_code == 202, posted.text  # set aside at the edge, with its reason
        [kept] = posted.json()["set_aside"]
        assert (kept["sequence_number"], kept["cause"]) == ("9001", "too_large")
        assert f"at most {LIMIT} bytes per record" in kept["reason"]
        assert "heirloom" not in posted.text
    seen = await read_store(consumer_factory, codec, store, 6)
    assert sorted(i for _, i in seen) == sorted([fits["event_id"], *(e["event_id"] for e in later)])
    assert edge.metric("tillstream_edge_events_rejected_total", 'reason="too_large"') == 3
    assert edge.metric("tillstream_edge_outbox_depth") == 0


async def test_drop_folder_and_import_refuse_an_oversize_transaction_with_its_reason(
    settings: Settings, edge_factory: Any, tmp_path: Path
) -> None:
    store = f"S-DROP-{uuid.uuid4().hex[:4]}"
    folder = tmp_path / "drop"
    folder.mkdir()
    edge = edge_factory(store, args=["--poslog-dir", str(folder)])
    (folder / "big.xml").write_bytes(big_poslog(store, 9002))
    result = folder / "processed" / "big.xml.result.json"
    deadline = time.monotonic() + 30
    while not result.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    [kept] = json.loads(result.read_text())["set_aside"]
    assert "transaction 9002" in kept["reason"] and kept["cause"] == "too_large"
    assert f"at most {LIMIT} bytes per record" in kept["reason"]
    assert edge.metric("tillstream_edge_events_rejected_total", 'channel="dropfolder"') == 1

    archive = tmp_path / "archive.xml"
    archive.write_bytes(big_poslog(store, 9003))
    env = {
        "PATH": "/usr/bin:/bin",
        "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [
            *CLI,
            "edge",
            "import",
            str(archive),
            "--store",
            store,
            "--outbox",
            str(tmp_path / "o.db"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # A backfill sets the transaction aside too (the file is read: exit 0), saying so.
    assert done.returncode == 0, done.stderr
    assert "1 file(s) imported (0 events" in done.stdout and "1 set aside" in done.stdout
    assert f"set aside: {archive}: transaction 9003" in done.stderr
    assert f"at most {LIMIT} bytes per record" in done.stderr


async def test_sent_events_kept_for_dedupe_never_make_the_edge_refuse_sales(
    kafka_broker: str, tmp_path: Path
) -> None:
    # A 1 MiB outbox: the sales below fill the file several times over once sent.
    store = f"S-FULL-{uuid.uuid4().hex[:4]}"
    work = tmp_path / "edge"
    work.mkdir()
    edge = EdgeProcess(store, kafka_broker, work, env={"TILLSTREAM_EDGE_OUTBOX_MAX_MB": "1"})
    edge.start()
    try:
        answers = []
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
            deadline = time.monotonic() + 8  # several housekeeping passes (every 2 s)
            while time.monotonic() < deadline:
                sale = big_sale(store, lines=150)  # about 90 KB encoded
                answers.append((await http.post("/v1/events", content=dumps(sale))).status_code)
                await asyncio.sleep(0.05)
        assert edge.metric("tillstream_edge_outbox_bytes") > 1024 * 1024  # the file is full...
        assert edge.metric("tillstream_edge_outbox_unsent_bytes") < 1024 * 1024  # ...of sent
        assert set(answers) == {202}, f"{answers.count(503)} of {len(answers)} refused with 503"
    finally:
        edge.kill()


async def test_a_device_event_over_the_limit_is_refused_logged_and_counted(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Device events are small; a tiny limit shows the device channel passes the same door.
    store = "S-DEVICE"
    service = EdgeService(
        settings.model_copy(
            update={
                "store_id": store,
                "edge_listen": "127.0.0.1:0",
                "edge_outbox": tmp_path / "outbox.db",
            }
        )
    )
    service.limits.max_request_bytes = 200
    before = REGISTRY.get_sample_value(
        "tillstream_edge_events_rejected_total", {"channel": "device", "reason": "too_large"}
    )
    await service.outbox.open()
    try:
        await service._emit_device("stock_movement", sample_stock_movement(store))
        assert await service.outbox.pending(10) == []
    finally:
        await service.outbox.close()
    after = REGISTRY.get_sample_value(
        "tillstream_edge_events_rejected_total", {"channel": "device", "reason": "too_large"}
    )
    assert (after or 0) - (before or 0) == 1
    # One line naming the reason and the field, never the event's content.
    assert "device event refused (too_large): event" in caplog.text


async def test_a_refusal_is_counted_once_under_its_own_reason(
    settings: Settings, tmp_path: Path
) -> None:
    # A device event whose id was taken with other content: one count as a conflict (it was
    # also counted as "invalid" when the outbox and the channel both counted it).
    store = "S-DEVICE-CONFLICT"
    service = EdgeService(
        settings.model_copy(
            update={
                "store_id": store,
                "edge_listen": "127.0.0.1:0",
                "edge_outbox": tmp_path / "outbox.db",
            }
        )
    )

    def rejected(reason: str) -> float:
        labels = {"channel": "device", "reason": reason}
        return REGISTRY.get_sample_value("tillstream_edge_events_rejected_total", labels) or 0

    before = {reason: rejected(reason) for reason in ("conflict", "invalid")}
    movement = sample_stock_movement(store)
    await service.outbox.open()
    try:
        await service._emit_device("stock_movement", movement)
        await service._emit_device("stock_movement", {**movement, "quantity": Decimal("99.000")})
        assert len(await service.outbox.pending(10)) == 1
    finally:
        await service.outbox.close()
    assert rejected("conflict") - before["conflict"] == 1
    assert rejected("invalid") - before["invalid"] == 0
