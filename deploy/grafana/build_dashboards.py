"""Generate tillstream's Grafana dashboards (deploy/grafana/dashboards/*.json).

Every panel is defined once here, as plain dicts; the JSON files are this script's output and
are committed so that Grafana can provision them as they are. After a change:

    python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    python deploy/grafana/build_dashboards.py --check  # exit 1 if they are out of date

Queries use Grafana's $__rate_interval and, on the store and business dashboards, a $store
variable (regex, "All" = .*). tests/test_observability_live.py runs each of them against a
real Prometheus scraping a real pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources
RATE = "$__rate_interval"
STORE = 'store=~"$store"'
RECONCILIATION = (
    "sum by (kind) (max by (kind, store) "
    '(tillstream_audit_flags{kind=~"payment_mismatch|payment_without_sale"}))'
)
"""Open sale/payment flags: the sales audit owns the reconciliation (issue 14)."""

Target = tuple[str, str]  # (PromQL, legend)


def panel(
    title: str,
    targets: list[Target],
    *,
    kind: str = "timeseries",
    unit: str = "short",
    description: str = "",
    width: int = 12,
    height: int = 8,
    thresholds: list[tuple[float | None, str]] | None = None,
    mappings: dict[str, tuple[str, str]] | None = None,
    instant: bool = False,
    options: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    interval: str | None = None,
) -> dict[str, Any]:
    """One panel; ``gridPos`` and ``id`` are filled in by :func:`dashboard`."""
    steps = [{"color": color, "value": value} for value, color in thresholds or [(None, "green")]]
    defaults: dict[str, Any] = {
        "unit": unit,
        "thresholds": {"mode": "absolute", "steps": steps},
        "color": {"mode": "thresholds" if kind in ("stat", "bargauge") else "palette-classic"},
    }
    if mappings:
        defaults["mappings"] = [
            {
                "type": "value",
                "options": {
                    value: {"text": text, "color": color, "index": i}
                    for i, (value, (text, color)) in enumerate(mappings.items())
                },
            }
        ]
    if custom:
        defaults["custom"] = custom
    out: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options or {},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
                "instant": instant,
                "range": not instant,
            }
            for i, (expr, legend) in enumerate(targets)
        ],
    }
    if interval:
        out["interval"] = interval
    out["_size"] = (width, height)
    return out


def stat(title: str, targets: list[Target], **kw: Any) -> dict[str, Any]:
    kw.setdefault("width", 6)
    kw.setdefault("height", 5)
    kw.setdefault(
        "options",
        {
            "reduceOptions": {"calcs": ["lastNotNull"]},
            "colorMode": "background",
            "textMode": "auto",
        },
    )
    return panel(title, targets, kind="stat", **kw)


def row(title: str) -> dict[str, Any]:
    """A row header: the panels after it, up to the next row, are its own."""
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "_size": (24, 1),
    }


def quantiles(metric: str, by: str, selector: str = "") -> list[Target]:
    """p50 and p99 of a histogram, per ``by``."""
    return [
        (
            f"histogram_quantile({q}, sum by ({by}, le) "
            f"(rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"{{{{{by}}}}} p{int(q * 100)}",
        )
        for q in (0.5, 0.99)
    ]


UP_DOWN = {"1": ("UP", "green"), "0": ("DOWN", "red")}
BARS = {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1}
STORE_VARIABLE = {
    "name": "store",
    "label": "Store",
    "type": "query",
    "datasource": DATASOURCE,
    # Every store the fleet service knows (it reported, or head office decided something for
    # it): no scrape of any store is needed for the list.
    "query": {"query": "label_values(tillstream_fleet_edge_up, store)", "refId": "store"},
    "definition": "label_values(tillstream_fleet_edge_up, store)",
    "refresh": 2,
    "includeAll": True,
    "multi": True,
    "allValue": ".*",
    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    "sort": 1,
}


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[dict[str, Any]],
    *,
    variables: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A dashboard with its panels laid out left to right, top to bottom on the 24-wide grid."""
    x = y = row_height = 0
    laid: list[dict[str, Any]] = []
    for number, p in enumerate(panels, start=1):
        p = dict(p)
        width, height = p.pop("_size")
        if x + width > 24:
            x, y, row_height = 0, y + row_height, 0
        laid.append({"id": number, "gridPos": {"h": height, "w": width, "x": x, "y": y}, **p})
        x += width
        row_height = max(row_height, height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tillstream"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables or []},
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["tillstream"],
                "title": "tillstream",
                "asDropdown": True,
            }
        ],
        "panels": laid,
    }


def store_operations() -> dict[str, Any]:
    edge = f'job="tillstream-edge", {STORE}'
    return dashboard(
        "tillstream-store-operations",
        "tillstream / Store operations",
        "The store estate as every edge reports it to the fleet service (no scrape of any "
        "store needed); then, from each edge scraped directly (optional): what the tills "
        "send, what is refused, the outbox and the link to Kafka, serial devices.",
        [
            *estate_row(),
            row("Edge metrics (each edge scraped directly: optional)"),
            stat(
                "Edge service",
                [(f"up{{{edge}}}", "{{store}}")],
                mappings=UP_DOWN,
                description="Prometheus can scrape the store's edge (alert TillstreamEdgeDown).",
            ),
            stat(
                "Kafka link",
                [(f"tillstream_edge_kafka_up{{{STORE}}}", "{{store}}")],
                mappings={"1": ("OK", "green"), "0": ("NOT PUBLISHING", "orange")},
                description="1 while the last publish attempt reached Kafka. 0 right after a "
                "start until the first event is published, so 0 with an empty outbox is not "
                "an outage (alert TillstreamEdgeKafkaUnreachable).",
            ),
            stat(
                "Devices",
                [(f"tillstream_edge_device_up{{{STORE}}}", "{{store}} {{device}}")],
                mappings=UP_DOWN,
                description="Serial scanners and scales: 1 while the port is open "
                "(alert TillstreamEdgeDeviceDown).",
            ),
            stat(
                "Seconds since last event",
                [
                    (
                        f"time() - (tillstream_edge_last_event_timestamp_seconds{{{STORE}}} > 0)",
                        "{{store}}",
                    )
                ],
                unit="s",
                thresholds=[(None, "green"), (600, "orange"), (900, "red")],
                description="Since the last event accepted from any till or device. No value: "
                "nothing accepted since the edge started (alert TillstreamStoreSilent).",
            ),
            panel(
                "Events accepted by channel",
                [
                    (
                        f"sum by (store, channel) (rate(tillstream_edge_events_accepted_total"
                        f"{{{STORE}}}[{RATE}]))",
                        "{{store}} {{channel}}",
                    )
                ],
                unit="ops",
                description="Events made durable in the outbox, per second.",
            ),
            panel(
                "Events accepted by type",
                [
                    (
                        f"sum by (event_type) (rate(tillstream_edge_events_accepted_total"
                        f"{{{STORE}}}[{RATE}]))",
                        "{{event_type}}",
                    )
                ],
                unit="ops",
            ),
            panel(
                "Rejections by reason",
                [
                    (
                        f"sum by (store, channel, reason) (rate("
                        f"tillstream_edge_events_rejected_total{{{STORE}}}[{RATE}]))",
                        "{{store}} {{channel}} {{reason}}",
                    )
                ],
                unit="ops",
                description="Events refused at ingest: invalid payloads, id conflicts, a full "
                "outbox (503). They were not stored; the till must fix and resend them.",
            ),
            panel(
                "Rejection ratio",
                [
                    (
                        f"sum by (store) (rate(tillstream_edge_events_rejected_total{{{STORE}}}"
                        f"[{RATE}])) / (sum by (store) (rate(tillstream_edge_events_accepted_total"
                        f"{{{STORE}}}[{RATE}])) + sum by (store) (rate("
                        f"tillstream_edge_events_rejected_total{{{STORE}}}[{RATE}])))",
                        "{{store}}",
                    )
                ],
                unit="percentunit",
                thresholds=[(None, "green"), (0.05, "red")],
                description="Refused / (accepted + refused); no value without traffic "
                "(alert TillstreamEdgeRejectionsHigh above 5%).",
            ),
            panel(
                "Till resubmissions (duplicates)",
                [
                    (
                        f"sum by (store, channel) (rate(tillstream_edge_events_duplicate_total"
                        f"{{{STORE}}}[{RATE}]))",
                        "{{store}} {{channel}}",
                    )
                ],
                unit="ops",
                description="Events resent with an event id already stored: answered, not "
                "stored twice. A burst means tills are retrying (timeouts, network).",
            ),
            panel(
                "Outbox backlog",
                [(f"tillstream_edge_outbox_depth{{{STORE}}}", "{{store}}")],
                description="Events accepted but not yet acknowledged by Kafka "
                "(alert TillstreamEdgeOutboxBacklog above 1000).",
            ),
            panel(
                "Oldest unsent event age",
                [(f"tillstream_edge_outbox_oldest_unsent_age_seconds{{{STORE}}}", "{{store}}")],
                unit="s",
                thresholds=[(None, "green"), (600, "red")],
                description="0 when the outbox is empty (alert TillstreamEdgeOutboxOldEvent "
                "above 10 minutes).",
            ),
            panel(
                "Outbox disk use",
                [
                    (
                        f"tillstream_edge_outbox_unsent_bytes{{{STORE}}} / "
                        f"tillstream_edge_outbox_limit_bytes{{{STORE}}}",
                        "{{store}}",
                    )
                ],
                unit="percentunit",
                thresholds=[(None, "green"), (0.8, "red")],
                description="Unsent events / the outbox limit (sent events kept for "
                "de-duplication do not count); at the limit the edge answers 503 (alert "
                "TillstreamEdgeOutboxNearlyFull above 80%).",
            ),
            panel(
                "Quarantined events",
                [(f"tillstream_edge_quarantine_depth{{{STORE}}}", "{{store}}")],
                thresholds=[(None, "green"), (1, "red")],
                description="Events Kafka refused for good (too large, invalid, not "
                "authorized), held in the store's outbox so later events keep flowing "
                "(alert TillstreamEdgeEventsQuarantined). 'tillstream edge quarantine show' "
                "lists them; fix the cause, then 'tillstream edge quarantine retry'.",
            ),
            panel(
                "Published to Kafka by topic",
                [
                    (
                        f"sum by (store, topic) (rate(tillstream_edge_events_published_total"
                        f"{{{STORE}}}[{RATE}]))",
                        "{{store}} {{topic}}",
                    )
                ],
                unit="ops",
            ),
            panel(
                "Publish latency (outbox to Kafka ack)",
                quantiles("tillstream_edge_publish_latency_seconds", "store", STORE),
                unit="s",
                description="From accepted in the outbox to acknowledged by Kafka; grows "
                "while Kafka is unreachable.",
            ),
            panel(
                "Master data: seconds since caught up, records behind",
                [
                    (
                        f"tillstream_edge_masterdata_seconds_since_caught_up{{{STORE}}}",
                        "{{store}} since caught up (s)",
                    ),
                    (
                        f"sum by (store) (tillstream_edge_masterdata_records_behind{{{STORE}}})",
                        "{{store}} records behind",
                    ),
                ],
                thresholds=[(None, "green"), (3600, "red")],
                description="The store's copy of the item master and prices: seconds since it "
                "last held everything on tillstream.items and tillstream.prices (alert "
                "TillstreamEdgeMasterDataStale above an hour) and records not yet read "
                "(tillstream_edge_masterdata_newest_record_age_seconds, per topic, says how old "
                "head office's last change is).",
            ),
            panel(
                "Master data held",
                [
                    (f"tillstream_edge_masterdata_items{{{STORE}}}", "{{store}} items"),
                    (f"tillstream_edge_masterdata_prices{{{STORE}}}", "{{store}} prices"),
                ],
                description="Items and prices (the chain's and the store's own) in the store's "
                "copy, as the tills' API serves them.",
            ),
        ],
        variables=[STORE_VARIABLE],
    )


def estate_row() -> list[dict[str, Any]]:
    """The store estate's row (docs/fleet.md), from the fleet service's gauges: every store
    that reports, through Kafka alone. max by: every fleet instance sharing one database
    shows the same numbers."""
    flags = f"max by (store, kind) (tillstream_fleet_flags{{{STORE}}})"
    attention = [(None, "green"), (1, "orange")]
    bars = {"orientation": "horizontal", "displayMode": "gradient"}

    def per_store(metric: str) -> str:
        return f"max by (store) ({metric}{{{STORE}}})"

    return [
        row("Store estate (fleet service)"),
        stat(
            "Edges up",
            [(f"sum({per_store('tillstream_fleet_edge_up')})", "edges")],
            width=4,
            description="Stores whose edge reports (its last report within its heartbeats).",
        ),
        stat(
            "Edges by state (chain)",
            [("max by (state) (tillstream_fleet_edges)", "{{state}}")],
            width=5,
            description="Store edges the fleet service knows, all stores: up (reporting) or "
            "silent (no report for TILLSTREAM_FLEET_SILENT_HEARTBEATS heartbeats).",
        ),
        stat(
            "Edges silent",
            [
                (
                    f'sum(max by (store) (tillstream_fleet_flags{{kind="edge_silent", {STORE}}}))',
                    "stores",
                )
            ],
            thresholds=[(None, "green"), (1, "red")],
            width=5,
            description="Stores whose edge stopped reporting (alert TillstreamFleetEdgeSilent).",
        ),
        stat(
            "Open fleet flags",
            [(f"sum({flags})", "open flags")],
            thresholds=attention,
            width=5,
            description="Every kind, every store: outbox growing, clock skew, devices down, "
            "tills not seen, drift, suspended tills posting... (docs/fleet.md).",
        ),
        stat(
            "Devices down",
            [(f"sum({per_store('tillstream_fleet_devices_down')})", "devices")],
            thresholds=attention,
            description="Serial devices disconnected, as the stores last reported.",
        ),
        panel(
            "Seconds since each store's last report",
            [(per_store("tillstream_fleet_heartbeat_age_seconds"), "{{store}}")],
            unit="s",
            description="Since the broker appended the store's last estate report (edges "
            "report every 30 s by default, and on every change).",
        ),
        panel(
            "Outbox backlog (reported)",
            [
                (per_store("tillstream_fleet_outbox_depth"), "{{store}} events"),
                (per_store("tillstream_fleet_outbox_oldest_age_seconds"), "{{store}} oldest (s)"),
            ],
            description="Events waiting in each store's outbox and the age of the oldest, as "
            "its last report said (alert TillstreamFleetOutboxGrowing).",
        ),
        panel(
            "Clock skew",
            [(per_store("tillstream_fleet_clock_skew_seconds"), "{{store}}")],
            unit="s",
            description="The edge's clock minus the broker's (alert TillstreamFleetClockSkew "
            "beyond TILLSTREAM_FLEET_MAX_CLOCK_SKEW).",
        ),
        panel(
            "Drift from head office's desired state",
            [(per_store("tillstream_fleet_drift"), "{{store}}")],
            description="Targets (a till, a device, the edge) whose desired version the edge "
            "has not applied yet or refused (alert TillstreamFleetDrift).",
        ),
        panel(
            "Open fleet flags by store",
            [(f"sort_desc(sum by (store) ({flags}))", "{{store}}")],
            kind="bargauge",
            instant=True,
            options=bars,
            thresholds=attention,
            description="The fleet page (fleet:9405) shows each store's edge, tills and devices.",
        ),
        panel(
            "Open fleet flags by kind over time",
            [(f"sum by (kind) ({flags})", "{{kind}}")],
            description="A step down is a flag resolved: the store's next report said so.",
        ),
    ]


def pipeline_health() -> dict[str, Any]:
    return dashboard(
        "tillstream-pipeline-health",
        "tillstream / Pipeline health",
        "From the store edges through Kafka to the head-office consumers (ERP, CRM, "
        "analytics): throughput, lag, dead letters, batch and end-to-end latency.",
        [
            stat(
                "Consumers ready",
                [("tillstream_consumer_ready", "{{consumer}} {{instance}}")],
                mappings={"1": ("READY", "green"), "0": ("NOT READY", "red")},
                width=8,
                description="1 while the consumer is in its group and its database answers "
                "(alert TillstreamConsumerNotReady).",
            ),
            stat(
                "Scrape targets up",
                [('sum by (job) (up{job=~"tillstream-.*"})', "{{job}}")],
                width=8,
                description="Edges and consumers Prometheus can scrape.",
            ),
            stat(
                "Dead letters since start",
                [
                    (
                        "sum by (consumer, reason) (tillstream_consumer_dlq_records_total)",
                        "{{consumer}} {{reason}}",
                    )
                ],
                thresholds=[(None, "green"), (1, "red")],
                width=8,
                description="Records sent to each consumer's dead-letter topic since the "
                "process started: `tillstream dlq show CONSUMER` lists them.",
            ),
            panel(
                "Throughput in: published by the edges",
                [
                    (
                        f"sum by (topic) (rate(tillstream_edge_events_published_total[{RATE}]))",
                        "{{topic}}",
                    )
                ],
                unit="ops",
            ),
            panel(
                "Throughput out: records handled by consumers",
                [
                    (
                        "sum by (consumer, outcome) (rate(tillstream_consumer_records_total"
                        f"[{RATE}]))",
                        "{{consumer}} {{outcome}}",
                    )
                ],
                unit="ops",
                description="applied, duplicate (event id seen before) or dead_lettered.",
            ),
            panel(
                "Lag per consumer group",
                [("sum by (consumer) (tillstream_consumer_lag)", "{{consumer}}")],
                description="Records not yet processed, over all partitions (alerts "
                "TillstreamConsumerLagHigh, TillstreamConsumerLagGrowing).",
            ),
            panel(
                "Lag per topic and partition",
                [
                    (
                        "sum by (consumer, topic, partition) (tillstream_consumer_lag)",
                        "{{consumer}} {{topic}}/{{partition}}",
                    )
                ],
            ),
            panel(
                "Dead letters",
                [
                    (
                        "sum by (consumer, reason) (increase("
                        f"tillstream_consumer_dlq_records_total[{RATE}]))",
                        "{{consumer}} {{reason}}",
                    )
                ],
                custom=BARS,
                description="Records dead-lettered per interval (alert "
                "TillstreamConsumerDeadLetters).",
            ),
            panel(
                "Failures by kind",
                [
                    (
                        "sum by (consumer, kind) (rate(tillstream_consumer_failures_total"
                        f"[{RATE}]))",
                        "{{consumer}} {{kind}}",
                    )
                ],
                unit="ops",
                description="transient: retried (Kafka or database trouble); permanent: "
                "dead-lettered (alert TillstreamConsumerPermanentFailures).",
            ),
            panel(
                "Batch duration",
                quantiles("tillstream_consumer_batch_duration_seconds", "consumer"),
                unit="s",
                description="Time to apply one batch and commit it.",
            ),
            panel(
                "Records per batch (mean)",
                [
                    (
                        f"sum by (consumer) (rate(tillstream_consumer_batch_records_sum[{RATE}])) "
                        f"/ sum by (consumer) (rate(tillstream_consumer_batch_records_count"
                        f"[{RATE}]))",
                        "{{consumer}}",
                    )
                ],
            ),
            panel(
                "End-to-end latency",
                quantiles("tillstream_consumer_event_latency_seconds", "consumer"),
                unit="s",
                description="From the record's Kafka timestamp to its effects committed in the "
                "consumer's database.",
            ),
            panel(
                "Seconds since last record processed",
                [
                    (
                        "time() - max by (consumer) "
                        "(tillstream_consumer_last_event_timestamp_seconds)",
                        "{{consumer}}",
                    )
                ],
                unit="s",
                description="Kafka timestamp of the last record each consumer processed; grows "
                "at night when stores are closed.",
            ),
            panel(
                "Assigned partitions",
                [
                    (
                        "sum by (consumer) (tillstream_consumer_assigned_partitions)",
                        "{{consumer}}",
                    )
                ],
                description="Partitions held by the group's instances; scaling out beyond the "
                "partition count leaves instances idle.",
            ),
        ],
    )


def business() -> dict[str, Any]:
    # max, not sum: every analytics instance sharing one database shows the same numbers.
    sales = f"tillstream_business_sales_amount{{{STORE}}}"
    transactions = f"tillstream_business_transactions{{{STORE}}}"
    return dashboard(
        "tillstream-business",
        "tillstream / Business",
        "Today's trading from the analytics consumer's store (current UTC day): sales, "
        "transactions, payment mix, low stock, reconciliation; the sales audit's open flags, "
        "unbalanced store-days and silent stores.",
        [
            stat(
                "Low-stock SKUs (24h)",
                [("max(tillstream_business_low_stock_skus)", "low stock")],
                thresholds=[(None, "green"), (1, "orange")],
                description="Store and SKU pairs with a reorder suggestion in the last 24 hours.",
            ),
            stat(
                "Open reconciliation flags",
                [(RECONCILIATION, "{{kind}}")],
                thresholds=[(None, "green"), (1, "orange")],
                width=12,
                description="Sales and payments that do not match, as the sales audit finds "
                "them (alert TillstreamReconciliationFlags).",
            ),
            stat(
                "Transactions today (all stores)",
                [(f"sum(max by (store) ({transactions}))", "transactions")],
            ),
            panel(
                "Net sales today by store",
                [(f"max by (store, currency) ({sales})", "{{store}} {{currency}}")],
                kind="bargauge",
                instant=True,
                options={"orientation": "horizontal", "displayMode": "gradient"},
                description="Net sales (returns deducted) of the current UTC day.",
            ),
            panel(
                "Transactions today by store",
                [(f"max by (store) ({transactions})", "{{store}}")],
                kind="bargauge",
                instant=True,
                options={"orientation": "horizontal", "displayMode": "gradient"},
            ),
            panel(
                "Net sales per store and hour",
                [
                    (
                        f"max by (store, currency) (delta({sales}[1h]))",
                        "{{store}} {{currency}}",
                    )
                ],
                custom=BARS,
                interval="1h",
                description="Change of today's net sales over each hour. The daily total "
                "restarts at 00:00 UTC, so the first hour after midnight shows the drop.",
            ),
            panel(
                "Transactions per store and hour",
                [(f"max by (store) (delta({transactions}[1h]))", "{{store}}")],
                custom=BARS,
                interval="1h",
            ),
            panel(
                "Payment mix today",
                [
                    (
                        "max by (method, currency) (tillstream_business_payment_amount)",
                        "{{method}} {{currency}}",
                    )
                ],
                kind="piechart",
                instant=True,
                options={"pieType": "donut", "legend": {"displayMode": "table"}},
                description="Captured minus refunded payments by method, all stores (the "
                "payment gauge has no store label).",
            ),
            panel(
                "Average basket by store",
                [
                    (
                        f"max by (store, currency) ({sales}) / on (store) group_left "
                        f"max by (store) ({transactions})",
                        "{{store}} {{currency}}",
                    )
                ],
                kind="bargauge",
                instant=True,
                options={"orientation": "horizontal", "displayMode": "gradient"},
                description="Today's net sales / transactions.",
            ),
            panel(
                "Reconciliation flags over time",
                [(RECONCILIATION, "{{kind}}")],
            ),
            *audit_row(),
        ],
        variables=[
            {
                **STORE_VARIABLE,
                "query": {
                    "query": "label_values(tillstream_business_transactions, store)",
                    "refId": "store",
                },
                "definition": "label_values(tillstream_business_transactions, store)",
            }
        ],
    )


def audit_row() -> list[dict[str, Any]]:
    """The sales audit's row of the Business dashboard (docs/audit.md). max by: every audit
    instance sharing one database shows the same numbers; the flags count those nobody
    acknowledged, of any day."""
    flags = f"max by (store, kind) (tillstream_audit_flags{{{STORE}}})"
    unbalanced = f"max by (store) (tillstream_audit_unbalanced_store_days{{{STORE}}})"
    silent = f'max by (store) (tillstream_audit_flags{{kind="silent_store", {STORE}}})'
    attention = [(None, "green"), (1, "orange")]
    bars = {"orientation": "horizontal", "displayMode": "gradient"}
    return [
        row("Sales audit"),
        stat(
            "Open audit flags",
            [(f"sum({flags})", "open flags")],
            thresholds=attention,
            description="Audit flags no auditor acknowledged, all kinds and days (an "
            "acknowledged flag no longer counts).",
        ),
        stat(
            "Unbalanced store-days",
            [(f"sum({unbalanced})", "store-days")],
            thresholds=attention,
            description="Closed store-days with an open flag nobody acknowledged "
            "(alert TillstreamAuditStoreDayUnbalanced).",
        ),
        stat(
            "Silent stores",
            [(f"sum({silent} > bool 0)", "stores")],
            thresholds=[(None, "green"), (1, "red")],
            description="Stores expected to trade that sent nothing for a business day "
            "(alert TillstreamAuditStoreSilent).",
        ),
        stat(
            "Store-days by status (recent days)",
            [("max by (status) (tillstream_audit_store_days)", "{{status}}")],
            description="Store-days of the last TILLSTREAM_AUDIT_SILENT_DAYS business days, "
            "all stores, per audit status (closed-reviewed: every flag acknowledged, the "
            "money still at stake; closed-balanced: nothing flagged).",
        ),
        panel(
            "Open audit flags by store",
            [(f"sort_desc(sum by (store) ({flags}))", "{{store}}")],
            kind="bargauge",
            instant=True,
            options=bars,
            thresholds=attention,
            description="Open flags nobody acknowledged per store; the store's days are on "
            "the audit page (audit:9404).",
        ),
        panel(
            "Open audit flags by kind",
            [(f"sort_desc(sum by (kind) ({flags}))", "{{kind}}")],
            kind="bargauge",
            instant=True,
            options=bars,
            thresholds=attention,
            description="receipt_gap, over_short, silent_store, ...: see docs/audit.md.",
        ),
        panel(
            "Open audit flags over time",
            [(f"sum by (kind) ({flags})", "{{kind}}")],
            description="A step down is a flag acknowledged or resolved (the missing receipt "
            "arrived, the day closed).",
        ),
        panel(
            "Store-days by status over time",
            [("max by (status) (tillstream_audit_store_days)", "{{status}}")],
        ),
    ]


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON."""
    return {
        "store-operations.json": store_operations(),
        "pipeline-health.json": pipeline_health(),
        "business.json": business(),
    }


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    stale = []
    for name, board in dashboards().items():
        path = OUT_DIR / name
        text = render(board)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run {sys.argv[0]})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
