"""What the demo shows: per-store event rates, consumer progress, lag, dead letters, low
stock, sales and the sales audit's open flags, read from the services' own ``/metrics`` (as
Prometheus would); and how each store-day closed, read through the audit's read API."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.table import Table

from tillstream.demo.stack import DemoStack
from tillstream.simulate.driver import Stats

Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass
class Snapshot:
    at: float = field(default_factory=time.monotonic)
    accepted: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, float] = field(default_factory=dict)
    outbox: dict[str, float] = field(default_factory=dict)
    applied: dict[str, float] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)
    dlq: dict[str, float] = field(default_factory=dict)
    sales: dict[str, str] = field(default_factory=dict)
    transactions: dict[str, float] = field(default_factory=dict)
    low_stock: float = 0
    """Store-SKUs that reached their reorder point in the last 24 hours (reorder suggestions
    analytics read), not the stock now."""
    flags: float = 0
    """The audit's open sale/payment reconciliation flags (a part of :attr:`audit_flags`)."""
    audit_flags: dict[str, float] = field(default_factory=dict)
    """The sales audit's open flags (not acknowledged), by store."""


def _samples(url: str) -> Samples:
    try:
        text = httpx.get(f"{url}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    found: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name].append((sample.labels, sample.value))
    return found


def _sum(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for have, value in samples.get(name, [])
        if all(have.get(k) == v for k, v in labels.items())
    )


def scrape(stack: DemoStack) -> Snapshot:
    snap = Snapshot()
    for store, edge in stack.edges.items():
        s = _samples(edge.url)
        snap.accepted[store] = _sum(s, "tillstream_edge_events_accepted_total")
        snap.rejected[store] = _sum(s, "tillstream_edge_events_rejected_total")
        snap.outbox[store] = _sum(s, "tillstream_edge_outbox_depth")
    for name, consumer in stack.consumers.items():
        s = _samples(consumer.url)
        snap.applied[name] = _sum(s, "tillstream_consumer_records_total", outcome="applied")
        snap.lag[name] = _sum(s, "tillstream_consumer_lag")
        snap.dlq[name] = _sum(s, "tillstream_consumer_dlq_records_total")
        if name == "analytics":
            for labels, value in s.get("tillstream_business_sales_amount", []):
                snap.sales[labels["store"]] = f"{value:,.2f} {labels['currency']}"
            for labels, value in s.get("tillstream_business_transactions", []):
                snap.transactions[labels["store"]] = value
            snap.low_stock = _sum(s, "tillstream_business_low_stock_skus")
        if name == "audit":
            for labels, value in s.get("tillstream_audit_flags", []):
                store = labels["store"]
                snap.audit_flags[store] = snap.audit_flags.get(store, 0) + value
            # The reconciliation is the audit's (issue 14): its payment flags.
            snap.flags = sum(
                _sum(s, "tillstream_audit_flags", kind=kind)
                for kind in ("payment_mismatch", "payment_without_sale")
            )
    return snap


def audit_days(stack: DemoStack) -> dict[str, list[dict[str, Any]]]:
    """Each store's store-days as the audit's read API gives them (status, flags by kind);
    empty when the demo runs no audit or it does not answer."""
    audit = stack.consumers.get("audit")
    if audit is None:
        return {}
    found: dict[str, list[dict[str, Any]]] = {}
    for store in stack.stores:
        try:
            response = httpx.get(f"{audit.url}/v1/audit/days", params={"store": store}, timeout=5)
        except httpx.HTTPError:
            continue
        if response.status_code == 200:
            found[store] = list(response.json())
    return found


def store_day_line(day: dict[str, Any]) -> str:
    """``2026-03-02 closed-unbalanced, 3 open flags (over_short 1, receipt_gap 2)``."""
    flags = dict(day.get("open_flags") or {})
    count = sum(flags.values())
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(flags.items()))
    return (
        f"{day['business_day']} {day['status']}, {count} open flag{'' if count == 1 else 's'}"
        + (f" ({kinds})" if kinds else "")
    )


def _rate(before: Snapshot | None, now: Snapshot, store: str) -> float:
    if before is None or now.at <= before.at:
        return 0.0
    return (now.accepted.get(store, 0) - before.accepted.get(store, 0)) / (now.at - before.at)


def render(before: Snapshot | None, now: Snapshot, stats: Stats, elapsed: float) -> Group:
    stores = Table(title=f"tillstream demo: {elapsed:,.0f} s", title_justify="left")
    columns = ("store", "events/s", "accepted", "refused", "outbox", "receipts", "sales",
               "audit flags")  # fmt: skip
    for column in columns:
        stores.add_column(column, justify="left" if column == "store" else "right")
    for store in now.accepted:
        stores.add_row(
            store,
            f"{_rate(before, now, store):,.0f}",
            f"{now.accepted[store]:,.0f}",
            f"{now.rejected.get(store, 0):,.0f}",
            f"{now.outbox.get(store, 0):,.0f}",
            f"{now.transactions.get(store, 0):,.0f}",
            now.sales.get(store, "-"),
            f"{now.audit_flags.get(store, 0):,.0f}",
        )
    consumers = Table(title_justify="left")
    for column in ("consumer", "applied", "lag", "dead letters"):
        consumers.add_column(column, justify="left" if column == "consumer" else "right")
    for name in now.applied:
        consumers.add_row(
            name,
            f"{now.applied[name]:,.0f}",
            f"{now.lag.get(name, 0):,.0f}",
            f"{now.dlq.get(name, 0):,.0f}",
        )
    footer = Table.grid(padding=(0, 3))
    footer.add_row(
        f"tills sent {stats.total('sent'):,} events ({stats.poslog_files:,} POSLog files)",
        f"store-SKUs at their reorder point (24 h): {now.low_stock:,.0f}",
        f"audit flags: {sum(now.audit_flags.values()):,.0f}, of them sale/payment: "
        f"{now.flags:,.0f}",
    )
    return Group(stores, consumers, footer)


def plain_line(before: Snapshot | None, now: Snapshot, elapsed: float) -> str:
    """One line for logs and pipes (no terminal)."""
    rates = " ".join(f"{s}={_rate(before, now, s):.0f}/s" for s in now.accepted)
    applied = " ".join(f"{n}={now.applied[n]:.0f}" for n in now.applied)
    return (
        f"[{elapsed:5.0f}s] ingest {rates} | applied {applied} | "
        f"lag={sum(now.lag.values()):.0f} dlq={sum(now.dlq.values()):.0f} "
        f"reorder_point_skus={now.low_stock:.0f} audit_flags={sum(now.audit_flags.values()):.0f} "
        f"of_them_sale_payment={now.flags:.0f}"
    )
