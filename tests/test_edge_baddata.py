"""Bad data the edge used to accept and head office could not use, on real edge processes:
times no consumer can store or that are implausible for a live till, totals that disagree
with their lines, quantities a consumer refuses. Each is refused on every channel with a
reason naming the field and the limit, and nothing refused is stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.edge_support import dumps, live_poslog, payment_json, sale_json, stock_json
from tillstream.dev.processes import run_tillstream

pytestmark = pytest.mark.usefixtures("kafka_topics")
DATA = Path(__file__).parent / "data" / "poslog"
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def outbox_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM events")}


def problems(answer: httpx.Response) -> dict[str, str]:
    return {p["field"]: p["message"] for p in answer.json()["problems"]}


def set_aside(answer: httpx.Response) -> list[dict[str, Any]]:
    """A POSLog answer whose every transaction was set aside: 202 (kept at the edge), none
    accepted."""
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["accepted"] == 0 and body["set_aside"], body
    kept: list[dict[str, Any]] = body["set_aside"]
    return kept


async def result_of(folder: Path, name: str) -> dict[str, Any]:
    """A dropped file's result, once it is read."""
    await wait_for(folder / "processed" / f"{name}.result.json")
    record: dict[str, Any] = json.loads((folder / "processed" / f"{name}.result.json").read_text())
    return record


def iso(at: datetime) -> str:
    return at.isoformat()


async def wait_for(path: Path, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(path.exists):
            await asyncio.sleep(0.2)


async def test_times_no_consumer_can_store_or_implausible_for_a_live_till_are_refused(
    edge_factory: Any, tmp_path: Path
) -> None:
    store = "9"  # the NCR sample's store
    folder = tmp_path / "drop"
    folder.mkdir()
    edge = edge_factory(store, args=["--poslog-dir", str(folder)])
    now = datetime.now(UTC)
    good = stock_json(store)
    far_future = sale_json(store, occurred_at="9999-12-31T23:59:59-14:00")
    year_one = payment_json(sale_json(store)) | {"occurred_at": "0001-01-01T00:00:00Z"}
    then = now - timedelta(days=40)
    stale = sale_json(store, occurred_at=iso(then), business_day=then.date().isoformat())
    ahead = stock_json(store, occurred_at=iso(now + timedelta(hours=3)))
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        single = await http.post("/v1/events", content=dumps(far_future))
        assert single.status_code == 422, single.text
        assert "out of range" in problems(single)["occurred_at"]
        assert "0003-01-01T00:00:00Z" in problems(single)["occurred_at"]
        batch = await http.post("/v1/events", content=dumps([good, year_one]))
        assert batch.status_code == 422, batch.text
        assert list(problems(batch)) == ["events[1].occurred_at"]
        old = await http.post("/v1/events", content=dumps(stale))
        assert old.status_code == 422
        assert "30 day(s) in the past" in problems(old)["occurred_at"]
        early = await http.post("/v1/events", content=dumps(ahead))
        assert early.status_code == 422
        assert "1 hour(s) in the future" in problems(early)["occurred_at"]
        # A POSLog journal of 2017 posted live: each transaction set aside, naming itself, the
        # field and the way in for old files.
        archive = set_aside(
            await http.post("/v1/poslog", content=(DATA / "ncr_2x.xml").read_bytes())
        )
        assert [k["sequence_number"] for k in archive] == ["160", "161", "162", "163", "164"]
        for kept in archive:
            assert kept["cause"] == "rule"
            assert f"transaction {kept['sequence_number']} (#" in kept["reason"]
            assert "occurred_at" in kept["reason"] and "tillstream edge import" in kept["reason"]
        assert outbox_ids(edge.outbox) == set()
        assert (await http.post("/v1/events", content=dumps(good))).status_code == 202

    # The drop folder sets such a file aside with its reason; nothing of it is stored.
    year_one_file = _TIME.sub("0001-01-01T00:00:00", live_poslog((DATA / "ncr_2x.xml").read_text()))
    (folder / "year-one.xml").write_text(year_one_file)
    past = time.time() - 10
    os.utime(folder / "year-one.xml", (past, past))
    record = await result_of(folder, "year-one.xml")
    assert record["accepted"] == 0 and len(record["set_aside"]) == 5
    assert all("occurred_at" in k["reason"] for k in record["set_aside"])
    assert any("out of range" in k["reason"] for k in record["set_aside"])
    assert outbox_ids(edge.outbox) == {good["event_id"]}
    # Four JSON requests, then each of the ten transactions set aside by a rule.
    assert edge.metric("tillstream_edge_events_rejected_total", 'reason="rule"') == 14


def test_the_backfill_import_still_takes_old_poslog_files(tmp_path: Path) -> None:
    """`tillstream edge import` is outside the live window: a 2017 journal goes in whole."""
    outbox = tmp_path / "import.db"
    done = run_tillstream(
        "edge", "import", str(DATA / "ncr_2x.xml"),
        "--store", "9", "--outbox", str(outbox), "--no-forward",
        env={"TILLSTREAM_STORE_CURRENCY": "USD"},  # the NCR sample's store sells in dollars
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 file(s) imported (7 events" in done.stdout  # 2 sales, 2 payments, 3 till events
    assert len(outbox_ids(outbox)) == 7


async def test_inconsistent_totals_and_quantities_a_consumer_refuses_are_refused(
    edge_factory: Any, tmp_path: Path
) -> None:
    store = "100"  # the POSLog sample's store
    folder = tmp_path / "drop"
    folder.mkdir()
    edge = edge_factory(store, args=["--poslog-dir", str(folder)])
    absurd = sale_json(store)
    absurd["totals"]["net_amount"] = "-99999999999999.9999"
    count = stock_json(store, quantity_type="COUNT", quantity="-5", reason="COUNTED")
    zero = sale_json(store)
    zero["lines"][1]["quantity"] = "0"
    sample = live_poslog((DATA / "v6_customer_card.xml").read_text())
    wrong_total = sample.replace(
        '"TransactionGrandAmount" CurrencyCode="EUR">35.990<',
        '"TransactionGrandAmount" CurrencyCode="EUR">-99999999999999.990<',
    )
    assert wrong_total != sample
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        net = await http.post("/v1/events", content=dumps(absurd))
        assert net.status_code == 422, net.text
        assert list(problems(net)) == ["totals.net_amount"]
        assert "99999" not in net.text  # the limit is named, the value is not echoed
        negative = await http.post("/v1/events", content=dumps([stock_json(store), count]))
        assert negative.status_code == 422
        assert "cannot be negative" in problems(negative)["events[1].quantity"]
        nothing = await http.post("/v1/events", content=dumps(zero))
        assert nothing.status_code == 422 and "lines[1].quantity" in problems(nothing)
        [journal] = set_aside(await http.post("/v1/poslog", content=wrong_total.encode()))
        assert journal["sequence_number"] == "4711" and "totals.net_amount" in journal["reason"]
        assert "99999" not in journal["reason"]
        no_quantity = sample.replace('"EA">1.0000</Quantity>', '"EA">0.0000</Quantity>')
        assert no_quantity != sample
        [weightless] = set_aside(await http.post("/v1/poslog", content=no_quantity.encode()))
        assert "lines[0].quantity must be positive" in weightless["reason"]
        assert outbox_ids(edge.outbox) == set()
    (folder / "wrong-total.xml").write_text(wrong_total)
    past = time.time() - 10
    os.utime(folder / "wrong-total.xml", (past, past))
    [kept] = (await result_of(folder, "wrong-total.xml"))["set_aside"]
    assert "totals.net_amount" in kept["reason"]
    assert outbox_ids(edge.outbox) == set()
