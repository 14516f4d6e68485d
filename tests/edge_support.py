"""Running the edge service as operators do (a process), and building till payloads."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_consumer
from tillstream.core.records import jsonable
from tillstream.core.settings import Settings
from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service
from tillstream.dev.samples import (
    sample_payment,
    sample_sale,
    sample_sale_void,
    sample_stock_movement,
)


def sale_json(store: str, **changes: Any) -> dict[str, Any]:
    return {"type": "sale", **jsonable(sample_sale(store)), **changes}


def payment_json(sale: dict[str, Any]) -> dict[str, Any]:
    record = sample_payment(
        {
            **sale,
            "occurred_at": sample_sale()["occurred_at"],
            "totals": {"net_amount": sale["totals"]["net_amount"]},
        }
    )
    return {"type": "payment", **jsonable(record), "sale_event_id": sale["event_id"]}


def void_json(sale: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A post-void of ``sale`` (a till's JSON, as :func:`sale_json` makes it), a minute later."""
    record = sample_sale_void(
        {
            **sale,
            "business_day": date.fromisoformat(sale["business_day"]),
            "occurred_at": datetime.fromisoformat(sale["occurred_at"]),
            "totals": {"net_amount": Decimal(sale["totals"]["net_amount"])},
        },
        at=datetime.fromisoformat(sale["occurred_at"]) + timedelta(minutes=1),
    )
    return {"type": "sale_void", **jsonable(record), **changes}


def stock_json(store: str, **changes: Any) -> dict[str, Any]:
    return {"type": "stock_movement", **jsonable(sample_stock_movement(store)), **changes}


def new_id() -> str:
    return str(uuid.uuid4())


class EdgeProcess(Service):
    """``tillstream edge run`` for ``store`` as a process; started means answering
    ``/healthz`` (an edge cut off from Kafka takes events but is not ready)."""

    def __init__(
        self,
        store: str,
        bootstrap: str,
        workdir: Path,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        port = port or free_port()
        self.store, self.workdir = store, workdir
        super().__init__(
            f"edge {store}",
            ["edge", "run", "--store", store, "--listen", f"127.0.0.1:{port}",
             "--outbox", str(workdir / "outbox.db"), *(extra_args or [])],
            port,
            workdir / "edge.log",
            {
                "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "TILLSTREAM_LOG_LEVEL": "INFO",
                **(env or {}),  # extra TILLSTREAM_* settings of this edge
            },
            ready_path="/healthz",
            own_session=False,
        )  # fmt: skip

    @property
    def outbox(self) -> Path:
        return self.workdir / "outbox.db"

    def start(self, timeout: float = 30) -> EdgeProcess:
        super().start()
        self.wait_ready(timeout)
        return self

    def metric(self, name: str, labels: str = "") -> float:
        """A metric's value from /metrics (sum over label sets matching ``labels``)."""
        total = 0.0
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {") and labels in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})")


def live_poslog(document: str) -> str:
    """A POSLog sample as a live till sends it: every date moved by whole days so the last
    one is yesterday (inside the edge's plausibility window)."""
    dates = [date(*map(int, m.groups())) for m in _DATE.finditer(document)]
    shift = datetime.now(UTC).date() - timedelta(days=1) - max(dates) if dates else timedelta(0)

    def moved(m: re.Match[str]) -> str:
        return (date(*map(int, m.groups())) + shift).isoformat()

    return _DATE.sub(moved, document)


async def read_topic(
    settings: Settings, codec: AvroCodec, topic: str, store: str, want: int, timeout: float = 60
) -> list[tuple[int, dict[str, Any]]]:
    """(partition, decoded record) of ``store``'s events on ``topic``, once ``want`` are there
    (and a short wait for any duplicate after them)."""
    consumer = make_consumer(
        settings, topic, group_id=f"till-{time.time_ns()}", auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[tuple[int, dict[str, Any]]] = []

    async def poll(ms: int) -> None:
        for batch in (await consumer.getmany(timeout_ms=ms)).values():
            found.extend(
                (m.partition, codec.decode(m.value).record)
                for m in batch
                if m.key == store.encode()
            )

    try:
        async with asyncio.timeout(timeout):
            while len(found) < want:
                await poll(500)
        await poll(2000)
    finally:
        await consumer.stop()
    return found


def poslog_receipt(sale: dict[str, Any], payment: dict[str, Any]) -> bytes:
    """A till's JSON sale and payment (:func:`sale_json`, :func:`payment_json`) as the POSLog
    document an older till would write for it (V6, tax inside the prices)."""
    lines = "".join(
        f"<LineItem><SequenceNumber>{ln['line_number']}</SequenceNumber>"
        f"<{'Return' if ln['kind'] == 'RETURN' else 'Sale'}><ItemID>{ln['sku']}</ItemID>"
        f"<RegularSalesUnitPrice>{ln['unit_price']}</RegularSalesUnitPrice>"
        f"<ExtendedAmount>{ln['extended_amount']}</ExtendedAmount>"
        f'<Quantity UnitOfMeasureCode="{ln["unit_of_measure"]}">{ln["quantity"]}</Quantity>'
        f"</{'Return' if ln['kind'] == 'RETURN' else 'Sale'}></LineItem>"
        for ln in sale["lines"]
    )
    card = payment["card"]
    tender = (
        f'<LineItem><SequenceNumber>9</SequenceNumber><Tender TenderType="CreditDebit">'
        f"<Amount>{payment['amount']}</Amount><CreditDebit><CardBrand>{card['brand']}</CardBrand>"
        f"<PrimaryAccountNumber>XXXXXXXXXXXX{card['last_four']}</PrimaryAccountNumber>"
        "</CreditDebit></Tender></LineItem>"
    )
    customer = f"<Customer><CustomerID>{sale['customer_id']}</CustomerID></Customer>"
    body = (
        f'<RetailTransaction>{lines}{tender}<Total TotalType="TransactionGrandAmount">'
        f"{sale['totals']['net_amount']}</Total>{customer}</RetailTransaction>"
    )
    return _poslog_document(sale, sale["receipt_number"], body)


def poslog_post_void(sale: dict[str, Any], number: str) -> bytes:
    """A post-void of a :func:`poslog_receipt` sale: its own transaction, linked to the sale,
    the receipt repeated with its amount, as NCR and Wincor tills write one."""
    link = (
        f'<TransactionLink ReasonCode="Voided"><WorkstationID>{sale["terminal_id"]}'
        f"</WorkstationID><SequenceNumber>{sale['receipt_number']}</SequenceNumber>"
        f"<BusinessDayDate>{sale['business_day']}</BusinessDayDate></TransactionLink>"
    )
    body = (
        f'<RetailTransaction TransactionStatus="Voided">{link}<Total TotalType='
        f'"TransactionGrandAmount">{sale["totals"]["net_amount"]}</Total></RetailTransaction>'
    )
    return _poslog_document(sale, number, body)


def _poslog_document(sale: dict[str, Any], number: str, body: str) -> bytes:
    return (
        '<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/"><Transaction>'
        f"<BusinessUnit><UnitID>{sale['store_id']}</UnitID></BusinessUnit>"
        f"<WorkstationID>{sale['terminal_id']}</WorkstationID>"
        f"<SequenceNumber>{number}</SequenceNumber>"
        f"<BusinessDayDate>{sale['business_day']}</BusinessDayDate>"
        f"<EndDateTime>{sale['occurred_at']}</EndDateTime>"
        f"<OperatorID>{sale['cashier_id']}</OperatorID><CurrencyCode>{sale['currency']}"
        f"</CurrencyCode>{body}</Transaction></POSLog>"
    ).encode()
