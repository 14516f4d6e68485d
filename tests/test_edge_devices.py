"""Serial devices through the whole edge: pty scanner and scale -> outbox -> Kafka."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.device_support import FakePort, Responder, mtsics_answers
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_consumer
from tillstream.core.settings import Settings
from tillstream.core.topics import STOCK_MOVEMENTS

pytestmark = pytest.mark.usefixtures("kafka_topics")


async def next_stock_event(consumer: Any, codec: AvroCodec, store: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for m in batch:
                    if m.key == store.encode():
                        return codec.decode(m.value).record


async def device_state(url: str, name: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        state: dict[str, Any] = (await http.get(f"{url}/readyz")).json()["devices"][name]
        return state


async def test_scans_and_weights_become_stock_events_and_unplugging_is_survived(
    edge_factory: Any, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = f"S-DEV-{time.time_ns() % 10000}"
    scanner = FakePort(tmp_path / "scanner")
    scale = FakePort(tmp_path / "scale")
    devices = tmp_path / "devices.toml"
    devices.write_text(f"""
[items]
"4006381333931" = "SKU-MILK-1L"

[devices.dock-scanner]
protocol = "scanner"
port = "{scanner.link}"
mode = "receive"
terminator = "CR"
scale = "dock-scale"

[devices.dock-scale]
protocol = "mt-sics"
port = "{scale.link}"
poll_interval = 0
""")
    responder = Responder(scale, b"\r\n", mtsics_answers(lambda _cmd: b"S S      1.234 kg\r\n"))
    consumer = make_consumer(
        settings, STOCK_MOVEMENTS.name, group_id=f"dev-{time.time_ns()}", auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        await consumer.seek_to_end()
        edge = edge_factory(store, args=["--devices", str(devices)])
        async with asyncio.timeout(15):
            while not (await device_state(edge.url, "dock-scanner"))["up"]:
                await asyncio.sleep(0.1)
        scanner.send(b"]E04006381333931\r")
        record = await next_stock_event(consumer, codec, store)
        assert record["sku"] == "SKU-MILK-1L" and record["gtin"] == "4006381333931"
        assert record["quantity"] == Decimal("1.234") and record["unit_of_measure"] == "KG"
        assert record["quantity_type"] == "CHANGE" and record["reason"] == "RECEIVED"
        assert responder.commands  # the edge asked the scale

        scanner.send(b"\x00\xff\xfegarbage\r")  # noise is counted, not fatal
        scanner.unplug()
        async with asyncio.timeout(15):
            while (await device_state(edge.url, "dock-scanner"))["up"]:
                await asyncio.sleep(0.1)
        replugged = FakePort(tmp_path / "scanner")
        async with asyncio.timeout(30):
            while not (await device_state(edge.url, "dock-scanner"))["up"]:
                await asyncio.sleep(0.2)
        replugged.send(b"]E04006381333931\r")
        again = await next_stock_event(consumer, codec, store)
        assert again["event_id"] != record["event_id"]
        assert edge.metric("tillstream_edge_device_up", 'device="dock-scanner"') == 1
    finally:
        await responder.stop()
        await consumer.stop()
