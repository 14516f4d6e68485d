"""Post-voids end to end: a till posts a sale and its post-void to a real edge over HTTP, the
edge publishes them to the real broker, and the ERP, CRM, analytics and sales audit
services (as tasks, on SQLite with analytics on DuckDB, and on a real PostgreSQL) end up as
if the sale had never been rung up, whichever they read first; the audit shows the
post-void."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.consumer_support import running, scalar, wait_until
from tests.edge_support import (
    dumps,
    payment_json,
    poslog_post_void,
    poslog_receipt,
    sale_json,
    stock_json,
    void_json,
)
from tillstream.core.settings import Settings
from tillstream_consumers.analytics import Analytics, daily_summary
from tillstream_consumers.audit import SalesAudit, queries
from tillstream_consumers.crm import CrmProfiles, load_profile
from tillstream_consumers.erp import ErpInventory
from tillstream_consumers.erp.queries import stock_levels
from tillstream_consumers.runtime.api import Consumer
from tillstream_consumers.runtime.db import Database
from tillstream_edge.poslog import parse_poslog

pytestmark = pytest.mark.usefixtures("kafka_topics")
SERVICES = {"erp": ErpInventory, "crm": CrmProfiles, "analytics": Analytics, "audit": SalesAudit}
APPLIED = {  # has the service applied this sale (its own table, by the sale's event id)?
    "erp": "SELECT COUNT(*) FROM erp_ledger WHERE event_id = ?",
    "crm": "SELECT COUNT(*) FROM crm_sales WHERE event_id = ?",
    "analytics": "SELECT COUNT(*) FROM an_sale_days WHERE sale_event_id = ?",
    "audit": "SELECT COUNT(*) FROM audit_transactions WHERE event_id = ?",
}
VOIDED = {  # has it read the post-void of this sale?
    "erp": "SELECT COUNT(*) FROM erp_voids WHERE voided_event_id = ?",
    "crm": "SELECT COUNT(*) FROM crm_voids WHERE voided_event_id = ?",
    "analytics": "SELECT COUNT(*) FROM an_voids WHERE voided_event_id = ?",
    "audit": "SELECT COUNT(*) FROM audit_voids WHERE voided_event_id = ?",
}


class Till:
    """One store's till: its receipts as JSON, numbered."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.customer = f"C-{uuid.uuid4().hex[:8]}"
        self.number = 0

    def _next(self) -> str:
        self.number += 1
        return f"{self.number:06d}"

    def receipt(self) -> list[dict[str, Any]]:
        """A sale (the sample basket: net 2.08) and its card payment."""
        sale = sale_json(
            self.store,
            event_id=str(uuid.uuid4()),
            receipt_number=self._next(),
            customer_id=self.customer,
            occurred_at=datetime.now(UTC).isoformat(),
            business_day=datetime.now(UTC).date().isoformat(),
        )
        return [sale, payment_json(sale)]

    def void(self, sale: dict[str, Any]) -> dict[str, Any]:
        return void_json(sale, receipt_number=self._next(), occurred_at=sale["occurred_at"])


@pytest.fixture(params=["embedded", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """A database per service: SQLite (analytics: DuckDB), or one real PostgreSQL."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return dict.fromkeys(SERVICES, url)
    urls = {name: f"sqlite:///{tmp_path / f'{name}.db'}" for name in SERVICES}
    urls["analytics"] = f"duckdb:///{tmp_path / 'analytics.duckdb'}"
    return urls


def fresh_group(cls: type[Consumer], settings: Settings) -> Consumer:
    """The service under a group of its own: tests share the session's broker."""
    return cls.in_group(f"{cls.name}-{uuid.uuid4().hex[:8]}")(settings)


async def test_a_post_void_over_http_undoes_the_sale_in_every_service_in_either_order(
    edge_factory: Any, kafka_topics: Settings, urls: dict[str, str]
) -> None:
    sale_first, void_first = (Till(f"S-PV-{uuid.uuid4().hex[:6]}") for _ in range(2))
    edges = {t.store: edge_factory(t.store) for t in (sale_first, void_first)}
    kept = {t.store: t.receipt() for t in (sale_first, void_first)}
    voided = {t.store: t.receipt() for t in (sale_first, void_first)}
    voids = {t.store: t.void(voided[t.store][0]) for t in (sale_first, void_first)}

    async def post(store: str, *events: dict[str, Any]) -> None:
        async with httpx.AsyncClient(base_url=edges[store].url, timeout=30) as http:
            answer = await http.post("/v1/events", content=dumps(list(events)))
            assert answer.status_code == 202, answer.text

    def each(sql: str, event_id: str) -> Callable[[], bool]:
        return lambda: all(
            (scalar(urls[name], APPLIED[name] if sql == "applied" else VOIDED[name], (event_id,))
             or 0) > 0
            for name in SERVICES
        )  # fmt: skip

    async with contextlib.AsyncExitStack() as stack:
        for name, cls in SERVICES.items():
            consumer = fresh_group(cls, kafka_topics)
            await stack.enter_async_context(running(consumer, kafka_topics, urls[name]))
        for till in (sale_first, void_first):
            await post(till.store, stock_json(till.store), *kept[till.store])
        # One store's sale is read everywhere before its post-void; the other's after it.
        await post(sale_first.store, *voided[sale_first.store])
        await post(void_first.store, voids[void_first.store])
        await wait_until(each("applied", voided[sale_first.store][0]["event_id"]),
                         what="the sale read first")  # fmt: skip
        await wait_until(each("voided", voids[void_first.store]["voided_event_id"]),
                         what="the post-void read first")  # fmt: skip
        await post(sale_first.store, voids[sale_first.store])
        await post(void_first.store, *voided[void_first.store])
        # A last receipt of each store, read after everything before it on its partitions.
        last = {t.store: t.receipt() for t in (sale_first, void_first)}
        for till in (sale_first, void_first):
            await post(till.store, *last[till.store])
            await wait_until(each("applied", last[till.store][0]["event_id"]), what="the last")
        await wait_until(each("voided", voids[sale_first.store]["voided_event_id"]),
                         what="the post-void read last")  # fmt: skip
        for till in (sale_first, void_first):
            _as_if_never_sold(urls, till, voids[till.store])


async def test_a_post_void_in_poslog_undoes_the_sale_in_every_service_in_either_order(
    edge_factory: Any, kafka_topics: Settings, urls: dict[str, str]
) -> None:
    """The same, from a till that writes POSLog: the sale and the post-void are documents of
    their own, the post-void linked to the sale by its workstation, number and day."""
    sale_first, void_first = (Till(f"S-PL-{uuid.uuid4().hex[:6]}") for _ in range(2))
    edges = {t.store: edge_factory(t.store) for t in (sale_first, void_first)}

    def documents(till: Till) -> tuple[bytes, bytes]:
        sale, payment = till.receipt()
        return poslog_receipt(sale, payment), poslog_post_void(sale, till._next())

    kept = {t.store: documents(t)[0] for t in (sale_first, void_first)}
    voided = {t.store: documents(t) for t in (sale_first, void_first)}

    def ids(document: bytes, kind: str) -> str:
        [record] = [r for k, r in parse_poslog(document).events if k == kind]
        return str(record["voided_event_id" if kind == "sale_void" else "event_id"])

    async def post(store: str, document: bytes) -> None:
        async with httpx.AsyncClient(base_url=edges[store].url, timeout=30) as http:
            answer = await http.post("/v1/poslog", content=document)
            assert answer.status_code == 202, answer.text
            assert answer.json()["set_aside"] == [] and answer.json()["accepted"] > 0

    def each(which: dict[str, str], event_id: str) -> Callable[[], bool]:
        return lambda: all(
            (scalar(urls[name], which[name], (event_id,)) or 0) > 0 for name in SERVICES
        )

    async with contextlib.AsyncExitStack() as stack:
        for name, cls in SERVICES.items():
            consumer = fresh_group(cls, kafka_topics)
            await stack.enter_async_context(running(consumer, kafka_topics, urls[name]))
        for till in (sale_first, void_first):  # the delivery, by JSON; the receipts by POSLog
            async with httpx.AsyncClient(base_url=edges[till.store].url, timeout=30) as http:
                delivered = await http.post("/v1/events", content=dumps(stock_json(till.store)))
                assert delivered.status_code == 202, delivered.text
            await post(till.store, kept[till.store])
        sale_doc, void_doc = voided[sale_first.store]
        await post(sale_first.store, sale_doc)
        await wait_until(each(APPLIED, ids(sale_doc, "sale")), what="the sale read first")
        await post(sale_first.store, void_doc)
        sale_doc, void_doc = voided[void_first.store]
        await post(void_first.store, void_doc)
        await wait_until(each(VOIDED, ids(void_doc, "sale_void")), what="the void read first")
        await post(void_first.store, sale_doc)
        for till in (sale_first, void_first):
            last = poslog_receipt(*till.receipt())
            await post(till.store, last)
            await wait_until(each(APPLIED, ids(last, "sale")), what="the last receipt")
        await wait_until(each(VOIDED, ids(voided[sale_first.store][1], "sale_void")),
                         what="the post-void read last")  # fmt: skip
        for till in (sale_first, void_first):
            [void] = [r for k, r in parse_poslog(voided[till.store][1]).events if k == "sale_void"]
            _as_if_never_sold(
                urls, till, {**void, "business_day": void["business_day"].isoformat()}
            )


def _as_if_never_sold(urls: dict[str, str], till: Till, void: dict[str, Any]) -> None:
    """Two receipts of the sample basket kept, one voided: every service as if two only."""
    store, day = till.store, date.fromisoformat(void["business_day"])
    with _db(urls["erp"]) as erp:
        on_hand = {s.sku: s.on_hand for s in stock_levels(erp, store)}
        assert on_hand == {
            "SKU-MILK-1L": Decimal("20.000"),  # 24 delivered, 2 x 2 sold
            "SKU-APPLES": Decimal("-1.468"),
            "SKU-BREAD": Decimal("2.000"),
        }, store
        units = erp.fetchone(
            "SELECT SUM(units) FROM erp_daily_sales WHERE store_id = ? AND sku = 'SKU-MILK-1L'",
            (store,),
        )
        assert units is not None and int(units[0]) == 4000
    with _db(urls["crm"]) as crm:
        profile = load_profile(crm, till.customer)
        assert profile is not None
        assert (profile.visits, [s.total for s in profile.spend]) == (2, [Decimal("4.16")])
    with _db(urls["analytics"]) as analytics:
        summary = daily_summary(analytics, store, day.isoformat())
        assert (summary.transactions, summary.net) == (2, {"EUR": Decimal("4.16")})
        assert [(t.method, t.amount, t.payments) for t in summary.tenders] == [
            ("CARD", Decimal("4.16"), 2)
        ]
    with _db(urls["audit"]) as audit:
        detail = queries.store_day(audit, store, day, datetime.now(UTC), Settings())
        assert detail is not None
        assert detail["post_voids_by_till"] == {
            "T01": {"count": 1, "amount": "2.08", "currency": "EUR"}
        }
        assert [(v["number"], v["voided_number"]) for v in detail["post_voids"]] == [
            (void["receipt_number"], void["voided_receipt_number"])
        ]
        assert [t["transactions"] for t in detail["tills"]] == [2]
        assert [f for f in detail["flags"] if f["open"]] == []


@contextlib.contextmanager
def _db(url: str) -> Any:
    db = Database(url)
    try:
        yield db
    finally:
        db.close()
