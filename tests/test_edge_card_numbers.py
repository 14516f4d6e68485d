"""Card numbers through the real edge, in any spelling and in any field, reach no Kafka topic.

One edge service (as ``tillstream edge run`` runs it, in this process so its logs and
metrics can be read) with the HTTP API, a POSLog drop folder and a scanner on a
pseudo-terminal, publishing to the session's broker. Card numbers are sent as free text and
as item identifiers (SKU, GTIN, POSLog ItemID, a scanned barcode), with dots, slashes,
underscores, tabs, no-break and zero-width spaces and full-width digits. Each is refused,
counted once under ``card_number``, logged with its fields and never its value; then two
valid events are sent, and they are the only events of this store that reach Kafka.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.device_support import FakePort
from tests.edge_support import dumps, payment_json, sale_json, stock_json
from tests.fuzz_support import poslog, retail_tx
from tests.test_data_protection import edge_in_process, metric
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_consumer
from tillstream.core.settings import Settings
from tillstream.core.topics import PAYMENTS, SALES, STOCK_MOVEMENTS, store_key
from tillstream.dev.ports import free_port

DINERS_GTIN = "36000000000081"  # a Diners Club number that also passes the GTIN check
REAL_GTIN_14 = "40063813339314"  # a real GTIN-14 that happens to pass Luhn: an item
SCANNED = "4006381333931"


def http_refusals(store: str) -> list[tuple[dict[str, Any], str, str]]:
    """(event, field named in the answer, the card number as sent)."""
    cases: list[tuple[dict[str, Any], str, str]] = []
    sale = sale_json(store)
    sale["lines"][0]["sku"] = "4111111111111111"
    cases.append((sale, "lines[0].sku", "4111111111111111"))
    cases.append((stock_json(store, sku="5555 5555 5555 4444"), "sku", "5555 5555 5555 4444"))
    cases.append((stock_json(store, gtin=DINERS_GTIN), "gtin", DINERS_GTIN))
    sale = sale_json(store)
    sale["lines"][0]["description"] = "paid 4111.1111.1111.1111"
    cases.append((sale, "lines[0].description", "4111.1111.1111.1111"))
    payment = payment_json(sale_json(store))
    payment["card"]["token"] = "４１１１\u200b１１１１\u200b１１１１\u200b１１１１"
    cases.append((payment, "card.token", payment["card"]["token"]))
    for separator in ("/", "_", "\t", "  ", "\u00a0"):
        written = separator.join(["5555", "5555", "5555", "4444"])
        cases.append((stock_json(store, reference=f"ref {written}"), "reference", written))
    return cases


def document(store: str, item_id: str) -> bytes:
    """A valid POSLog transaction whose first line sells ``item_id``."""
    tx = retail_tx(store, uuid.uuid4().int % 10**8).decode()
    return poslog(
        tx.replace("<ItemID>4006381333931</ItemID>", f"<ItemID>{item_id}</ItemID>", 1).encode()
    )


def counts(scanner: str) -> dict[str, float]:
    rejected = "tillstream_edge_events_rejected_total"
    return {
        "http card": metric(rejected, channel="http", reason="card_number"),
        "http invalid": metric(rejected, channel="http", reason="invalid"),
        "poslog card": metric(rejected, channel="poslog", reason="card_number"),
        "poslog invalid": metric(rejected, channel="poslog", reason="invalid_poslog"),
        "folder card": metric(rejected, channel="dropfolder", reason="card_number"),
        "folder invalid": metric(rejected, channel="dropfolder", reason="invalid_poslog"),
        "scanner card": metric(
            "tillstream_edge_device_rejected_total", device=scanner, reason="card_number"
        ),
    }


async def records_of(settings: Settings, codec: AvroCodec, store: str, done: Any) -> list[Any]:
    """Every record of ``store`` on the event topics, read until ``done(records)`` and 2 s
    more (so a late, unwanted record would be seen too)."""
    consumer = make_consumer(
        settings, SALES.name, PAYMENTS.name, STOCK_MOVEMENTS.name, group_id=f"card-{time.time_ns()}"
    )
    await consumer.start()
    found: list[Any] = []
    key = store_key(store)
    try:
        async with asyncio.timeout(60):
            while not done(found):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    found += [
                        codec.decode(m.value).record for m in batch if m.key == store.encode()
                    ]
        for batch in (await consumer.getmany(timeout_ms=2000)).values():
            found += [codec.decode(m.value).record for m in batch if m.key == key]
    finally:
        await consumer.stop()
    return found


@pytest.mark.timeout(300)
async def test_card_numbers_in_any_spelling_and_field_reach_no_topic(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    store = f"S-CARD-{uuid.uuid4().hex[:6]}"
    scanner_name = f"dock-{uuid.uuid4().hex[:6]}"
    folder = tmp_path / "drop"
    scanner = FakePort(tmp_path / "scanner")
    devices = tmp_path / "devices.toml"
    devices.write_text(f'[devices.{scanner_name}]\nprotocol = "scanner"\nport = "{scanner.link}"\n')
    port = free_port()
    settings = kafka_topics.model_copy(
        update={
            "store_id": store,
            "edge_listen": f"127.0.0.1:{port}",
            "edge_outbox": tmp_path / "outbox.db",
            "edge_poslog_dir": folder,
            "edge_devices": devices,
        }
    )
    before = counts(scanner_name)
    cases = http_refusals(store)
    good = stock_json(store, sku=REAL_GTIN_14, gtin=REAL_GTIN_14)
    async with (
        edge_in_process(settings),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        for event, field, _ in cases:
            answer = await http.post("/v1/events", content=dumps(event))
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"] == "card_number"
            assert [p["field"] for p in answer.json()["problems"]] == [field]
        for item_id, error in [
            ("5555 5555 5555 4444", "card_number"),
            ("５５５５.５５５５.５５５５.４４４４", "card_number"),
            ("X" * 5000, "invalid_poslog"),  # the HTTP channel's SKU rule holds here too
            ("A'; DROP TABLE erp_stock; --", "invalid_poslog"),
        ]:
            # The transaction is set aside (kept at the edge, masked), the rest of its file not
            # held back; counted as a refusal under its cause.
            answer = await http.post("/v1/poslog", content=document(store, item_id))
            assert answer.status_code == 202, answer.text
            [kept] = answer.json()["set_aside"]
            cause = {"card_number": "card_number", "invalid_poslog": "invalid"}[error]
            assert kept["cause"] == cause, answer.text
            assert "5555" not in answer.text and "DROP" not in answer.text

        old = time.time() - 10
        (folder / "card.xml").write_bytes(document(store, "4111_1111_1111_1111"))
        os.utime(folder / "card.xml", (old, old))
        async with asyncio.timeout(15):
            while not (await http.get("/readyz")).json()["devices"][scanner_name]["up"]:
                await asyncio.sleep(0.1)
        scanner.send(f"]E0{DINERS_GTIN}\r".encode())  # a card number that scans as an EAN
        scanner.send(b"4111.1111.1111.1111\r")  # typed or swiped on the scanner's line
        scanner.send(f"]E0{SCANNED}\r".encode())  # a real item after them
        assert (await http.post("/v1/events", content=dumps(good))).status_code == 202

        def arrived(found: list[Any]) -> bool:
            return good["event_id"] in {str(r["event_id"]) for r in found} and any(
                r.get("gtin") == SCANNED for r in found
            )

        found = await records_of(kafka_topics, codec, store, arrived)
        async with asyncio.timeout(15):
            while not (folder / "processed" / "card.xml.result.json").exists():
                await asyncio.sleep(0.1)

    assert len(found) == 2, [r["event_id"] for r in found]  # the two valid events, nothing else
    assert {r["sku"] for r in found} == {REAL_GTIN_14, SCANNED}
    result = (folder / "processed" / "card.xml.result.json").read_text()
    [kept] = json.loads(result)["set_aside"]
    assert "card number" in kept["reason"] and "1111" not in result

    after = counts(scanner_name)
    delta = {k: after[k] - before[k] for k in after}
    assert delta == {
        "http card": len(cases),  # each refusal counted once, under its own reason
        "http invalid": 0,
        "poslog card": 2,
        "poslog invalid": 2,
        "folder card": 1,
        "folder invalid": 0,
        "scanner card": 2,
    }

    logged = [r.getMessage() for r in caplog.records]
    refusals = [m for m in logged if "request refused with 422" in m]
    assert len(refusals) == len(cases)  # one line per refused HTTP request
    set_aside = [m for m in logged if " set aside" in m]
    assert len(set_aside) == 4 + 1  # one line per POSLog document or file with one set aside
    for (_, field, _), line in zip(cases, refusals, strict=False):
        assert line.endswith(f"(card_number): {field}"), line
    text = "\n".join(logged)
    for _, _, written in cases:
        assert written not in text
    for digits in ("4111111111111111", "5555555555554444", DINERS_GTIN, "X" * 100, "DROP"):
        assert digits not in text
