"""The edge refuses a business day that is no day of its event (issue 22), on every channel,
by the one rule of ``tillstream/core/rules.py``: the store-local date of ``occurred_at``, give
or take a day. A sale today with a business day a month ahead, a till event and a post-void
a week off, over HTTP (422, the field named); a POSLog transaction whose BusinessDayDate lags
its time by a week (set aside, naming the field). A night shift's sale after midnight, on
the day before, is taken on both."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.edge_support import dumps, payment_json, poslog_receipt, sale_json, void_json

pytestmark = pytest.mark.usefixtures("kafka_topics")
RULE = "must be the store-local date of occurred_at (occurred_at + utc_offset_minutes)"


def problems(answer: httpx.Response) -> dict[str, str]:
    return {p["field"]: p["message"] for p in answer.json()["problems"]}


def outbox_ids(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM events")}


def receipt(store: str, at: datetime, day: date, number: str) -> dict[str, Any]:
    """A sale at ``at`` (a store at UTC+01:00) on business ``day``."""
    return sale_json(
        store,
        event_id=str(uuid.uuid4()),
        receipt_number=number,
        occurred_at=at.isoformat(),
        business_day=day.isoformat(),
    )


def store_day_open(store: str, at: datetime, day: date) -> dict[str, Any]:
    return {
        "type": "till_event",
        "event_id": str(uuid.uuid4()),
        "store_id": store,
        "terminal_id": "BO",
        "kind": "STORE_DAY_OPEN",
        "business_day": day.isoformat(),
        "occurred_at": at.isoformat(),
        "utc_offset_minutes": 60,
    }


async def test_a_business_day_that_is_no_day_of_the_event_is_refused_on_http_and_poslog(
    edge_factory: Any,
) -> None:
    store = f"S-BD-{uuid.uuid4().hex[:6]}"
    edge = edge_factory(store)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    local_day = (now + timedelta(minutes=60)).date()
    ahead = receipt(store, now, local_day + timedelta(days=30), "000001")
    today = receipt(store, now, local_day, "000002")
    night = receipt(store, now, local_day - timedelta(days=1), "000003")  # a night shift
    void = void_json(today, receipt_number="000004") | {
        "business_day": (local_day - timedelta(days=7)).isoformat()
    }
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        refused = await http.post("/v1/events", content=dumps(ahead))
        assert refused.status_code == 422, refused.text
        assert list(problems(refused)) == ["business_day"]
        assert RULE in problems(refused)["business_day"]
        assert ahead["business_day"] not in refused.text  # the limit is named, not the value
        batch = await http.post(
            "/v1/events",
            content=dumps([today, store_day_open(store, now, local_day + timedelta(days=2))]),
        )
        assert batch.status_code == 422 and list(problems(batch)) == ["events[1].business_day"]
        voided = await http.post("/v1/events", content=dumps(void))
        assert voided.status_code == 422 and list(problems(voided)) == ["business_day"]
        taken = await http.post(
            "/v1/events",
            content=dumps([today, night, store_day_open(store, now, local_day)]),
        )
        assert taken.status_code == 202, taken.text

        # POSLog: a till whose store-day was never closed writes last week's BusinessDayDate.
        lagging = receipt(store, now, local_day - timedelta(days=7), "000005")
        document = poslog_receipt(lagging, payment_json(lagging))
        answer = await http.post("/v1/poslog", content=document)
        assert answer.status_code == 202, answer.text
        assert answer.json()["accepted"] == 0
        [kept] = answer.json()["set_aside"]
        assert kept["cause"] == "rule" and "business_day" in kept["reason"]
        assert RULE in kept["reason"]
        yesterday = receipt(store, now, local_day - timedelta(days=1), "000006")
        fine = await http.post(
            "/v1/poslog", content=poslog_receipt(yesterday, payment_json(yesterday))
        )
        assert fine.status_code == 202 and fine.json()["accepted"] == 2, fine.text
    stored = outbox_ids(edge.outbox)
    assert ahead["event_id"] not in stored and void["event_id"] not in stored
    assert {today["event_id"], night["event_id"]} <= stored
