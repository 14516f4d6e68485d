"""Operator commands while the consumer service runs: a DuckDB file is held by the service
(DuckDB lets one process open it), so report and stock ask the service's read API."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from tests.consumer_support import ConsumerProcess, publish
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.dev.ports import free_port
from tillstream.dev.processes import run_tillstream
from tillstream.dev.samples import sample_payment, sample_sale, sample_stock_movement


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_tillstream(*args, env=env)


@contextlib.contextmanager
def _service(kind: str, settings: Settings, url: str, tmp_path: Path) -> Iterator[ConsumerProcess]:
    """The ``kind`` consumer service on ``url``, in a fresh consumer group, ready; at the
    end it must stop cleanly (exit code 0)."""
    group = f"{kind}-{uuid.uuid4().hex[:8]}"
    service = ConsumerProcess(
        kind, settings.kafka_bootstrap_servers, url, tmp_path / kind, args=["--group", group]
    ).start()
    try:
        yield service
    finally:
        assert service.stop() == 0, service.tail()


async def _until(args: list[str], expected: str, timeout: float = 200, **env: str) -> str:
    """Run the command until its output holds ``expected`` (the service has a backlog)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = _cli(*args, **env)
        if expected in result.stdout:
            return result.stdout
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {expected!r} within {timeout}s: {result}")
        await asyncio.sleep(1)


async def test_report_reads_a_running_analytics_service_on_duckdb(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = f"S-REP-{uuid.uuid4().hex[:6]}"
    sale = sample_sale(store, customer=None)
    await publish(kafka_topics, codec, [("sale", sale), ("payment", sample_payment(sale))])
    url = f"duckdb:///{tmp_path / 'analytics.duckdb'}"
    with _service("analytics", kafka_topics, url, tmp_path) as service:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        report = ["report", "--store", store, "--day", day, "--db", url]
        # The service's listen address is where the CLI looks for it, as on a store's host.
        out = await _until(
            report, "transactions   1", TILLSTREAM_CONSUMER_LISTEN=f"127.0.0.1:{service.port}"
        )
        net = Decimal(str(sale["totals"]["net_amount"])).quantize(Decimal("0.01"))
        assert f"net sales      {net} EUR" in out
        assert "Top SKUs" in out
        # Or named explicitly.
        explicit = _cli(*report, "--api", f"http://127.0.0.1:{service.port}")
        assert explicit.returncode == 0, explicit.stderr
        assert explicit.stdout == out
        assert "Sales audit: not shown: no sales audit to ask" in out
        # The payment findings are the audit's: read from its running service's API.
        audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
        with _service("audit", kafka_topics, audit_url, tmp_path) as audit:
            api = f"http://127.0.0.1:{audit.port}"
            both = [*report, "--api", f"http://127.0.0.1:{service.port}", "--audit-api", api]
            found = await _until(both, "Sales audit (store-day")
            assert "0 open flag(s)" in found
        gone = _cli(*both)
        assert gone.returncode == 0, gone.stderr
        assert f"not shown: the sales audit is not reachable: no service answers at {api}" in (
            gone.stdout
        )
        # Nothing answers where it looks: the error says who holds the file and what to pass.
        nowhere = _cli(*report, TILLSTREAM_CONSUMER_LISTEN=f"127.0.0.1:{free_port()}")
        assert nowhere.returncode == 1
        assert f"is held by another process (pid {service.proc.pid})" in nowhere.stderr
        assert "probably the running analytics service" in nowhere.stderr
        assert "--api http://HOST:PORT" in nowhere.stderr
        assert "Traceback" not in nowhere.stderr
    # Stopped: the file is read directly again.
    direct = _cli(*report, TILLSTREAM_CONSUMER_LISTEN=f"127.0.0.1:{free_port()}")
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout == out


async def test_stock_reads_a_running_erp_service_on_duckdb(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = f"S-STK-{uuid.uuid4().hex[:6]}"
    movement = sample_stock_movement(store)
    await publish(kafka_topics, codec, [("stock_movement", movement)])
    url = f"duckdb:///{tmp_path / 'erp.duckdb'}"
    with _service("erp", kafka_topics, url, tmp_path) as service:
        listen = f"127.0.0.1:{service.port}"
        out = await _until(
            ["stock", store, "--db", url, "--json"],
            movement["sku"],
            TILLSTREAM_CONSUMER_LISTEN=listen,
        )
        assert '"on_hand": "24.000"' in out
        table = _cli("stock", store, "--db", url, TILLSTREAM_CONSUMER_LISTEN=listen)
        assert table.returncode == 0, table.stderr
        assert movement["sku"] in table.stdout


def test_crm_show_on_a_held_duckdb_file_says_why(tmp_path: Path) -> None:
    """No CRM read API serves profiles (personal data): say who holds the file, and why."""
    path = tmp_path / "crm.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); "
            "print('open', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        result = _cli("crm", "show", "C-1", "--db", f"duckdb:///{path}")
        assert result.returncode == 1
        assert f"held by another process (pid {holder.pid})" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    finally:
        holder.kill()
        holder.wait()


async def test_stock_reads_sqlite_directly_beside_a_running_service(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    """SQLite (WAL) readers do not wait for the writer: no API needed, none reachable here."""
    store = f"S-SQL-{uuid.uuid4().hex[:6]}"
    movement = sample_stock_movement(store)
    await publish(kafka_topics, codec, [("stock_movement", movement)])
    url = f"sqlite:///{tmp_path / 'erp.db'}"
    with _service("erp", kafka_topics, url, tmp_path):
        nowhere = f"127.0.0.1:{free_port()}"
        out = await _until(
            ["stock", store, "--db", url, "--json"],
            movement["sku"],
            TILLSTREAM_CONSUMER_LISTEN=nowhere,
        )
        assert '"on_hand": "24.000"' in out


def test_report_sends_the_read_api_token_and_names_it_when_refused(tmp_path: Path) -> None:
    """A real HTTP server standing in for a service that requires a bearer token."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tillstream_consumers.analytics.report import DailySummary

    summary = DailySummary("S-TOK", "2026-03-02", 1, {"EUR": Decimal("2.08")}, Decimal("3.734"),
                           3, 1, [], [], [])  # fmt: skip
    seen: list[str | None] = []

    class Service(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            ok = self.headers.get("Authorization") == "Bearer s3cret-token-of-the-test"
            body = json.dumps(summary.as_json()).encode() if ok else b"{}"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Service)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}"
    report = ["report", "--store", "S-TOK", "--day", "2026-03-02", "--api", api]
    try:
        refused = _cli(*report)
        assert refused.returncode == 1
        assert "refused the request (HTTP 401)" in refused.stderr
        assert "set TILLSTREAM_CONSUMER_API_TOKEN" in refused.stderr
        allowed = _cli(*report, TILLSTREAM_CONSUMER_API_TOKEN="s3cret-token-of-the-test")
        assert allowed.returncode == 0, allowed.stderr
        assert "net sales      2.08 EUR" in allowed.stdout
        assert "units          3.734" in allowed.stdout  # exact, never through a float
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [None, "Bearer s3cret-token-of-the-test"]
    assert "s3cret" not in refused.stderr + allowed.stderr


def test_report_route_refuses_bad_parameters_without_echoing_them() -> None:
    from starlette.requests import Request

    from tillstream_consumers.analytics import Analytics

    async def query(fn: object) -> object:
        raise AssertionError("a bad request must not reach the database")

    (route,) = Analytics().routes(query)
    scope = {"type": "http", "method": "GET", "query_string": b"store=S1&day=4111111111111111"}
    bad = asyncio.run(route.endpoint(Request(scope)))
    assert bad.status_code == 400
    assert b"4111" not in bad.body and b"day=YYYY-MM-DD" in bad.body
