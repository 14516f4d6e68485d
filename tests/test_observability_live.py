"""The dashboards and alerts against a real Prometheus scraping a real pipeline on loopback:
two store edges (one with a serial scanner), the ERP, CRM, analytics, sales audit and fleet
consumers, a broker; the two stores' estate reports produced as their edges publish them.
Every dashboard query must return data; every alert expression must be valid and each metric
it selects must have data."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.consumer_support import ConsumerProcess
from tests.device_support import FakePort
from tests.edge_support import dumps, payment_json, sale_json, stock_json
from tests.fleet_support import produce_reports, report
from tests.pipeline_support import (
    PrometheusProcess,
    alert_rules,
    dashboards,
    grafana_to_promql,
    live_config,
    panel_exprs,
    selectors,
    tool,
)
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import ESTATE_REPORTS, SALES, store_key
from tillstream_consumers.audit.flags import KINDS
from tillstream_consumers.fleet.flags import KINDS as FLEET_KINDS

# Seconds for the pipeline to produce every series the dashboards show. The consumers' fresh
# groups start from the earliest offsets: on a broker shared with other tests they first
# catch up on everyone's history (about a minute for 20,000 records).
DEADLINE = 240


@pytest.fixture
def consumers(kafka_topics: Settings, tmp_path: Path) -> Iterator[dict[str, ConsumerProcess]]:
    """erp, crm, analytics, the sales audit and the fleet service as processes, each in a
    fresh consumer group."""
    bootstrap = kafka_topics.kafka_bootstrap_servers
    tag = uuid.uuid4().hex[:8]
    databases = {
        "erp": f"sqlite:///{tmp_path / 'erp.db'}",
        "crm": f"sqlite:///{tmp_path / 'crm.db'}",
        "analytics": f"duckdb:///{tmp_path / 'analytics.duckdb'}",
        "audit": f"sqlite:///{tmp_path / 'audit.db'}",
        "fleet": f"sqlite:///{tmp_path / 'fleet.db'}",
    }
    started: dict[str, ConsumerProcess] = {}
    try:
        for name, url in databases.items():
            process = ConsumerProcess(
                name, bootstrap, url, tmp_path / name, args=["--group", f"{name}-obs-{tag}"]
            )
            started[name] = process
            process.start(timeout=90)
        yield started
    finally:
        for process in started.values():
            process.kill()


def _post(url: str, payload: Any, expect: int) -> None:
    answer = httpx.post(f"{url}/v1/events", content=dumps(payload), timeout=30)
    assert answer.status_code == expect, answer.text


def _empty(prometheus: PrometheusProcess, promql: str) -> str | None:
    """Why ``promql`` does not answer with data now, or None when it does."""
    answer = prometheus.query(promql)
    if answer.get("status") != "success":
        return f"error: {answer.get('error')}"
    if not answer["data"]["result"]:
        return "no data"
    return None


@pytest.mark.timeout(DEADLINE + 180)
async def test_dashboards_and_alerts_have_data_from_a_live_pipeline(
    kafka_topics: Settings,
    codec: AvroCodec,
    edge_factory: Any,
    consumers: dict[str, ConsumerProcess],
    tmp_path: Path,
) -> None:
    tool("prometheus")
    tag = uuid.uuid4().hex[:6].upper()
    stores = [f"OBS{tag}A", f"OBS{tag}B"]

    scanner = FakePort(tmp_path / "scanner")
    devices = tmp_path / "devices.toml"
    devices.write_text(
        f'[devices.obs-scanner]\nprotocol = "scanner"\nport = "{scanner.link}"\n'
        'mode = "receive"\nterminator = "CR"\n'
    )
    edges = [
        edge_factory(stores[0], args=["--devices", str(devices)]),
        edge_factory(stores[1]),
    ]

    # Prometheus first, so that rates and deltas have samples from before the traffic.
    stores_file = tmp_path / "stores.yaml"
    stores_file.write_text(
        yaml.safe_dump(
            [
                {
                    "targets": [f"127.0.0.1:{edges[0].port}"],
                    "labels": {"store": stores[0], "opening_hours": "always"},
                },
                # no opening_hours: the scrape config defaults it to standard
                {"targets": [f"127.0.0.1:{edges[1].port}"], "labels": {"store": stores[1]}},
            ]
        )
    )
    config = live_config(
        stores_file, {name: f"127.0.0.1:{c.port}" for name, c in consumers.items()}
    )
    prometheus = PrometheusProcess(config, tmp_path / "prometheus")
    try:
        prometheus.start()
        deadline = time.monotonic() + 60
        while True:
            targets = prometheus.targets()
            if len(targets) == 7 and all(t["health"] == "up" for t in targets):
                break
            assert time.monotonic() < deadline, f"targets not all up: {targets}"
            await asyncio.sleep(0.5)
        by_store = {t["labels"].get("store"): t["labels"] for t in targets}
        assert by_store[stores[1]]["opening_hours"] == "standard"

        # Traffic: sales with payments, stock movements, a till's retry, refused events.
        for store, edge in zip(stores, edges, strict=True):
            for _ in range(3):
                sale = sale_json(store)
                _post(edge.url, [sale, payment_json(sale), stock_json(store)], 202)
            again = stock_json(store)
            _post(edge.url, again, 202)
            _post(edge.url, again, 202)  # duplicate: answered, not stored twice
            _post(edge.url, stock_json(store, quantity="1.2345"), 422)  # rejected
        # The stores' estate reports, as their edges publish them (to the fleet service).
        await produce_reports(kafka_topics, codec, [report(s) for s in stores])
        # One record no consumer can decode: each one dead-letters it.
        producer = make_producer(kafka_topics)
        await producer.start()
        try:
            await producer.send_and_wait(SALES.name, b"\x00not avro", key=store_key(stores[0]))
            await producer.send_and_wait(
                ESTATE_REPORTS.name, b"\x00not avro", key=store_key(stores[0])
            )
        finally:
            await producer.stop()

        # Every dashboard query eventually answers with data (counters born with the traffic
        # need a few scrapes before rates and deltas have two samples).
        queries = {
            grafana_to_promql(expr): f"{board}: {title}" for board, title, expr in panel_exprs()
        }
        alert_selectors = {
            sel: rule["alert"] for rule in alert_rules() for sel in selectors(rule["expr"])
        }
        # ... and each consumer group of this test has dead-lettered the undecodable record.
        for process in consumers.values():
            group = process.args[process.args.index("--group") + 1]
            queries[f'tillstream_consumer_dlq_records_total{{consumer="{group}"}}'] = group
        variable_queries = [
            variable["definition"]
            for board in dashboards().values()
            for variable in board["templating"]["list"]
        ]

        def pending() -> dict[str, str]:
            unmet = {
                f"{where}: {q}": why
                for q, where in {**queries, **alert_selectors}.items()
                if (why := _empty(prometheus, q))
            }
            # The store variables list our stores (label_values(selector, label)): the
            # business one only once analytics has applied their sales.
            for definition in variable_queries:
                inner = definition.removeprefix("label_values(").removesuffix(")")
                selector, label = (part.strip() for part in inner.rsplit(",", 1))
                values = prometheus.api(f"label/{label}/values", **{"match[]": selector})
                if not set(stores) <= set(values["data"]):
                    unmet[definition] = f"{stores} not among the values"
            return unmet

        deadline = time.monotonic() + DEADLINE
        while missing := pending():
            if time.monotonic() > deadline:
                logs = "\n".join(c.log()[-1500:] for c in consumers.values())
                pytest.fail(
                    "no data within {}s for:\n{}\n\nconsumer logs:\n{}".format(
                        DEADLINE, "\n".join(f"  {k} -> {v}" for k, v in missing.items()), logs
                    )
                )
            await asyncio.sleep(2)

        # Alert expressions as a whole are valid PromQL (most are rightly empty: all is well).
        for rule in alert_rules():
            answer = prometheus.query(rule["expr"])
            assert answer["status"] == "success", f"{rule['alert']}: {answer.get('error')}"

        # Spot checks that the data is the traffic's, labelled by the scrape config.
        accepted = prometheus.query(
            f'sum by (store) (tillstream_edge_events_accepted_total{{store=~"OBS{tag}.*"}})'
        )["data"]["result"]
        assert {r["metric"]["store"]: float(r["value"][1]) for r in accepted} == {
            s: 10.0 for s in stores
        }
        device = prometheus.query(f'tillstream_edge_device_up{{store="{stores[0]}"}}')
        assert device["data"]["result"][0]["value"][1] == "1"
        ready = prometheus.query('tillstream_consumer_ready{job="tillstream-consumers"}')
        assert {r["metric"]["service"]: r["value"][1] for r in ready["data"]["result"]} == {
            "erp": "1",
            "crm": "1",
            "analytics": "1",
            "audit": "1",
            "fleet": "1",
        }
        # The fleet's gauges: every kind of flag for each of our stores, at 0.
        fleet = prometheus.query(f'tillstream_fleet_flags{{store=~"OBS{tag}.*"}}')
        assert {(r["metric"]["store"], r["metric"]["kind"]) for r in fleet["data"]["result"]} == {
            (store, kind) for store in stores for kind in FLEET_KINDS
        }
        # The audit's gauges: our stores traded today, so every kind of flag is there for
        # each of them (at 0 unless the audit found something).
        expected = {(store, kind) for store in stores for kind in KINDS}
        deadline = time.monotonic() + 60
        while True:
            flags = prometheus.query(f'tillstream_audit_flags{{store=~"OBS{tag}.*"}}')
            found = {(r["metric"]["store"], r["metric"]["kind"]) for r in flags["data"]["result"]}
            if found == expected:
                break
            assert time.monotonic() < deadline, f"audit flag series: {sorted(found)}"
            await asyncio.sleep(1)
    finally:
        prometheus.kill()
        scanner.unplug()
