"""Head office's desired state at the edge: records produced straight to
``tillstream.estate-desired`` (as ``tillstream fleet`` will), applied by real edge processes
within seconds, held while the store is offline and across restarts, and reported back."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaos.proxy import Proxy
from tests.device_support import FakePort
from tests.edge_support import EdgeProcess, dumps, payment_json, poslog_receipt, sale_json
from tests.estate_support import (
    HEARTBEAT,
    Reports,
    applied_of,
    desired,
    device_of,
    publish,
    sha256_hex,
    till_of,
)
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import create_topics
from tillstream.core.settings import Settings
from tillstream.dev.broker import LocalKafka
from tillstream.dev.ports import free_port

pytestmark = pytest.mark.usefixtures("kafka_topics")

TOKEN_T01 = "till-T01-desired-secret-0b8e51"
TOKEN_T02 = "till-T02-desired-secret-61f3aa"
TOKEN_NEW = "till-T01-rotated-secret-d44c07"
TOKEN_NEWER = "till-T01-rotated-again-secret-7e19"
ENV = {"TILLSTREAM_EDGE_HEARTBEAT_S": HEARTBEAT}


def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(
        f'[tills]\nT01 = "sha256:{sha256_hex(TOKEN_T01)}"\nT02 = "sha256:{sha256_hex(TOKEN_T02)}"\n'
    )
    return path


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def store_id(prefix: str) -> str:
    return f"{prefix}-{time.time_ns() % 10**8}"


async def within(seconds: float, attempt: Callable[[], Awaitable[bool]]) -> float:
    """Seconds until ``attempt`` holds, trying every 50 ms for at most ``seconds``."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        while not await attempt():
            await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_a_suspended_till_is_refused_within_5s_also_offline_after_a_restart(
    edge_factory: Any, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = store_id("S-DES-SUSP")
    args = ["--tokens", str(tokens_file(tmp_path))]
    async with Reports(settings, codec, store) as reports:
        edge = edge_factory(store, args=args, env=ENV)
        await reports.next(lambda r: r["reason"] == "START")
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:

            async def post_sale(token: str, till: str = "T01") -> httpx.Response:
                body = dumps(sale_json(store, terminal_id=till))
                return await http.post("/v1/events", content=body, headers=bearer(token))

            assert (await post_sale(TOKEN_T01)).status_code == 202
            record = desired(store, "till/T01", 1, till={"lifecycle": "SUSPENDED"})
            await publish(settings, codec, record, store, "till/T01")

            async def refused() -> bool:
                return (await post_sale(TOKEN_T01)).status_code == 403

            took = await within(5, refused)
            print(f"\ndesired state published to refusal: {took:.2f}s")
            answer = await post_sale(TOKEN_T01)
            assert answer.json() == {
                "error": "suspended",
                "problems": [
                    {"field": "authorization", "message": "till T01 is suspended by head office"}
                ],
            }
            assert (await post_sale(TOKEN_T02, "T02")).status_code == 202  # the others go on
            status = await http.post(
                "/v1/tills/status", json={"conditions": []}, headers=bearer(TOKEN_T01)
            )
            document = poslog_receipt(
                sale := sale_json(store, terminal_id="T01"), payment_json(sale)
            )
            poslog = await http.post(
                "/v1/poslog",
                content=document,
                headers={**bearer(TOKEN_T01), "content-type": "application/xml"},
            )
            prices = await http.get("/v1/items/SKU-MILK-1L", headers=bearer(TOKEN_T01))
            assert [status.status_code, poslog.status_code, prices.status_code] == [403] * 3
        report = await reports.next(
            lambda r: (till_of(r, "T01") or {}).get("refused_while_suspended", 0) >= 5
        )
        till = till_of(report, "T01")
        assert till is not None and till["lifecycle"] == "SUSPENDED"
        applied = applied_of(report, "till/T01")
        assert applied is not None
        assert (applied["version"], applied["applied"], applied["error"]) == (1, True, None)
    edge.kill()  # a pulled plug: nothing written at a stop

    # The store's uplink is down and the edge restarts: its copy still says suspended, from
    # its first request and after its reading of the topic has failed and been retried.
    offline = edge_factory(
        store, bootstrap=f"127.0.0.1:{free_port()}", workdir=edge.workdir, args=args, env=ENV
    )
    async with httpx.AsyncClient(base_url=offline.url, timeout=30) as http:
        for _ in range(2):
            mine = dumps(sale_json(store, terminal_id="T01"))
            again = await http.post("/v1/events", content=mine, headers=bearer(TOKEN_T01))
            assert again.status_code == 403 and "suspended by head office" in again.text
            other = dumps(sale_json(store, terminal_id="T02"))
            taken = await http.post("/v1/events", content=other, headers=bearer(TOKEN_T02))
            assert taken.status_code == 202
            await asyncio.sleep(4)  # the desired state's reading fails meanwhile
    assert "desired state not readable" in offline.log()
    offline.kill()

    # Kafka back: the same copy, its applied version reported; head office lifts it.
    async with Reports(settings, codec, store) as reports:
        online = edge_factory(store, workdir=edge.workdir, args=args, env=ENV)
        start = await reports.next(lambda r: r["reason"] == "START")
        till = till_of(start, "T01")
        assert till is not None and till["lifecycle"] == "SUSPENDED"
        assert (applied_of(start, "till/T01") or {}).get("version") == 1
        async with httpx.AsyncClient(base_url=online.url, timeout=30) as http:
            mine = dumps(sale_json(store, terminal_id="T01"))
            again = await http.post("/v1/events", content=mine, headers=bearer(TOKEN_T01))
            assert again.status_code == 403
            record = desired(store, "till/T01", 2, till={"lifecycle": "ACTIVE"})
            await publish(settings, codec, record, store, "till/T01")

            async def served() -> bool:
                fresh = dumps(sale_json(store, terminal_id="T01"))
                answer = await http.post("/v1/events", content=fresh, headers=bearer(TOKEN_T01))
                return answer.status_code == 202

            took = await within(5, served)
            print(f"suspension lifted to served: {took:.2f}s")
    online.stop()


async def test_a_till_suspended_then_the_uplink_lost_is_refused_through_a_crash_and_restart(
    kafka_libs: Path, codec: AvroCodec, tmp_path: Path
) -> None:
    """The store reaches a broker of its own through a proxy (its uplink), head office
    directly: the till is suspended, the uplink goes down while the edge runs, the edge is
    killed and started again with the uplink still down; back up, head office lifts it."""
    port, store_port, uplink_port, controller = free_port(), free_port(), free_port(), free_port()
    broker = LocalKafka(
        data_dir=tmp_path / "kafka",
        libs=kafka_libs,
        port=port,
        controller_port=controller,
        extra_config={
            "listeners": f"PLAINTEXT://127.0.0.1:{port},STORE://127.0.0.1:{store_port},"
            f"CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},STORE://127.0.0.1:{uplink_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,STORE:PLAINTEXT,"
            "CONTROLLER:PLAINTEXT",
        },
    )
    broker.start()
    uplink = Proxy(uplink_port, store_port)
    uplink.start()
    hq = Settings(kafka_bootstrap_servers=broker.bootstrap, topic_partitions=3)
    store = store_id("S-DES-CUT")
    work = tmp_path / "edge"
    work.mkdir()
    args = ["--tokens", str(tokens_file(tmp_path))]
    edges: list[EdgeProcess] = []

    def edge_process() -> EdgeProcess:
        edges.append(EdgeProcess(store, f"127.0.0.1:{uplink_port}", work, args, ENV))
        return edges[-1].start()

    async def answer(edge: EdgeProcess, token: str, till: str) -> int:
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
            body = dumps(sale_json(store, terminal_id=till))
            return (await http.post("/v1/events", content=body, headers=bearer(token))).status_code

    try:
        await create_topics(hq)
        async with Reports(hq, codec, store) as reports:
            edge = edge_process()
            await reports.next(lambda r: r["reason"] == "START", timeout=60)
            assert await answer(edge, TOKEN_T01, "T01") == 202
            record = desired(store, "till/T01", 1, till={"lifecycle": "SUSPENDED"})
            await publish(hq, codec, record, store, "till/T01")

            async def refused() -> bool:
                return await answer(edge, TOKEN_T01, "T01") == 403

            took = await within(5, refused)
            print(f"\ndesired state published to refusal (own broker): {took:.2f}s")
            await reports.next(lambda r: applied_of(r, "till/T01") is not None)

        uplink.cut()

        async def cut_off() -> bool:
            assert await answer(edge, TOKEN_T02, "T02") == 202  # taken, into the outbox
            ready = httpx.get(f"{edge.url}/readyz", timeout=10).json()
            return ready["kafka_up"] is False

        await within(60, cut_off)
        assert await answer(edge, TOKEN_T01, "T01") == 403
        edge.kill()  # a pulled plug, the uplink still down

        edge = edge_process()
        assert await answer(edge, TOKEN_T01, "T01") == 403  # from its first request
        assert await answer(edge, TOKEN_T02, "T02") == 202
        ready = httpx.get(f"{edge.url}/readyz", timeout=10).json()
        assert ready["kafka_up"] is False and ready["outbox"]["depth"] >= 1

        # Head office lifts it while the store is away: refused until the uplink returns.
        record = desired(store, "till/T01", 2, till={"lifecycle": "ACTIVE"})
        await publish(hq, codec, record, store, "till/T01")
        await asyncio.sleep(2)
        assert await answer(edge, TOKEN_T01, "T01") == 403
        async with Reports(hq, codec, store) as reports:
            uplink.restore()
            lifted = await within(60, lambda: _served(answer, edge))
            print(f"uplink back to the suspension lifted: {lifted:.2f}s")
            report = await reports.next(
                lambda r: (applied_of(r, "till/T01") or {}).get("version") == 2, timeout=60
            )
            till = till_of(report, "T01")
            assert till is not None and till["lifecycle"] == "ACTIVE"
    finally:
        for edge in edges:
            edge.kill()
        uplink.close()
        broker.stop()


async def _served(
    answer: Callable[[EdgeProcess, str, str], Awaitable[int]], edge: EdgeProcess
) -> bool:
    return await answer(edge, TOKEN_T01, "T01") == 202


async def test_without_tokens_a_decommissioned_tills_events_are_refused_until_deleted(
    edge_factory: Any, settings: Settings, codec: AvroCodec
) -> None:
    store = store_id("S-DES-OPEN")
    async with Reports(settings, codec, store) as reports:
        edge = edge_factory(store, env=ENV)
        await reports.next(lambda r: r["reason"] == "START")
        record = desired(store, "till/T05", 3, till={"lifecycle": "DECOMMISSIONED"})
        await publish(settings, codec, record, store, "till/T05")
        report = await reports.next(lambda r: applied_of(r, "till/T05") is not None)
        till = till_of(report, "T05")  # named by head office, never seen: reported
        assert till is not None and till["lifecycle"] == "DECOMMISSIONED"
        assert till["last_seen_at"] is None
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
            both = [sale_json(store, terminal_id="T06"), sale_json(store, terminal_id="T05")]
            answer = await http.post("/v1/events", content=dumps(both))
            assert answer.status_code == 403
            assert answer.json()["error"] == "decommissioned"
            assert answer.json()["problems"] == [
                {
                    "field": "events[1].terminal_id",
                    "message": "till T05 is decommissioned by head office",
                }
            ]
            sale = sale_json(store, terminal_id="T05")
            poslog = await http.post(
                "/v1/poslog",
                content=poslog_receipt(sale, payment_json(sale)),
                headers={"content-type": "application/xml"},
            )
            assert poslog.status_code == 403
            assert poslog.json()["problems"][0]["field"].endswith(".terminal_id")
            status = await http.post("/v1/tills/status", json={"till_id": "T05", "conditions": []})
            assert status.status_code == 403 and status.json()["error"] == "decommissioned"
            alone = await http.post("/v1/events", content=dumps(both[0]))
            assert alone.status_code == 202

            await publish(settings, codec, None, store, "till/T05")  # head office's tombstone

            async def taken() -> bool:
                fresh = dumps(sale_json(store, terminal_id="T05"))
                return (await http.post("/v1/events", content=fresh)).status_code == 202

            await within(5, taken)
        back = await reports.next(lambda r: applied_of(r, "till/T05") is None)
        till = till_of(back, "T05")
        assert till is not None and till["lifecycle"] == "ACTIVE"


async def test_a_rotated_token_is_taken_and_the_old_one_until_its_stated_time(
    edge_factory: Any, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = store_id("S-DES-ROT")
    async with Reports(settings, codec, store) as reports:
        edge = edge_factory(store, args=["--tokens", str(tokens_file(tmp_path))], env=ENV)
        await reports.next(lambda r: r["reason"] == "START")
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:

            async def status(token: str) -> int:
                answer = await http.post(
                    "/v1/tills/status", json={"conditions": []}, headers=bearer(token)
                )
                return answer.status_code

            assert await status(TOKEN_NEW) == 401
            until = datetime.now(UTC) + timedelta(seconds=6)
            till = {"token_sha256": sha256_hex(TOKEN_NEW), "previous_token_until": until}
            await publish(
                settings, codec, desired(store, "till/T01", 1, till=till), store, "till/T01"
            )

            async def new_taken() -> bool:
                return await status(TOKEN_NEW) == 200

            await within(5, new_taken)
            assert datetime.now(UTC) < until
            assert await status(TOKEN_T01) == 200  # the overlap: both taken
            assert await status(TOKEN_T02) == 200  # the other tills untouched

            async def old_refused() -> bool:
                return await status(TOKEN_T01) == 401

            await within(10, old_refused)
            late = (datetime.now(UTC) - until).total_seconds()
            print(f"\nold token refused {late:.2f}s after its stated time")
            assert 0 <= late < 1
            assert await status(TOKEN_NEW) == 200

            # Again, without an overlap: the token before it is refused at once.
            till = {"token_sha256": sha256_hex(TOKEN_NEWER)}
            await publish(
                settings, codec, desired(store, "till/T01", 2, till=till), store, "till/T01"
            )

            async def newer_only() -> bool:
                return await status(TOKEN_NEWER) == 200 and await status(TOKEN_NEW) == 401

            await within(5, newer_only)
        report = await reports.next(lambda r: (applied_of(r, "till/T01") or {}).get("version") == 2)
        applied = applied_of(report, "till/T01")
        assert applied is not None and applied["applied"] is True
    everything = b"".join(a.value for a in reports.arrived)
    for secret in (TOKEN_NEW, TOKEN_NEWER, sha256_hex(TOKEN_NEW), sha256_hex(TOKEN_NEWER)):
        assert secret.encode() not in everything and secret not in edge.log()
    edge.kill()

    # Restarted with the store offline: the rotation holds, from the store's copy.
    offline = edge_factory(
        store,
        bootstrap=f"127.0.0.1:{free_port()}",
        workdir=edge.workdir,
        args=["--tokens", str(tokens_file(tmp_path))],
        env=ENV,
    )
    async with httpx.AsyncClient(base_url=offline.url, timeout=30) as http:
        statuses = []
        for token in (TOKEN_NEWER, TOKEN_NEW, TOKEN_T01, TOKEN_T02):
            answer = await http.post(
                "/v1/tills/status", json={"conditions": []}, headers=bearer(token)
            )
            statuses.append(answer.status_code)
    assert statuses == [200, 401, 401, 200]
    offline.kill()


async def test_device_settings_refused_for_a_missing_port_then_applied_without_a_restart(
    edge_factory: Any, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = store_id("S-DES-DEV")
    first, second = FakePort(tmp_path / "scanner-a"), FakePort(tmp_path / "scanner-b")
    devices = tmp_path / "devices.toml"
    devices.write_text(f'[devices.dock-scanner]\nprotocol = "scanner"\nport = "{first.link}"\n')
    async with Reports(settings, codec, store) as reports:
        edge = edge_factory(store, args=["--devices", str(devices)], env=ENV)
        start = await reports.next(lambda r: r["reason"] == "START")
        pid = edge.proc.pid

        missing = f"/dev/ttyUSB-nowhere-{os.getpid()}"
        table = {"protocol": "scanner", "port": missing, "terminator": "CR"}
        record = desired(
            store, "device/dock-scanner", 1, device={"settings_json": json.dumps(table)}
        )
        await publish(settings, codec, record, store, "device/dock-scanner")
        refused = await reports.next(lambda r: applied_of(r, "device/dock-scanner") is not None)
        applied = applied_of(refused, "device/dock-scanner")
        assert applied is not None
        assert (applied["version"], applied["applied"]) == (1, False)
        assert applied["error"] == f"port {missing} does not exist"
        scanner = device_of(refused, "dock-scanner")
        assert scanner["port"] == str(first.link) and scanner["connected"]  # the old settings

        table = {"protocol": "scanner", "port": str(second.link), "terminator": "CR"}
        record = desired(
            store, "device/dock-scanner", 2, device={"settings_json": json.dumps(table)}
        )
        moved_at = time.monotonic()
        await publish(settings, codec, record, store, "device/dock-scanner")
        moved = await reports.next_arrived(
            lambda r: (
                device_of(r, "dock-scanner")["port"] == str(second.link)
                and device_of(r, "dock-scanner")["connected"]
            )
        )
        print(
            f"\ndevice settings published to reported reconnected: {moved.seen_at - moved_at:.2f}s"
        )
        applied = applied_of(moved.record, "device/dock-scanner")
        assert applied is not None and (applied["version"], applied["applied"]) == (2, True)
        second.send(b"]E04006381333931\r")
        scanned = await reports.next(lambda r: device_of(r, "dock-scanner")["frames"] >= 1)
        assert device_of(scanned, "dock-scanner")["last_frame_at"] is not None
        assert edge.proc.pid == pid and scanned["edge"]["started_at"] == start["edge"]["started_at"]

        await publish(settings, codec, None, store, "device/dock-scanner")  # the file's again
        back = await reports.next(
            lambda r: (
                device_of(r, "dock-scanner")["port"] == str(first.link)
                and applied_of(r, "device/dock-scanner") is None
            )
        )
        assert device_of(back, "dock-scanner")["port"] == str(first.link)


async def test_edge_settings_log_level_and_window_change_while_it_runs(
    edge_factory: Any, settings: Settings, codec: AvroCodec
) -> None:
    store = store_id("S-DES-EDGE")
    ahead = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    async with Reports(settings, codec, store) as reports:
        edge = edge_factory(store, env=ENV)
        await reports.next(lambda r: r["reason"] == "START")
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:

            async def future_sale() -> int:
                sale = sale_json(store, occurred_at=ahead)
                return (await http.post("/v1/events", content=dumps(sale))).status_code

            assert await future_sale() == 202  # 10 minutes ahead: inside the hour allowed
            edge_settings = {"log_level": "DEBUG", "max_future_seconds": 60}
            await publish(
                settings, codec, desired(store, "edge", 1, edge=edge_settings), store, "edge"
            )
            changed = await reports.next(lambda r: r["edge"]["max_future_seconds"] == 60)
            assert changed["edge"]["log_level"] == "DEBUG"
            assert changed["edge"]["max_event_age_seconds"] == 30 * 86400  # the edge's own
            refused = await http.post(
                "/v1/events", content=dumps(sale_json(store, occurred_at=ahead))
            )
            assert refused.status_code == 422
            assert refused.json()["problems"][0]["field"] == "occurred_at"
            await reports.next(lambda r: r["reason"] == "HEARTBEAT")
            assert "report sent" in edge.log()  # a DEBUG line: the loggers' level changed

            wrong = {"log_level": "LOUD", "max_future_seconds": 5}
            await publish(settings, codec, desired(store, "edge", 2, edge=wrong), store, "edge")
            report = await reports.next(lambda r: (applied_of(r, "edge") or {}).get("version") == 2)
            applied = applied_of(report, "edge")
            assert applied is not None and applied["applied"] is False
            assert "log_level" in str(applied["error"])
            assert report["edge"]["max_future_seconds"] == 60  # what was in force stays

            await publish(settings, codec, None, store, "edge")
            own = await reports.next(lambda r: applied_of(r, "edge") is None)
            assert (own["edge"]["log_level"], own["edge"]["max_future_seconds"]) == ("INFO", 3600)
            assert await future_sale() == 202
        lines = edge.log().count("report sent")
        await reports.next(lambda r: r["reason"] == "HEARTBEAT")
        await reports.next(lambda r: r["reason"] == "HEARTBEAT")
        assert edge.log().count("report sent") == lines  # INFO again: no DEBUG line
