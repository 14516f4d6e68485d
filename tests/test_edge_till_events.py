"""Till and store-day events through real edges onto the real broker: HTTP and POSLog.

Sign-on, float, pickups, declarations... arrive decoded on ``tillstream.till-events``,
keyed by store and co-partitioned with the store's sales; refusals name the field; the
token rules of sales hold; ``tillstream tail`` shows them.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.edge_support import dumps, live_poslog, read_topic, sale_json
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_admin
from tillstream.core.settings import Settings
from tillstream.core.topics import SALES, TILL_EVENTS
from tillstream.dev.processes import run_tillstream
from tillstream_edge.poslog import parse_poslog

pytestmark = pytest.mark.usefixtures("kafka_topics")
DATA = Path(__file__).parent / "data" / "poslog"
CARD = "4111 1111 1111 1111"  # a test PAN (Luhn-valid)


def till_event(store: str, kind: str, **changes: Any) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(minutes=5)
    event: dict[str, Any] = {
        "type": "till_event",
        "event_id": str(uuid.uuid4()),
        "store_id": store,
        "terminal_id": "T01",
        "kind": kind,
        "sequence_number": str(time.time_ns() % 10**9),
        "operator_id": "C42",
        "business_day": at.date().isoformat(),
        "occurred_at": at.isoformat(),
        "utc_offset_minutes": 60,
    }
    return {**event, **changes}


def cash(amount: str) -> dict[str, Any]:
    return {"currency": "EUR", "tenders": [{"tender": "CASH", "amount": amount}]}


def outbox_ids(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM events")}


async def test_http_till_events_arrive_decoded_co_partitioned_and_once(
    edge_factory: Any, settings: Settings, codec: AvroCodec
) -> None:
    store = "S-TILL-HTTP"
    events = [
        till_event(store, "SIGN_ON"),
        till_event(store, "OPENING_FLOAT", **cash("150.00")),
        till_event(store, "NO_SALE", reason="CHANGE"),
        till_event(store, "PICKUP", **cash("300.0050")),
        till_event(
            store,
            "TENDER_DECLARATION",
            currency="EUR",
            tenders=[{"tender": "CASH", "amount": "212.35"}, {"tender": "CARD", "amount": "0"}],
        ),
        till_event(store, "STORE_DAY_CLOSE", terminal_id="T01", operator_id=None),
    ]
    sale = sale_json(store, terminal_id="T01")
    edge = edge_factory(store)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        first = await http.post("/v1/events", content=dumps([*events, sale]))
        again = await http.post("/v1/events", content=dumps(events))  # a till's retry
        assert first.status_code == 202, first.text
        assert again.status_code == 202, again.text
    got = await read_topic(settings, codec, TILL_EVENTS.name, store, len(events))
    records = [r for _, r in got]
    assert [str(r["event_id"]) for r in records] == [e["event_id"] for e in events]  # once
    by_kind = {r["kind"]: r for r in records}
    declared = by_kind["TENDER_DECLARATION"]
    assert declared["tenders"] == [
        {"tender": "CASH", "amount": Decimal("212.3500")},
        {"tender": "CARD", "amount": Decimal("0.0000")},
    ]
    assert by_kind["PICKUP"]["tenders"][0]["amount"] == Decimal("300.0050")
    assert by_kind["SIGN_ON"]["business_day"] == date.fromisoformat(events[0]["business_day"])
    assert by_kind["SIGN_ON"]["utc_offset_minutes"] == 60
    assert by_kind["SIGN_ON"]["occurred_at"].tzinfo is not None
    assert by_kind["SIGN_ON"]["currency"] is None and by_kind["SIGN_ON"]["tenders"] == []
    assert by_kind["NO_SALE"]["reason"] == "CHANGE"
    assert by_kind["STORE_DAY_CLOSE"]["operator_id"] is None
    assert {r["source"] for r in records} == {"api"}
    # Co-partitioned: the store's till events and sales share a partition number.
    [(sale_partition, _)] = await read_topic(settings, codec, SALES.name, store, 1)
    assert {p for p, _ in got} == {sale_partition}


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"operator_id": CARD}, "operator_id", "card_number"),
        ({"reason": f"card {CARD}"}, "reason", "card_number"),
        ({"sequence_number": CARD.replace(" ", "")}, "sequence_number", "card_number"),
        (cash("-5.00"), "tenders[0].amount", "invalid"),
        (cash("1.00001"), "tenders[0].amount", "invalid"),
        ({"tenders": []}, "tenders", "rule"),
        ({"currency": None}, "currency", "rule"),
        ({"kind": "FLOAT"}, "kind", "invalid"),
        ({"occurred_at": "2024-03-05T10:00:00"}, "occurred_at", "invalid"),
        (
            {"tenders": [{"tender": "CASH", "amount": "1"}, {"tender": "CASH", "amount": "2"}]},
            "tenders[1].tender",
            "rule",
        ),
    ],
)
async def test_http_refusals_name_the_field_and_store_nothing(
    edge_factory: Any, change: dict[str, Any], field: str, reason: str
) -> None:
    store = "S-TILL-BAD"
    event = {**till_event(store, "PICKUP", **cash("20.00")), **change}
    edge = edge_factory(store)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        response = await http.post("/v1/events", content=dumps(event))
    assert response.status_code == 422, response.text
    assert response.json()["error"] == reason
    fields = [p["field"] for p in response.json()["problems"]]
    assert field in fields, fields
    assert CARD not in response.text and CARD.replace(" ", "") not in response.text
    assert outbox_ids(edge.outbox) == set()


async def test_amounts_must_match_the_kind(edge_factory: Any) -> None:
    store = "S-TILL-KIND"
    edge = edge_factory(store)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        money_on_sign_on = await http.post(
            "/v1/events", content=dumps(till_event(store, "SIGN_ON", **cash("1.00")))
        )
        close_with_expected = await http.post(
            "/v1/events", content=dumps(till_event(store, "TILL_CLOSE", **cash("403.60")))
        )
    assert money_on_sign_on.status_code == 422, money_on_sign_on.text
    assert money_on_sign_on.json()["problems"] == [
        {"field": "tenders", "message": "a SIGN_ON event carries no amounts; send an empty list"}
    ]
    assert close_with_expected.status_code == 202, close_with_expected.text


async def test_a_tills_token_posts_its_own_till_events_only(
    edge_factory: Any, tmp_path: Path
) -> None:
    store = "S-TILL-AUTH"
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        '[tills]\nT01 = "till-T01-secret-token-1a2b3c"\nT02 = "till-T02-secret-token-4d5e6f"\n'
        '[stock_only]\nBACKOFFICE = "backoffice-secret-token-7a8b9c"\n'
    )
    edge = edge_factory(store, args=["--tokens", str(tokens)])
    own = till_event(store, "SIGN_ON")
    other = till_event(store, "SIGN_ON", terminal_id="T02")
    office = till_event(store, "SIGN_ON", terminal_id="BACKOFFICE")
    t01 = {"authorization": "Bearer till-T01-secret-token-1a2b3c"}
    backoffice = {"authorization": "Bearer backoffice-secret-token-7a8b9c"}
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        anonymous = await http.post("/v1/events", content=dumps(own))
        foreign = await http.post("/v1/events", content=dumps(other), headers=t01)
        stock_only = await http.post("/v1/events", content=dumps(office), headers=backoffice)
        ok = await http.post("/v1/events", content=dumps(own), headers=t01)
    assert anonymous.status_code == 401
    assert foreign.status_code == 403, foreign.text
    assert foreign.json()["problems"][0]["field"] == "terminal_id"
    assert stock_only.status_code == 403, stock_only.text
    assert "stock_only" in stock_only.json()["problems"][0]["message"]
    assert ok.status_code == 202, ok.text
    assert outbox_ids(edge.outbox) == {own["event_id"]}


def _poslog_of(name: str, store_tag: str, store: str) -> bytes:
    return live_poslog((DATA / name).read_text().replace(store_tag, store)).encode()


async def test_poslog_control_transactions_of_ncr_and_v6_become_till_events(
    edge_factory: Any, settings: Settings, codec: AvroCodec
) -> None:
    store = "S-TILL-POSLOG"
    ncr = _poslog_of("control_ncr_21.xml", "<RetailStoreID>9<", f"<RetailStoreID>{store}<")
    ncr = ncr.replace(b">USD<", b">EUR<")  # one edge, one store currency (EUR by default)
    v6 = _poslog_of("control_v6.xml", ">0815</UnitID>", f">{store}</UnitID>")
    expected = [str(r["event_id"]) for doc in (ncr, v6) for _, r in parse_poslog(doc).events]
    assert len(expected) == 16
    edge = edge_factory(store)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        for document in (ncr, v6, ncr):  # the NCR file resent: the same events, once
            response = await http.post("/v1/poslog", content=document)
            assert response.status_code == 202, response.text
    got = [r for _, r in await read_topic(settings, codec, TILL_EVENTS.name, store, 16)]
    assert [str(r["event_id"]) for r in got] == expected
    kinds = [r["kind"] for r in got]
    assert kinds == [
        "SIGN_ON", "LOAN", "NO_SALE", "PICKUP", "PAID_OUT", "TENDER_DECLARATION",
        "TILL_CLOSE", "SIGN_OFF",
        "STORE_DAY_OPEN", "TILL_OPEN", "OPENING_FLOAT", "PAID_IN", "PICKUP",
        "TENDER_DECLARATION", "TILL_CLOSE", "STORE_DAY_CLOSE",
    ]  # fmt: skip
    pickup = got[3]
    assert (pickup["terminal_id"], pickup["operator_id"], pickup["sequence_number"]) == (
        "34",
        "94",
        "203",
    )
    assert pickup["tenders"] == [{"tender": "CASH", "amount": Decimal("300.0000")}]
    assert pickup["currency"] == "EUR" and pickup["source"] == "poslog"
    store_close = got[-1]  # 00:15 local: still the business day it closes
    assert store_close["utc_offset_minutes"] == 60
    local_day = (store_close["occurred_at"] + timedelta(minutes=60)).date()
    assert store_close["business_day"] == local_day - timedelta(days=1)


async def test_tail_shows_till_events(
    edge_factory: Any, settings: Settings, codec: AvroCodec
) -> None:
    store = f"S-TILL-TAIL-{time.time_ns() % 100000}"
    event = till_event(store, "PAID_OUT", reason="WINDOW-CLEANING", **cash("12.40"))
    edge = edge_factory(store)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        assert (await http.post("/v1/events", content=dumps(event))).status_code == 202
    await read_topic(settings, codec, TILL_EVENTS.name, store, 1)  # published
    result = run_tillstream(
        "tail",
        TILL_EVENTS.name,
        "--from-beginning",
        "--json",
        "--idle-timeout",
        "3",
        env={"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers},
    )
    assert result.returncode == 0, result.stderr
    mine = [json.loads(line) for line in result.stdout.splitlines()]
    mine = [line for line in mine if line["key"] == store]
    assert [line["event"] for line in mine] == ["till_event"]
    value = mine[0]["value"]
    assert (value["kind"], value["reason"]) == ("PAID_OUT", "WINDOW-CLEANING")
    assert value["tenders"] == [{"tender": "CASH", "amount": "12.4000"}]


async def test_till_events_topic_is_created_co_partitioned_with_sales(settings: Settings) -> None:
    admin = make_admin(settings)  # the topics as `tillstream topics create` made them
    await admin.start()
    try:
        described = await admin.describe_topics([TILL_EVENTS.name, SALES.name])
    finally:
        await admin.close()
    counts = {t["topic"]: len(t["partitions"]) for t in described}
    assert counts == {TILL_EVENTS.name: settings.topic_partitions, SALES.name: counts[SALES.name]}
    assert counts[SALES.name] == settings.topic_partitions


async def test_poslog_till_events_need_the_token_of_their_workstation(
    edge_factory: Any, tmp_path: Path
) -> None:
    store = "S-TILL-PTOK"
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        '[tills]\n34 = "till-34-secret-token-0a1b2c"\nT01 = "till-T01-secret-1a2b3c"\n'
    )
    ncr = _poslog_of("control_ncr_21.xml", "<RetailStoreID>9<", f"<RetailStoreID>{store}<")
    ncr = ncr.replace(b">USD<", b">EUR<")  # the store's currency (EUR by default)
    edge = edge_factory(store, args=["--tokens", str(tokens)])
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        other = await http.post(
            "/v1/poslog", content=ncr, headers={"authorization": "Bearer till-T01-secret-1a2b3c"}
        )
        own = await http.post(
            "/v1/poslog",
            content=ncr,
            headers={"authorization": "Bearer till-34-secret-token-0a1b2c"},
        )
    assert other.status_code == 403, other.text
    assert other.json()["problems"][0]["field"] == "transaction 200 (#1).terminal_id"
    assert own.status_code == 202, own.text
    assert own.json()["accepted"] == 8


async def test_a_poslog_pickup_without_amount_is_set_aside_naming_it(
    edge_factory: Any,
) -> None:
    store = "S-TILL-PBAD"
    v6 = (DATA / "control_v6.xml").read_text().replace(">0815</UnitID>", f">{store}</UnitID>")
    broken = re.sub(r"<TenderPickup>.*?</TenderPickup>", "<TenderPickup/>", v6)
    edge = edge_factory(store)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        response = await http.post("/v1/poslog", content=live_poslog(broken).encode())
    assert response.status_code == 202, response.text
    [kept] = response.json()["set_aside"]
    assert (kept["sequence_number"], kept["cause"]) == ("7005", "rule")
    assert "transaction 7005 (#5).tenders" in kept["reason"]
    assert "needs at least one tender amount" in kept["reason"]
    # The other transactions of the till-day are not held back.
    assert len(outbox_ids(edge.outbox)) == response.json()["accepted"] > 0
