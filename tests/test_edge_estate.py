"""What every store reports, over the connection it already has: real edge processes, the
session's Kafka broker, serial devices on pseudo-terminals, tills over HTTP.

Reports are read as head office reads them, from ``tillstream.estate-reports``, and decoded
with the schema (``schemas/estate_report/v1.avsc``)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaos.proxy import Proxy
from tests.device_support import MTSICS_IDENTITY, FakePort, Responder, mtsics_answers
from tests.edge_support import dumps, sale_json
from tests.estate_support import HEARTBEAT, Reports, device_of, sha256_hex, till_of
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.dev.ports import free_port

pytestmark = pytest.mark.usefixtures("kafka_topics")

TOKEN_T01 = "till-T01-estate-secret-5d1f0a"
TOKEN_T02 = "till-T02-estate-secret-9c27be"
TOKEN_STORE = "store-estate-secret-44a0e1"
CASHIER = "cashier-8812"
CUSTOMER = "cust-77120"
SOFTWARE = "PosVendor Till/4.2.1 (build 7)"


def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(
        f'[tills]\nT01 = "sha256:{sha256_hex(TOKEN_T01)}"\nT02 = "{TOKEN_T02}"\n'
        f'[store]\nBACKOFFICE = "sha256:{sha256_hex(TOKEN_STORE)}"\n'
    )
    return path


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **headers}


def store_id(prefix: str) -> str:
    return f"{prefix}-{time.time_ns() % 10**8}"


def at(time_: datetime | None) -> datetime:
    """A report's time that must be there."""
    assert time_ is not None
    return time_


async def test_reports_on_start_every_heartbeat_and_stop_with_the_figures_and_no_secret(
    edge_factory: Any, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = store_id("S-EST")
    env = {"TILLSTREAM_EDGE_HEARTBEAT_S": HEARTBEAT, "TILLSTREAM_STORE_TIMEZONE": "Europe/Berlin"}
    args = ["--tokens", str(tokens_file(tmp_path))]
    async with Reports(settings, codec, store) as reports:
        edge = edge_factory(store, args=args, env=env)
        start = await reports.next(lambda r: r["reason"] == "START")
        assert start["store_id"] == store and start["heartbeat_seconds"] == int(HEARTBEAT)
        state = start["edge"]
        assert state["version"] and state["timezone"] == "Europe/Berlin"
        assert datetime.now(UTC) - at(state["started_at"]) < timedelta(minutes=1)
        assert state["log_level"] == "INFO"
        assert (state["max_event_age_seconds"], state["max_future_seconds"]) == (30 * 86400, 3600)
        assert state["outbox_depth"] == 0 and state["oldest_unsent_at"] is None
        assert state["quarantine_depth"] == 0 and state["set_aside_open"] == 0
        assert state["disk_free_bytes"] > 0
        assert start["devices"] == [] and start["tills"] == [] and start["applied"] == []

        sale = sale_json(store, terminal_id="T01", cashier_id=CASHIER, customer_id=CUSTOMER)
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
            answer = await http.post(
                "/v1/events",
                content=dumps(sale),
                headers=bearer(TOKEN_T01, **{"x-till-software": SOFTWARE}),
            )
            assert answer.status_code == 202, answer.text
        seen = await reports.next(
            lambda r: r["edge"]["last_publish_at"] is not None and till_of(r, "T01") is not None
        )
        till = till_of(seen, "T01")
        assert till is not None
        assert till["last_receipt"] == sale["receipt_number"] and till["software"] == SOFTWARE
        assert till["lifecycle"] == "ACTIVE" and till["last_seen_at"] is not None
        assert seen["edge"]["kafka_connected"] and seen["edge"]["outbox_depth"] == 0

        beats = [await reports.next_arrived(lambda r: r["reason"] == "HEARTBEAT")]
        beats.append(await reports.next_arrived(lambda r: r["reason"] == "HEARTBEAT"))
        apart = at(beats[1].record["sent_at"]) - at(beats[0].record["sent_at"])
        assert timedelta(seconds=1.5) <= apart <= timedelta(seconds=3.5)
        # Clock skew: this report's send time against the broker's stamp of the one before.
        skew = beats[1].record["edge"]["clock_skew_ms"]
        assert skew is not None and abs(skew) < 2000
        assert all(a.record["edge_id"] == start["edge_id"] for a in beats)

        assert edge.stop() == 0
        stop = await reports.next(lambda r: r["reason"] == "STOP")
        assert stop["edge_id"] == start["edge_id"]

        again = edge_factory(store, args=args, env=env, workdir=edge.workdir)  # same outbox
        restarted = await reports.next(lambda r: r["reason"] == "START")
        assert restarted["edge_id"] == start["edge_id"]
        assert till_of(restarted, "T01") is not None  # the tills' book kept with the outbox
        again.stop()
    everything = b"".join(a.value for a in reports.arrived)
    for secret in (TOKEN_T01, sha256_hex(TOKEN_T01), CASHIER, CUSTOMER):
        assert secret.encode() not in everything
    assert len(beats[1].value) < 1024  # an edge with one till: a few hundred bytes


async def test_while_kafka_is_away_only_the_latest_report_waits(
    edge_factory: Any, settings: Settings, codec: AvroCodec, kafka_broker: str
) -> None:
    """The store's uplink down (the edge's bootstrap address refuses connections): sales go
    to the outbox, no report is queued; back up, one report says how things are now."""
    store = store_id("S-EST-DOWN")
    uplink = Proxy(free_port(), int(kafka_broker.rsplit(":", 1)[1]))
    uplink.start()
    uplink.cut()
    env = {"TILLSTREAM_EDGE_HEARTBEAT_S": "1"}
    try:
        async with Reports(settings, codec, store) as reports:
            edge = edge_factory(store, bootstrap=f"127.0.0.1:{uplink.listen_port}", env=env)
            sales = [sale_json(store) for _ in range(3)]
            async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
                answer = await http.post("/v1/events", content=dumps(sales))
                assert answer.status_code == 202, answer.text
            await asyncio.sleep(6)  # heartbeats due all along: none can leave
            restored = datetime.now(UTC)
            uplink.restore()
            first = await reports.next(timeout=60)
            # Built when sent: nothing from the outage was queued, and it shows the outbox.
            assert at(first["sent_at"]) >= restored
            assert first["reason"] == "START"  # the strongest held back
            assert first["edge"]["outbox_depth"] == 3
            assert at(first["edge"]["oldest_unsent_at"]) < restored
            later = await reports.next(lambda r: r["edge"]["outbox_depth"] == 0, timeout=60)
            assert later["edge"]["kafka_connected"] and later["edge"]["last_publish_at"]
        assert edge.metric("tillstream_edge_estate_report_failures_total") >= 1
        assert edge.metric("tillstream_edge_estate_reports_total", 'reason="START"') == 1
    finally:
        uplink.close()


async def test_devices_are_reported_unplugged_and_back_and_a_scale_says_what_it_is(
    edge_factory: Any, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = store_id("S-EST-DEV")
    scanner = FakePort(tmp_path / "scanner")
    scale = FakePort(tmp_path / "scale")
    devices = tmp_path / "devices.toml"
    devices.write_text(f"""
[devices.dock-scanner]
protocol = "scanner"
port = "{scanner.link}"
reconnect_initial = 0.1
reconnect_max = 0.2

[devices.dock-scale]
protocol = "mt-sics"
port = "{scale.link}"
poll_interval = 0.3
""")
    responder = Responder(scale, b"\r\n", mtsics_answers(lambda _c: b"S S      0.000 kg\r\n"))
    env = {"TILLSTREAM_EDGE_HEARTBEAT_S": "30"}  # only changes report within the test
    try:
        async with Reports(settings, codec, store) as reports:
            edge_factory(store, args=["--devices", str(devices)], env=env)

            def both_up(r: dict[str, Any]) -> bool:
                return len(r["devices"]) == 2 and all(d["connected"] for d in r["devices"])

            up = await reports.next(
                lambda r: both_up(r) and device_of(r, "dock-scale")["model"] is not None
            )
            weighing = device_of(up, "dock-scale")
            assert (weighing["kind"], weighing["protocol"]) == ("SCALE", "mt-sics")
            assert weighing["model"] == MTSICS_IDENTITY[b"I2"].split(b'"')[1].decode()
            assert weighing["firmware"] == "2.10 10.28.0.493.142"
            assert weighing["serial_number"] == "B443456789"
            reading = device_of(up, "dock-scanner")
            assert (reading["kind"], reading["port"]) == ("SCANNER", str(scanner.link))
            assert reading["model"] is None and reading["scale_status"] is None

            scanner.unplug()
            unplugged = time.monotonic()
            gone = await reports.next_arrived(
                lambda r: not device_of(r, "dock-scanner")["connected"]
            )
            took = gone.seen_at - unplugged
            weighing = device_of(gone.record, "dock-scale")  # polled meanwhile: its state
            assert weighing["scale_status"] == "ok" and weighing["scale_stable"] is True
            assert weighing["scale_zero"] is True and weighing["last_frame_at"] is not None
            assert weighing["frames"] >= 1 and weighing["connected"]
            down = device_of(gone.record, "dock-scanner")
            assert down["disconnected_since"] is not None and down["connected_since"] is None
            assert down["communication_errors"] >= 1
            FakePort(tmp_path / "scanner")  # plugged back
            plugged = time.monotonic()
            back = await reports.next_arrived(lambda r: device_of(r, "dock-scanner")["connected"])
            assert device_of(back.record, "dock-scanner")["disconnected_since"] is None
            returned = back.seen_at - plugged
            print(f"\nunplugged to reported: {took:.2f}s; plugged back: {returned:.2f}s")
            assert took < 5 and returned < 5
    finally:
        await responder.stop()


async def test_till_status_and_software_are_reported_and_bad_bodies_refused_by_field(
    edge_factory: Any, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = store_id("S-EST-TILL")
    env = {"TILLSTREAM_EDGE_HEARTBEAT_S": "30"}
    since = "2026-11-25T10:15:00+01:00"
    status = {
        "conditions": [
            {"code": "printer_paper", "state": "WARNING", "detail": "low", "since": since},
            {"code": "pin_pad", "state": "OK"},
        ]
    }
    async with Reports(settings, codec, store) as reports:
        edge = edge_factory(store, args=["--tokens", str(tokens_file(tmp_path))], env=env)
        await reports.next(lambda r: r["reason"] == "START")
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
            software = {"x-till-software": "Kasse\x7f 9.1\t(de)"}  # trimmed to printable
            answer = await http.post(
                "/v1/tills/status", json=status, headers=bearer(TOKEN_T02, **software)
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"till_id": "T02", "conditions": 2}
            report = await reports.next(lambda r: till_of(r, "T02") is not None)
            till = till_of(report, "T02")
            assert till is not None and till["software"] == "Kasse 9.1 (de)"
            assert till["status_at"] is not None and till["last_seen_at"] is not None
            paper, pin_pad = till["conditions"]
            assert (paper["code"], paper["state"], paper["detail"]) == (
                "printer_paper",
                "WARNING",
                "low",
            )
            assert paper["since"] == datetime.fromisoformat(since)
            assert (pin_pad["code"], pin_pad["state"], pin_pad["since"]) == ("pin_pad", "OK", None)

            cleared = await http.post(
                "/v1/tills/status", json={"conditions": []}, headers=bearer(TOKEN_T02)
            )
            assert cleared.status_code == 200
            await reports.next(lambda r: conditions_of(r, "T02") == [])

            # A card number in the software header (the till's to write): masked.
            carded = {"x-till-software": "Kasse 4111 1111 1111 1111"}
            answer = await http.post(
                "/v1/tills/status", json={"conditions": []}, headers=bearer(TOKEN_T02, **carded)
            )
            assert answer.status_code == 200
            masked = await reports.next(
                lambda r: "****" in str((till_of(r, "T02") or {}).get("software"))
            )
            assert (till_of(masked, "T02") or {})["software"] == "Kasse ************1111"

            refusals = await bad_status_bodies(http)
    assert refusals == EXPECTED_REFUSALS
    assert "4111111111111111" not in edge.log() and TOKEN_T01 not in edge.log()
    everything = b"".join(a.value for a in reports.arrived)
    for secret in (b"4111111111111111", b"4111 1111 1111 1111", TOKEN_T01.encode()):
        assert secret not in everything
    assert TOKEN_T02.encode() not in everything


def conditions_of(report: dict[str, Any], till_id: str) -> list[dict[str, Any]] | None:
    till = till_of(report, till_id)
    return None if till is None else list(till["conditions"])


EXPECTED_REFUSALS = [
    (401, "unauthenticated", "authorization"),
    (415, "unsupported_media_type", "content-type"),
    (413, "too_large", "body"),
    (422, "invalid", "body"),
    (422, "invalid", "conditions[0].code"),
    (422, "invalid", "conditions[0].state"),
    (422, "invalid", "conditions[0].detail"),
    (422, "invalid", "conditions[0].since"),
    (422, "card_number", "conditions[0].detail"),
    (422, "invalid", "conditions"),
    (422, "invalid", "colour"),
    (403, "forbidden", "till_id"),
    (403, "forbidden", "authorization"),
]


async def bad_status_bodies(http: httpx.AsyncClient) -> list[tuple[int, str, str]]:
    """Each bad request once: (status, error, the first field named)."""
    ok = {"code": "printer", "state": "OK"}
    cases: list[tuple[dict[str, str], bytes]] = [
        ({"content-type": "application/json"}, dumps({"conditions": [ok]})),
        ({**bearer(TOKEN_T01), "content-type": "text/plain"}, dumps({"conditions": [ok]})),
        ({**bearer(TOKEN_T01), "content-type": "application/json"}, b" " * 20_000),
        ({**bearer(TOKEN_T01), "content-type": "application/json"}, b"{not json"),
    ]
    for condition in (
        {"code": "Printer Paper", "state": "OK"},
        {"code": "printer", "state": "BROKEN"},
        {"code": "printer", "state": "OK", "detail": "x" * 65},
        {"code": "printer", "state": "OK", "since": "2026-11-25T10:15:00"},
        {"code": "printer", "state": "OK", "detail": "card 4111111111111111"},
    ):
        cases.append(
            (
                {**bearer(TOKEN_T01), "content-type": "application/json"},
                dumps({"conditions": [condition]}),
            )
        )
    json_t01 = {**bearer(TOKEN_T01), "content-type": "application/json"}
    cases += [
        (json_t01, dumps({"conditions": [ok, ok]})),  # a code twice
        (json_t01, dumps({"conditions": [], "colour": "red"})),  # a field it does not know
        (json_t01, dumps({"till_id": "T02", "conditions": []})),  # another till
        ({**bearer(TOKEN_STORE), "content-type": "application/json"}, dumps({"conditions": []})),
    ]
    found = []
    for headers, body in cases:
        answer = await http.post("/v1/tills/status", content=body, headers=headers)
        problems = answer.json()["problems"]
        assert all("4111111111111111" not in p["message"] for p in problems)
        found.append((answer.status_code, answer.json()["error"], problems[0]["field"]))
    return found


async def test_without_tokens_a_till_names_itself(
    edge_factory: Any, settings: Settings, codec: AvroCodec
) -> None:
    store = store_id("S-EST-OPEN")
    async with Reports(settings, codec, store) as reports:
        edge = edge_factory(store, env={"TILLSTREAM_EDGE_HEARTBEAT_S": "30"})
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
            nameless = await http.post("/v1/tills/status", json={"conditions": []})
            assert nameless.status_code == 422
            assert nameless.json()["problems"][0]["field"] == "till_id"
            named = await http.post(
                "/v1/tills/status",
                json={"till_id": "T07", "conditions": [{"code": "drawer", "state": "FAULT"}]},
                headers={"x-till-software": SOFTWARE},
            )
            assert named.status_code == 200, named.text
            # Events without tokens: each event's till (a software header only for one till).
            sales = [sale_json(store, terminal_id="T08", receipt_number=str(n)) for n in (41, 42)]
            posted = await http.post(
                "/v1/events", content=dumps(sales), headers={"x-till-software": SOFTWARE}
            )
            assert posted.status_code == 202
        report = await reports.next(
            lambda r: till_of(r, "T07") is not None and till_of(r, "T08") is not None
        )
    t07, t08 = till_of(report, "T07"), till_of(report, "T08")
    assert t07 is not None and t07["conditions"][0]["state"] == "FAULT"
    assert t07["software"] == SOFTWARE
    assert t08 is not None and t08["last_receipt"] == "42" and t08["software"] == SOFTWARE


def documented_status_example() -> tuple[str, str, dict[str, Any]]:
    """docs/edge.md, "Till status": the body and software of its request, and its answer."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "edge.md").read_text()
    section = doc.split("\n## Till status\n", 1)[1].split("\n## ", 1)[0]
    example = section.split("```sh\n", 1)[1].split("```", 1)[0]
    body = example.split("-d '", 1)[1].split("'", 1)[0]
    software = example.split("-H 'x-till-software: ", 1)[1].split("'", 1)[0]
    return body, software, json.loads(example.strip().splitlines()[-1])


async def test_the_documented_status_example_is_what_the_edge_answers(
    edge_factory: Any, tmp_path: Path
) -> None:
    body, software, documented = documented_status_example()
    edge = edge_factory(store_id("S-EST-DOC"), args=["--tokens", str(tokens_file(tmp_path))])
    headers = {"content-type": "application/json", "x-till-software": software}
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        answer = await http.post(
            "/v1/tills/status", content=body.encode(), headers=bearer(TOKEN_T01, **headers)
        )
    assert answer.status_code == 200
    assert answer.json() == documented
