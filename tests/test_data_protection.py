"""Card data and secrets stay where they belong, on every channel and in every by-product.

The PAN guard holds on each way into the edge (HTTP JSON, HTTP batch, POSLog upload, POSLog
drop folder, serial scanner). Logs captured at DEBUG from an edge and from consumers, the
Prometheus metrics they expose, and the headers of dead letters never carry a card number,
a password or token, or a customer's e-mail, name or phone number (the opaque customer id
is the only customer identifier that travels).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from tests.consumer_support import publish, running, scalar, wait_until
from tests.device_support import FakePort
from tests.edge_support import dumps, live_poslog, payment_json, sale_json, stock_json
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_producer
from tillstream.core.logs import configure_logging
from tillstream.core.records import utcnow
from tillstream.core.settings import Settings, SettingsError, load_settings
from tillstream.core.topics import SALES, store_key
from tillstream.dev.ports import free_port
from tillstream.dev.samples import sample_payment, sample_sale
from tillstream_consumers.crm import CrmProfiles
from tillstream_consumers.crm.erasure import customer_hash
from tillstream_consumers.runtime import deadletter
from tillstream_consumers.runtime.api import Consumer, Context, Record
from tillstream_edge.edge import EdgeService

DATA = Path(__file__).parent / "data" / "poslog"
STORE = "S-PROTECT"  # its own store: other tests count what store 100 (the sample's) sent
PAN = "4111111111111111"
PAN_GROUPED = "4111 1111 1111 1111"
SASL_PASSWORD = "sasl-Secret-pa55word"
DB_PASSWORD = "db-Secret-pa55word"
# The POSLog sample's customer: only the id 22000129 may travel.
PERSONAL = ("Erika Mustermann", "erika@example.org", "+49 221 555 0100", "Heidestrasse 17")
SECRETS = (SASL_PASSWORD, DB_PASSWORD)
_PAN_ANY_GROUPING = re.compile(r"(?<!\d)" + "[ .-]?".join(PAN) + r"(?!\d)")


def leaks(text: str | bytes, *extra: str) -> list[str]:
    """The card number (in any grouping), secrets and personal data found in ``text``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    found = ["the card number"] if _PAN_ANY_GROUPING.search(text) else []
    return found + [s for s in (*SECRETS, *PERSONAL, *extra) if s in text]


def log_text(caplog: pytest.LogCaptureFixture, *, skip: str = "\0") -> str:
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith(skip)
    )


def outbox_values(path: Path) -> bytes:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT * FROM events").fetchall()
    return b"".join(v if isinstance(v, bytes) else str(v).encode() for row in rows for v in row)


def outbox_ids(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM events")}


# -- the edge -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def edge_in_process(settings: Settings) -> AsyncIterator[EdgeService]:
    """The edge service as ``tillstream edge run`` runs it, in this process (so its logs are
    captured at DEBUG)."""
    service = EdgeService(settings)
    task = asyncio.create_task(service.run())
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(30):
            while not service.server.started:
                assert not task.done(), task
                await asyncio.sleep(0.05)
        yield service
    finally:
        service.request_stop()
        await asyncio.wait_for(task, timeout=60)
        for sig in (signal.SIGTERM, signal.SIGINT):  # run() took them over
            loop.remove_signal_handler(sig)


def journal() -> str:
    """The POSLog sample (a PAN in free text and in a tender, a customer with personal data)
    as a new transaction, so its event ids are this test's own on the shared broker."""
    number = str(uuid.uuid4().int % 10**8)
    v6 = (DATA / "v6_customer_card.xml").read_text().replace(">100</UnitID>", f">{STORE}</UnitID>")
    return live_poslog(v6.replace(">4711<", f">{number}<"))


def broken_poslogs() -> dict[str, bytes]:
    """POSLog documents that cannot be accepted, with a card number where an error quotes it."""
    v6 = journal()
    return {
        "currency": v6.replace('Currency="EUR">26.990', f'Currency="{PAN}">26.990').encode(),
        "store": v6.replace(f">{STORE}</UnitID>", f">{PAN}</UnitID>").encode(),
        "amount": v6.replace(">20.000</Amount>", f">{PAN_GROUPED}x</Amount>", 1).encode(),
    }


async def test_pan_guard_holds_on_every_channel_and_the_edge_leaks_nothing(
    kafka_topics: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aiokafka")  # a CLI test may have silenced it
    folder = tmp_path / "drop"
    scanner = FakePort(tmp_path / "scanner")
    devices = tmp_path / "devices.toml"
    devices.write_text(f'[devices.dock]\nprotocol = "scanner"\nport = "{scanner.link}"\n')
    port = free_port()
    outbox = tmp_path / "outbox.db"
    settings = Settings(
        kafka_bootstrap_servers=kafka_topics.kafka_bootstrap_servers,
        kafka_sasl_username="store-100",
        kafka_sasl_password=SASL_PASSWORD,  # in the settings, unused on PLAINTEXT
        store_id=STORE,
        edge_listen=f"127.0.0.1:{port}",
        edge_outbox=outbox,
        edge_poslog_dir=folder,
        edge_devices=devices,
    )
    sale = sale_json(STORE)
    sale["lines"][0]["description"] = f"card {PAN_GROUPED}"
    good = stock_json(STORE)
    payment = payment_json(sale_json(STORE))
    payment["card"]["token"] = PAN
    answers: list[httpx.Response] = []
    async with (
        edge_in_process(settings),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        answers.append(await http.post("/v1/events", content=dumps(sale)))
        answers.append(await http.post("/v1/events", content=dumps([good, payment])))
        for document in broken_poslogs().values():
            answers.append(await http.post("/v1/poslog", content=document))
        converted = await http.post("/v1/poslog", content=journal().encode())
        # The POSLog documents' transactions are set aside (kept at the edge, masked).
        assert [a.status_code for a in answers] == [422, 422, 202, 202, 202]
        assert all(a.json()["set_aside"] for a in answers[2:])
        assert "lines[0].description" in answers[0].text
        assert "events[1].card.token" in answers[1].text
        assert converted.status_code == 202  # the PAN masked, personal data dropped

        old = time.time() - 10
        for name, document in broken_poslogs().items():
            path = folder / f"{PAN if name == 'amount' else name}.xml"  # a till's file name
            path.write_bytes(document)
            os.utime(path, (old, old))
        await wait_until(lambda: metric("tillstream_edge_device_up", device="dock") == 1)
        scanner.send(f"{PAN}\r".encode())  # a card swiped on the scanner's port
        scanner.send(f"]C1010400638133393110{PAN}\r".encode())  # a PAN as the lot number
        async with asyncio.timeout(30):
            while (
                len(list((folder / "processed").glob("*.result.json"))) < 3
                or b"4006381333931" not in outbox_values(outbox)  # the lot scan
            ):
                await asyncio.sleep(0.2)
        scraped = (await http.get("/metrics")).text

    for answer in answers:
        assert leaks(answer.text) == [], answer.text
    stored = outbox_values(outbox)
    assert good["event_id"].encode() not in stored  # a batch with a PAN is refused whole
    assert set(converted.json()["event_ids"]) <= outbox_ids(outbox)
    assert leaks(stored) == []
    assert leaks(log_text(caplog)) == []
    assert "set aside" in log_text(caplog)  # the drop folder did log its set-aside ones
    for result in (folder / "processed").glob("*.result.json"):
        assert leaks(result.read_text()) == []
    with sqlite3.connect(outbox) as db:  # kept to be re-run: masked
        documents = b"".join(bytes(d) for (d,) in db.execute("SELECT document FROM set_aside"))
    assert documents and leaks(documents) == []
    assert leaks(scraped) == []
    assert 'tillstream_edge_events_rejected_total{channel="dropfolder"' in scraped
    assert metric("tillstream_edge_device_rejected_total", device="dock") == 1  # the swipe


# -- consumers ----------------------------------------------------------------------------


class Careless(Consumer):
    """A consumer whose error messages quote the record, as a hurried author might write."""

    topics = (SALES.name,)

    def apply(self, ctx: Context, records: list[Record]) -> None:
        for record in records:
            if record.value["receipt_number"].startswith("LEAK"):
                line = record.value["lines"][0]["description"]
                raise ValueError(f"no profile for {record.value['customer_id']}: {line!r}")


def leaky_sale(store: str) -> dict[str, Any]:
    """A sale that never passed an edge: an e-mail as customer id, personal data in a
    description (a card number would not reach ``apply``: every consumer dead-letters it
    first, without its value: tests/test_consumers_believe.py)."""
    sale = sample_sale(store, customer="erika@example.org")
    sale["receipt_number"] = f"LEAK-{uuid.uuid4().hex[:6]}"
    sale["lines"][0]["description"] = "Erika Mustermann, +49 221 555 0100, Kölner Str. 12"
    return sale


async def dead_letters(
    consumer_factory: Any,
    name: str,
    n: int,
    reason: bytes | None = None,
    source: set[tuple[bytes, bytes]] | None = None,
) -> list[dict[str, bytes]]:
    """The first ``n`` dead letters of consumer ``name``, of one ``reason`` or from one of the
    ``source`` (partition, offset) pairs if given: the shared sales topic holds other tests'
    undecodable records too."""
    reader = await consumer_factory(deadletter.topic_for(name).name)
    found: list[dict[str, bytes]] = []
    async with asyncio.timeout(60):
        while len(found) < n:
            for batch in (await reader.getmany(timeout_ms=500)).values():
                found += [h for h in (dict(m.headers) for m in batch) if _wanted(h, reason, source)]
    return found[:n]


def _wanted(
    headers: dict[str, bytes], reason: bytes | None, source: set[tuple[bytes, bytes]] | None
) -> bool:
    if reason is not None and headers.get(deadletter.H_REASON) != reason:
        return False
    where = (headers.get(deadletter.H_PARTITION, b""), headers.get(deadletter.H_OFFSET, b""))
    return source is None or where in source


async def run_careless(
    settings: Settings, codec: AvroCodec, tmp_path: Path, consumer_factory: Any
) -> list[dict[str, bytes]]:
    name = f"careless-{uuid.uuid4().hex[:8]}"
    store = f"S-{uuid.uuid4().hex[:6]}"
    consumer = type("CarelessTest", (Careless,), {"name": name})(settings)
    await publish(settings, codec, [("sale", leaky_sale(store)), ("sale", sample_sale(store))])
    async with running(consumer, settings, f"sqlite:///{tmp_path / 'careless.db'}"):
        return await dead_letters(consumer_factory, name, 1, reason=b"handler-error")


async def test_dead_letter_headers_never_quote_the_record(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path, consumer_factory: Any
) -> None:
    (headers,) = await run_careless(kafka_topics, codec, tmp_path, consumer_factory)
    text = b" ".join(headers.values()).decode()
    assert leaks(text) == [], text
    error = headers[deadletter.H_ERROR].decode()
    assert error.startswith("ValueError: no profile for [email]"), error  # still says why


async def test_a_failed_batch_is_logged_without_the_record(
    kafka_topics: Settings,
    codec: AvroCodec,
    tmp_path: Path,
    consumer_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await run_careless(kafka_topics, codec, tmp_path, consumer_factory)
    assert leaks(log_text(caplog, skip="aiokafka"), "erika@example.org") == []


async def test_crm_run_leaks_nothing_to_logs_metrics_or_dead_letters(
    kafka_topics: Settings,
    codec: AvroCodec,
    postgres_url: str,
    consumer_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka_topics.kafka_bootstrap_servers,
        kafka_sasl_username="crm-profiles",
        kafka_sasl_password=SASL_PASSWORD,  # in the settings, unused on PLAINTEXT
    )
    url = postgres_url.replace("postgres@", f"postgres:{DB_PASSWORD}@")  # trust auth: any works
    store = f"S-{uuid.uuid4().hex[:6]}"
    customer = f"C-{uuid.uuid4().hex[:8]}"
    misrouted = sample_payment(sample_sale(store))  # a payment on the sales topic: refused
    misrouted["card"]["token"] = PAN
    producer = make_producer(settings)
    await producer.start()
    try:
        value = codec.encode("payment", misrouted)
        poison = b"\x00\x00\x00\x03\xe7" + f"erika@example.org {PAN}".encode()
        ours = {  # where our two bad records landed: the topic holds other tests' too
            (str(m.partition).encode(), str(m.offset).encode())
            for m in [
                await producer.send_and_wait(SALES.name, value, key=store_key(store)),
                await producer.send_and_wait(SALES.name, poison, key=store_key(store)),
            ]
        }
    finally:
        await producer.stop()
    sale = sample_sale(store, customer=customer)
    await publish(settings, codec, [("sale", sale), ("customer_request", _erase(customer))])

    caplog.clear()  # from here on: the consumer's own logs
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aiokafka")
    name = f"crm-{uuid.uuid4().hex[:8]}"
    crm = type("Crm", (CrmProfiles,), {"name": name})(settings)
    erased = f"SELECT COUNT(*) FROM crm_erasures WHERE customer_hash = '{customer_hash(customer)}'"
    port = free_port()
    async with running(crm, settings, url, listen=("127.0.0.1", port)):
        await wait_until(lambda: scalar(url, erased) == 1, what="the erasure")
        letters = await dead_letters(consumer_factory, name, 2, source=ours)
        async with httpx.AsyncClient(timeout=10) as http:
            scraped = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    logs = log_text(caplog, skip="aiokafka")  # the client's own DEBUG lines: see below

    assert {h[deadletter.H_REASON] for h in letters} == {b"wrong-topic", b"undecodable"}
    for headers in letters:
        assert leaks(b" ".join(headers.values()), customer) == [], headers
    assert leaks(logs, customer) == []
    assert "postgres:***@" in logs and "dead-lettered" in logs  # it did log both
    assert leaks(scraped, customer) == []
    assert f'consumer="{name}"' in scraped


async def test_debug_logging_prints_no_record_payloads(
    kafka_topics: Settings, codec: AvroCodec, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("aiokafka").level)
    configure_logging("DEBUG", json_lines=True)  # as a service with TILLSTREAM_LOG_LEVEL=DEBUG
    try:
        sale = sample_sale(f"S-{uuid.uuid4().hex[:6]}", customer="C-PAYLOAD-MARKER")
        await publish(kafka_topics, codec, [("sale", sale)])
    finally:
        root.handlers[:], _, _ = saved
        root.setLevel(saved[1])
        logging.getLogger("aiokafka").setLevel(saved[2])
    assert "C-PAYLOAD-MARKER" not in capsys.readouterr().err


def metric(name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def _erase(customer: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "customer_id": customer,
        "action": "ERASE",
        "reference": None,
        "requested_at": utcnow(),
    }


# -- secrets in settings and on the wire --------------------------------------------------


async def test_a_sasl_password_is_never_logged_or_echoed(
    kafka_broker: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aiokafka")
    for variable in [v for v in os.environ if v.startswith("TILLSTREAM_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("TILLSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TILLSTREAM_KAFKA_SASL_USERNAME", "store-100")
    monkeypatch.setenv("TILLSTREAM_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    monkeypatch.setenv("TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS", kafka_broker)
    monkeypatch.setenv("TILLSTREAM_KAFKA_SASL_MECHANISM", "PLAIN-TEXT")
    with pytest.raises(SettingsError) as bad:
        load_settings()
    assert leaks(str(bad.value)) == []
    monkeypatch.setenv("TILLSTREAM_KAFKA_SASL_MECHANISM", "PLAIN")
    cfg = load_settings()
    assert leaks(repr(cfg)) == [] and leaks(cfg.model_dump_json()) == []
    # The broker's listener speaks no SASL: the client tries, fails and logs at DEBUG.
    producer = make_producer(cfg, request_timeout_ms=3000, metadata_max_age_ms=3000)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.start(), timeout=10)
    with contextlib.suppress(Exception):
        await producer.stop()
    assert any(r.name.startswith("aiokafka") for r in caplog.records)
    assert leaks(log_text(caplog)) == []


def test_redaction_of_error_texts() -> None:
    texts: Iterable[tuple[BaseException, str]] = [
        (ValueError(f"customer erika@example.org card {PAN_GROUPED}"), "[email] card [digits]"),
        (ValueError("call +49 221 555 0100 or 555-0100"), "call [digits] or [digits]"),
        (ValueError("invalid literal for int(): 'Erika Mustermann'"), "int(): [value]"),
        (KeyError("customer_id"), "KeyError: 'customer_id'"),  # field names stay
        (RuntimeError("duplicate key\nDETAIL:  Key (customer_id)=(C-1) exists."), "key"),
    ]
    for exc, expected in texts:
        described = deadletter.describe(exc)
        assert described.endswith(expected), described
        assert leaks(described) == [] and "C-1" not in described
    letter = deadletter.DeadLetter(
        "c", "invalid", f"raw {PAN}", "t", 0, 1, deadletter.now()
    )  # fmt: skip
    assert leaks(b" ".join(v for _, v in letter.headers())) == []
