"""The device service over real ptys: stock sessions, paired scales, unplug and replug."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.device_support import (
    FakePort,
    Responder,
    metric,
    mtsics_answers,
    name,
    next_event,
    running,
    wait_for,
)
from tillstream.core.codec import AvroCodec
from tillstream_edge.devices import DeviceConfigError, DevicesConfig, DeviceService, EmitFailed

MILK, MILK_14, BREAD = "4006381333931", "04006381333931", "5012345678900"
ITEMS = {MILK: "SKU-MILK-1L"}


def assert_stock_record(record: dict[str, Any], codec: AvroCodec) -> None:
    """The record is what stock_movement v1 accepts, and survives an Avro round trip."""
    assert uuid.UUID(record["event_id"]).version == 4
    assert record["store_id"] == "S001"
    assert record["occurred_at"].tzinfo is UTC
    assert isinstance(record["quantity"], Decimal)
    decoded = codec.decode(codec.encode("stock_movement", record))
    assert decoded.record["quantity"] == record["quantity"]


async def test_receive_with_paired_scale_emits_kg(tmp_path: Path, codec: AvroCodec) -> None:
    scanner_port, scale_port = FakePort(tmp_path / "scanner"), FakePort(tmp_path / "scale")
    replies = [b"S D 0.700 kg\r\n", b"S S 0.734 kg\r\n", b"S S 1500 g\r\n", b"S +\r\n"]
    responder = Responder(
        scale_port, b"\r\n", mtsics_answers(lambda _c: replies.pop(0) if replies else b"S I\r\n")
    )
    scanner, scale = name("rcv"), name("rcv-scale")
    devices: dict[str, dict[str, Any]] = {
        scanner: {"protocol": "scanner", "port": str(scanner_port.link), "scale": scale},
        scale: {"protocol": "mt-sics", "port": str(scale_port.link), "poll_interval": 0},
    }
    async with running(devices, ITEMS) as (service, events):
        await wait_for(lambda: all(s.up for s in service.status().values()))
        scanner_port.send(b"]E04006381333931\r")
        first = await next_event(events)
        scanner_port.send(b"]E05012345678900\r")
        second = await next_event(events)
        scanner_port.send(b"]E05012345678900\r")  # the scale is overloaded: no event
        await wait_for(lambda: service.status()[scanner].rejected == 1)
        replies.append(b"S S 0.250 kg\r\n")
        scanner_port.send(b"RECEIVE-END\r")
        scanner_port.send(b"]E04006381333931\r")  # a new delivery, still weighed
        third = await next_event(events)
    await responder.stop()
    for record in (first, second, third):
        assert_stock_record(record, codec)
        assert (record["quantity_type"], record["reason"], record["unit_of_measure"]) == (
            "CHANGE",
            "RECEIVED",
            "KG",
        )
        assert record["source"] == "scale"
    assert (first["sku"], first["gtin"], first["quantity"]) == (
        "SKU-MILK-1L",
        MILK,
        Decimal("0.734"),
    )
    assert (second["sku"], second["quantity"]) == (BREAD, Decimal("1.500"))
    assert third["quantity"] == Decimal("0.250")
    assert first["reference"] == second["reference"] != third["reference"]
    assert str(first["reference"]).startswith("RCV-")
    rejected = "tillstream_edge_device_rejected_total"
    assert metric(rejected, device=scanner, reason="scale_overload") == 1
    scanner_port.unplug()
    scale_port.unplug()


async def test_count_session_emits_one_count_per_sku(tmp_path: Path, codec: AvroCodec) -> None:
    port = FakePort(tmp_path / "scanner")
    dev = name("count")
    devices = {
        dev: {"protocol": "scanner", "port": str(port.link), "mode": "count", "idle_timeout": 0.5}
    }
    async with running(devices, ITEMS) as (service, events):
        await wait_for(lambda: service.status()[dev].up)
        port.send(b"]E04006381333931\r]E05012345678900\r")
        port.send(b"]C101" + MILK_14.encode() + b"10LOT1\x1d\r")  # the same SKU in GS1-128
        port.send(b"4006381333931\r")
        await wait_for(lambda: service.health()[dev]["session"] is not None)
        assert events.empty()  # nothing leaves until the count is closed
        port.send(b"]C0COUNT-END\r")
        counted = {r["sku"]: r for r in [await next_event(events), await next_event(events)]}
        # An idle session closes by itself.
        port.send(b"]E05012345678900\r")
        idle = await next_event(events)
    for record in [*counted.values(), idle]:
        assert_stock_record(record, codec)
        assert (record["quantity_type"], record["reason"], record["unit_of_measure"]) == (
            "COUNT",
            "COUNTED",
            "EA",
        )
        assert record["source"] == "scanner"
        assert str(record["reference"]).startswith("CNT-")
    assert counted["SKU-MILK-1L"]["quantity"] == 3
    assert counted["SKU-MILK-1L"]["gtin"] == MILK
    assert counted[BREAD]["quantity"] == 1
    assert counted[BREAD]["reference"] == counted["SKU-MILK-1L"]["reference"]
    assert idle["reference"] != counted[BREAD]["reference"] and idle["quantity"] == 1
    assert metric("tillstream_edge_device_sessions_total", device=dev, ended="idle") == 1
    port.unplug()


async def test_unplug_and_replug_reconnects_and_events_flow(tmp_path: Path) -> None:
    link = tmp_path / "scanner"
    port = FakePort(link)
    dev = name("plug")
    devices = {
        dev: {
            "protocol": "scanner",
            "port": str(link),
            "reconnect_initial": 0.05,
            "reconnect_max": 0.2,
        }
    }
    async with running(devices) as (service, events):
        await wait_for(lambda: service.status()[dev].up)
        port.send(b"]E04006381333931\r")
        before = await next_event(events)
        port.unplug()
        await wait_for(lambda: not service.status()[dev].up)
        status = service.status()[dev]
        assert status.last_error
        assert metric("tillstream_edge_device_up", device=dev) == 0
        await asyncio.sleep(0.5)  # several failed reopens of the dangling path, capped delays
        assert "cannot open" in str(service.status()[dev].last_error)
        port = FakePort(link)  # a new pty behind the same configured path
        await wait_for(lambda: service.status()[dev].up)
        assert service.status()[dev].reconnects == 1
        assert metric("tillstream_edge_device_up", device=dev) == 1
        port.send(b"]E04006381333931\r")
        after = await next_event(events)
    assert after["reference"] == before["reference"]  # the receiving session outlives the cable
    assert metric("tillstream_edge_device_reconnects_total", device=dev) == 1
    port.unplug()


async def test_port_missing_at_start_comes_up_later(tmp_path: Path) -> None:
    link = tmp_path / "late-scale"
    dev = name("late")
    devices = {dev: {"protocol": "mt-sics", "port": str(link), "reconnect_initial": 0.05}}
    async with running(devices) as (service, _events):
        await wait_for(lambda: service.status()[dev].last_error is not None)
        health = service.health()[dev]
        assert health["up"] is False and "cannot open" in health["last_error"]
        port = FakePort(link)
        responder = Responder(port, b"\r\n", mtsics_answers(lambda _c: b"S S 0.000 kg\r\n"))
        await wait_for(lambda: service.status()[dev].up)
        assert await service.scales[dev].weigh() == Decimal(0)
        await responder.stop()
    port.unplug()


async def test_emit_failure_stops_the_service(tmp_path: Path) -> None:
    port = FakePort(tmp_path / "scanner")
    dev = name("emit")

    async def emit(_event: str, _record: dict[str, Any]) -> None:
        raise OSError("outbox disk full")

    config = DevicesConfig.model_validate(
        {"devices": {dev: {"protocol": "scanner", "port": str(port.link)}}}
    )
    service = DeviceService(config, store_id="S001", emit=emit)
    task = asyncio.create_task(service.run())
    await wait_for(lambda: service.status()[dev].up)
    port.send(b"]E04006381333931\r")
    with pytest.raises(ExceptionGroup) as err:
        async with asyncio.timeout(5):
            await task
    assert err.group_contains(EmitFailed)
    with contextlib.suppress(OSError):
        port.unplug()


# --- head office's settings of a device, applied while the service runs -----------------


async def test_a_device_moved_to_another_port_is_restarted_alone(tmp_path: Path) -> None:
    old, new, other = (FakePort(tmp_path / n) for n in ("old", "new", "other"))
    moved, kept = name("moved"), name("kept")
    devices = {
        moved: {"protocol": "scanner", "port": str(old.link)},
        kept: {"protocol": "scanner", "port": str(other.link)},
    }
    async with running(devices) as (service, events):
        await wait_for(lambda: all(s.up for s in service.status().values()))
        untouched = service.scanners[kept]
        config = service.with_device(moved, {"protocol": "scanner", "port": str(new.link)})
        await service.reconfigure(moved, config)
        assert service.config.devices[moved].port == str(new.link)
        await wait_for(lambda: service.status()[moved].up)
        assert service.status()[moved].port == str(new.link)
        new.send(b"]E04006381333931\r")
        assert (await next_event(events))["gtin"] == "4006381333931"
        old.send(b"]E05012345678900\r")  # the old port is no longer read
        other.send(b"]E05012345678900\r")
        assert (await next_event(events))["gtin"] == "5012345678900"
        assert events.empty() and service.scanners[kept] is untouched

        back = service.with_device(moved, None)  # head office's record deleted: the file's
        await service.reconfigure(moved, back)
        await wait_for(lambda: service.status()[moved].up)
        assert service.status()[moved].port == str(old.link)
    for port in (old, new, other):
        port.unplug()


async def test_settings_head_office_cannot_have_are_refused_and_nothing_changes(
    tmp_path: Path,
) -> None:
    port = FakePort(tmp_path / "scanner")
    dev = name("refuse")
    async with running({dev: {"protocol": "scanner", "port": str(port.link)}}) as (service, _):
        await wait_for(lambda: service.status()[dev].up)
        before = service.config
        missing = tmp_path / "ttyUSB9"
        with pytest.raises(DeviceConfigError, match=f"port {missing} does not exist"):
            service.with_device(dev, {"protocol": "scanner", "port": str(missing)})
        with pytest.raises(DeviceConfigError, match=f"device '{dev}': field 'baudrate'"):
            service.with_device(dev, {"protocol": "scanner", "port": str(port.link), "baudrate": 0})
        with pytest.raises(DeviceConfigError, match="'scale': 'nowhere' is not a scale device"):
            service.with_device(
                dev, {"protocol": "scanner", "port": str(port.link), "scale": "nowhere"}
            )
        assert service.config is before and service.status()[dev].up
    port.unplug()


async def test_a_scale_changed_restarts_its_paired_scanner_and_a_new_device_runs(
    tmp_path: Path,
) -> None:
    scanner_port, scale_port, second = (FakePort(tmp_path / n) for n in ("sc", "sa", "sb"))
    responders = [
        Responder(p, b"\r\n", mtsics_answers(lambda _c: b"S S 0.500 kg\r\n"))
        for p in (scale_port, second)
    ]
    scanner, scale, added = name("pair"), name("pair-scale"), name("added")
    devices: dict[str, dict[str, Any]] = {
        scanner: {"protocol": "scanner", "port": str(scanner_port.link), "scale": scale},
        scale: {"protocol": "mt-sics", "port": str(scale_port.link), "poll_interval": 0},
    }
    async with running(devices) as (service, events):
        await wait_for(lambda: all(s.up for s in service.status().values()))
        table = {"protocol": "mt-sics", "port": str(second.link), "poll_interval": 0}
        await service.reconfigure(scale, service.with_device(scale, table))
        await wait_for(lambda: all(s.up for s in service.status().values()))
        scanner_port.send(b"]E04006381333931\r")
        assert (await next_event(events))["quantity"] == Decimal("0.500")
        assert any(c.startswith(b"S") for c in responders[1].commands)  # weighed on the new one

        extra = FakePort(tmp_path / "extra")  # a device the file does not name
        await service.reconfigure(
            added, service.with_device(added, {"protocol": "scanner", "port": str(extra.link)})
        )
        await wait_for(lambda: service.status()[added].up)
        await service.reconfigure(added, service.with_device(added, None))
        assert added not in service.status()
    for responder in responders:
        await responder.stop()
    for port in (scanner_port, scale_port, second, extra):
        port.unplug()
