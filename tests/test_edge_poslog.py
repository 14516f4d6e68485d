"""POSLog through the edge: HTTP, the drop folder and the backfill import, on a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.edge_masterdata_support import Topics, item, price
from tests.edge_support import EdgeProcess, dumps, live_poslog, payment_json, sale_json
from tests.fuzz_support import EdgeIntake
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_consumer
from tillstream.core.settings import Settings
from tillstream.core.topics import PAYMENTS, SALES, TILL_EVENTS
from tillstream.dev.processes import run_tillstream
from tillstream_edge.dropfolder import DropFolder
from tillstream_edge.masterdata_copy import MasterDataCopy
from tillstream_edge.poslog import parse_poslog

pytestmark = pytest.mark.usefixtures("kafka_topics")
DATA = Path(__file__).parent / "data" / "poslog"
BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<POSLog><Transaction><RetailStoreID>&lol3;</RetailStoreID></Transaction></POSLog>"""
# Nothing in it to publish: a training receipt and a suspended one.
NOTHING_TO_PUBLISH = b"""<POSLog>
<Transaction><RetailStoreID>9</RetailStoreID><WorkstationID>1</WorkstationID>
<SequenceNumber>301</SequenceNumber><TrainingModeFlag>true</TrainingModeFlag>
<RetailTransaction/></Transaction>
<Transaction><RetailStoreID>9</RetailStoreID><WorkstationID>1</WorkstationID>
<SequenceNumber>302</SequenceNumber><RetailTransaction TransactionStatus="Suspended"/>
</Transaction></POSLog>"""


async def events_of(
    settings: Settings, codec: AvroCodec, store: str, want: set[str], timeout: float = 60
) -> tuple[Counter[str], list[bytes]]:
    """Event ids (with counts) and raw values of ``store`` on sales, payments, till events."""
    consumer = make_consumer(
        settings, SALES.name, PAYMENTS.name, TILL_EVENTS.name, group_id=f"poslog-{time.time_ns()}"
    )
    await consumer.start()
    counts: Counter[str] = Counter()
    raw: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while not want <= set(counts):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    for m in batch:
                        if m.key == store.encode():
                            counts[str(codec.decode(m.value).record["event_id"])] += 1
                            raw.append(m.value)
        for batch in (await consumer.getmany(timeout_ms=2000)).values():
            for m in batch:
                if m.key == store.encode():
                    counts[str(codec.decode(m.value).record["event_id"])] += 1
    finally:
        await consumer.stop()
    return counts, raw


def expected_ids(source: Path | bytes) -> set[str]:
    data = source.read_bytes() if isinstance(source, Path) else source
    return {str(r["event_id"]) for _, r in parse_poslog(data).events}


def live(name: str) -> bytes:
    """A sample as a live till sends it (see ``live_poslog``)."""
    return live_poslog((DATA / name).read_text()).encode()


async def test_poslog_over_http_is_converted_masked_and_idempotent(
    edge_factory: Any, settings: Settings, codec: AvroCodec
) -> None:
    file = live("v6_customer_card.xml")
    edge = edge_factory("100")
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        first = await http.post(
            "/v1/poslog", content=file, headers={"content-type": "application/xml"}
        )
        again = await http.post("/v1/poslog", content=file)
        assert first.status_code == 202, first.text
        assert again.json() == first.json()  # a file sent twice: same answer
        bad = await http.post("/v1/poslog", content=b"<POSLog><Transaction>")
        assert bad.status_code == 422 and "poslog" in bad.text
        bomb = await http.post("/v1/poslog", content=BOMB)
        assert bomb.status_code == 422
    want = expected_ids(file)
    counts, raw = await events_of(settings, codec, "100", want)
    assert set(counts) == want and max(counts.values()) == 1
    blob = b"".join(raw)
    assert b"4111111111111111" not in blob and b"4111 1111 1111 1111" not in blob
    assert edge.metric("tillstream_edge_poslog_files_total", 'outcome="failed"') == 2


@pytest.fixture
def usd_edge(kafka_broker: str, tmp_path: Path) -> Iterator[EdgeProcess]:
    """The NCR sample's store 9, which sells in dollars, with a POSLog drop folder."""
    work = tmp_path / "edge-9"
    work.mkdir()
    (tmp_path / "drop").mkdir()
    edge = EdgeProcess(
        "9",
        kafka_broker,
        work,
        ["--poslog-dir", str(tmp_path / "drop")],
        env={"TILLSTREAM_STORE_CURRENCY": "USD"},
    )
    try:
        yield edge.start()
    finally:
        edge.kill()


async def test_drop_folder_sets_bad_files_aside_and_goes_on(
    usd_edge: EdgeProcess, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    folder, edge = tmp_path / "drop", usd_edge
    (folder / "a-bomb.xml").write_bytes(BOMB)
    (folder / "b-broken.xml").write_bytes(b"<POSLog><Transaction><RetailStoreID>9</Retail")
    (folder / "c-good.xml").write_bytes(live("ncr_2x.xml"))
    (folder / "d-controls.xml").write_bytes(live("control_22_store_day.xml"))
    (folder / "e-nothing.xml").write_bytes(NOTHING_TO_PUBLISH)
    old = time.time() - 10
    for p in folder.iterdir():
        os.utime(p, (old, old))
    want = expected_ids(live("ncr_2x.xml")) | expected_ids(live("control_22_store_day.xml"))
    counts, _ = await events_of(settings, codec, "9", want)
    assert set(counts) == want
    async with asyncio.timeout(20):
        while not (folder / "processed" / "e-nothing.xml.result.json").exists():
            await asyncio.sleep(0.2)
        while not (folder / "processed" / "d-controls.xml.result.json").exists():
            await asyncio.sleep(0.2)
    for name in ("a-bomb.xml", "b-broken.xml"):
        assert (folder / "rejected" / name).exists()
        reason = (folder / "rejected" / f"{name}.reason.txt").read_text()
        assert reason.strip()
    assert "DTD" in (folder / "rejected" / "a-bomb.xml.reason.txt").read_text()
    # A file with nothing to publish is read all the same, every transaction named with its
    # kind and reason: nothing in it is lost, nothing holds the folder back.
    nothing = json.loads((folder / "processed" / "e-nothing.xml.result.json").read_text())
    assert nothing["accepted"] == 0 and nothing["set_aside"] == []
    assert [(s["sequence_number"], s["kind"]) for s in nothing["skipped"]] == [
        ("301", "Training"),
        ("302", "RetailTransaction:Suspended"),
    ]
    # The converted files' records: what was published, and every transaction skipped. The
    # control transactions are published as till events, not skipped.
    record = json.loads((folder / "processed" / "c-good.xml.result.json").read_text())
    assert set(record["event_ids"]) == expected_ids(live("ncr_2x.xml")) and record["skipped"] == []
    assert record["dialect"] == "ncr-acs"  # detected from its acs: namespace
    controls = json.loads((folder / "processed" / "d-controls.xml.result.json").read_text())
    till_events = sum(
        1
        for name in ("ncr_2x.xml", "control_22_store_day.xml")
        for kind, _ in parse_poslog(live(name), default_currency="USD").events
        if kind == "till_event"
    )
    assert edge.metric("tillstream_edge_events_accepted_total", 'event_type="till_event"') == (
        till_events
    )
    assert edge.metric("tillstream_edge_poslog_files_total", 'outcome="failed"') == 2
    # Only read files' skipped transactions are counted.
    assert edge.metric("tillstream_edge_poslog_transactions_skipped_total") == len(
        controls["skipped"]
    ) + len(nothing["skipped"])


async def test_a_file_modified_in_the_future_is_taken_once_it_stops_changing(
    usd_edge: EdgeProcess, tmp_path: Path
) -> None:
    """A till whose clock runs three hours ahead (or a ``cp -p`` from one): its file is
    taken within seconds, not hours, and the edge says why, once."""
    folder = tmp_path / "drop"
    ahead = folder / "till-clock-ahead.xml"
    ahead.write_bytes(live("ncr_2x.xml"))
    later = time.time() + 3 * 3600
    os.utime(ahead, (later, later))
    async with asyncio.timeout(30):
        while not (folder / "processed" / "till-clock-ahead.xml.result.json").exists():
            await asyncio.sleep(0.2)
    record = json.loads((folder / "processed" / "till-clock-ahead.xml.result.json").read_text())
    assert record["event_ids"] and record["set_aside"] == []
    said = [line for line in usd_edge.log().splitlines() if "in the future" in line]
    assert len(said) == 1, said
    assert re.search(r"till-clock-ahead.xml: modified in the future, [23]:\d\d:\d\d ahead", said[0])
    assert usd_edge.metric("tillstream_edge_poslog_future_mtime_total") == 1


def test_a_file_modified_in_the_future_waits_while_it_grows(tmp_path: Path) -> None:
    """Written by halves by a writer whose clock runs ahead: the first half is never read."""
    intake = EdgeIntake(tmp_path, "9")
    folder = tmp_path / "drop"
    for sub in ("", "processed", "rejected"):
        (folder / sub).mkdir()
    drop = DropFolder(intake.ingestor, folder)
    document = live("ncr_2x.xml")
    growing = folder / "growing.xml"
    ahead = time.time() + 600
    try:
        for written in (len(document) // 2, len(document)):  # a scan after each half
            growing.write_bytes(document[:written])
            os.utime(growing, (ahead, ahead))
            assert intake.loop.run(drop.scan_once()) == 0
        assert intake.loop.run(drop.scan_once()) == 1  # unchanged since the last scan
        assert (folder / "processed" / "growing.xml").exists()
        assert not list((folder / "rejected").iterdir())
    finally:
        intake.close()


def sale_tx(sequence: int, *, item: str = "SKU-1", amount: str = "2.50", when: str = "") -> str:
    """A one-line cash sale of store 9, two hours ago unless ``when`` says otherwise."""
    when = when or (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="seconds")
    return f"""<Transaction><RetailStoreID>9</RetailStoreID><WorkstationID>T1</WorkstationID>
<SequenceNumber>{sequence}</SequenceNumber><EndDateTime>{when}</EndDateTime><RetailTransaction>
<LineItem><Sale><ItemID>{item}</ItemID><ExtendedAmount>{amount}</ExtendedAmount>
<Quantity>1</Quantity></Sale></LineItem>
<LineItem><Tender TenderType="Cash"><Amount>{amount}</Amount></Tender></LineItem>
<Total TotalType="TransactionGrandAmount">{amount}</Total></RetailTransaction></Transaction>"""


async def test_the_log_names_each_set_aside_transaction_and_the_rule_never_a_value(
    usd_edge: EdgeProcess, tmp_path: Path
) -> None:
    """The store's IT acts from the log: which transaction, which field, which rule; what
    the till sent stays out of it (an amount, a card number, an encoding's name)."""
    two_months_ago = (datetime.now(UTC) - timedelta(days=60)).isoformat(timespec="seconds")
    document = "<POSLog>{}</POSLog>".format(
        sale_tx(1)
        + sale_tx(2, amount="9.9Q7ZX")  # unreadable: the reason quotes it
        + sale_tx(3, when=two_months_ago)  # a rule: the plausibility window
        + sale_tx(4, item="4111111111111111")  # a card number where the SKU goes
    ).encode()
    undeclared = b'<?xml version="1.0" encoding="Q7ZXENC"?><POSLog/>'
    async with httpx.AsyncClient(base_url=usd_edge.url, timeout=30) as http:
        answer = await http.post("/v1/poslog", content=document)
        assert answer.status_code == 202, answer.text
        assert "9.9Q7ZX" in answer.text  # the till is told what it sent
        refused = await http.post("/v1/poslog", content=undeclared)
        assert refused.status_code == 422 and "Q7ZXENC" in refused.text
    (tmp_path / "drop" / "till-1.xml").write_bytes(document)
    async with asyncio.timeout(30):
        while not (tmp_path / "drop" / "processed" / "till-1.xml.result.json").exists():
            await asyncio.sleep(0.2)
    log = usd_edge.log()
    why = (
        "transaction 2 (#2) RetailTransaction (unreadable): line item: ExtendedAmount: <value> "
        "is not a decimal number | "
        "transaction 3 (#3) RetailTransaction (rule): occurred_at: more than 30 day(s) in the "
        "past (the edge's plausibility window, TILLSTREAM_EDGE_MAX_EVENT_AGE); older events "
        "are backfilled with 'tillstream edge import' | "
        "transaction 4 (#4) RetailTransaction (card_number): lines[0].sku: looks like a card "
        "number (PAN); a SKU may not hold one"
    )
    assert f"poslog document: 3 transaction(s) set aside (tillstream edge set-aside): {why}" in log
    assert f"poslog file till-1.xml: 2 events accepted, 0 transactions skipped, 3 set aside " \
           f"(tillstream edge set-aside): {why}" in log  # fmt: skip
    assert "poslog request refused with 422 (invalid_poslog): poslog: unreadable XML " \
           "declaration: <value>" in log  # fmt: skip
    for sent in ("9.9Q7ZX", "4111111111111111", "Q7ZXENC"):
        assert sent not in log


async def test_set_aside_transactions_are_published_exactly_once_after_the_fix(
    kafka_broker: str, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    """Store 9 sells in dollars; its edge was set up for euros. Its till's transactions are
    set aside (kept at the edge, not lost); once the setting is fixed, a retry beside the
    running edge publishes each of them, once, however often it is run."""
    work = tmp_path / "edge-9R"
    work.mkdir()
    edge = EdgeProcess("9R", kafka_broker, work, env={"TILLSTREAM_STORE_CURRENCY": "EUR"})
    edge.start()
    try:  # the sample as store 9R's: no other test of the session sells as 9R
        document = live("ncr_2x.xml").replace(b">9</RetailStoreID>", b">9R</RetailStoreID>")
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
            answer = await http.post("/v1/poslog", content=document)
        assert answer.status_code == 202, answer.text
        # The till events without money (sign-on, sign-off) name no currency: published.
        moneyless = [
            r
            for kind, r in parse_poslog(document, default_currency="USD").events
            if kind == "till_event" and not r["tenders"]
        ]
        assert answer.json()["accepted"] == len(moneyless) > 0
        kept = answer.json()["set_aside"]
        assert kept and all("USD is not this store's currency EUR" in k["reason"] for k in kept)
        assert edge.metric("tillstream_edge_poslog_transactions_set_aside_total") == len(kept)
        listed = run_tillstream("edge", "set-aside", "list", "--json", "--outbox", str(edge.outbox))
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [r["cause"] for r in rows] == ["rule"] * len(kept)
        fixed = {
            "TILLSTREAM_STORE_CURRENCY": "USD",
            "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        }
        retry = [
            "edge",
            "set-aside",
            "retry",
            "--all",
            "--store",
            "9R",
            "--outbox",
            str(edge.outbox),
        ]
        first = run_tillstream(*retry, env=fixed, timeout=120)
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"{len(kept)} of {len(kept)} transaction(s) now in the queue" in first.stderr
        again = run_tillstream(*retry, env=fixed, timeout=120)
        assert again.returncode == 0 and "0 of 0 transaction(s)" in again.stderr
        want = expected_ids(document)
        counts, _ = await events_of(settings, codec, "9R", want)
        assert set(counts) == want and max(counts.values()) == 1
        resolved = run_tillstream(
            "edge", "set-aside", "list", "--all", "--json", "--outbox", str(edge.outbox)
        )
        rows = [json.loads(line) for line in resolved.stdout.splitlines()]
        assert all(r["resolved_at"] and r["resolution"]["event_ids"] for r in rows)
    finally:
        edge.kill()


def test_import_is_resumable_and_publishes_nothing_twice(
    settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    (archive / "2024" / "09").mkdir(parents=True)
    source = (DATA / "return_negative_qty.xml").read_bytes()
    (archive / "2024" / "09" / "day1.xml").write_bytes(source)
    (archive / "2024" / "09" / "copy-of-day1.xml").write_bytes(source + b"\n")  # same transactions
    env = {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    command = ["edge", "import", str(archive), "--store", "300"]
    command += ["--outbox", str(tmp_path / "import.db")]
    first = run_tillstream(*command, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "2 file(s) imported" in first.stdout
    second = run_tillstream(*command, env=env, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "0 file(s) imported" in second.stdout and "2 already done" in second.stdout
    want = expected_ids(DATA / "return_negative_qty.xml")
    counts, _ = asyncio.run(events_of(settings, codec, "300", want))
    assert set(counts) == want
    assert max(counts.values()) == 1


def problems_of(answer: httpx.Response) -> dict[str, str]:
    return {p["field"]: p["message"] for p in answer.json()["problems"]}


async def test_poslog_answer_lists_skipped_and_set_aside_transactions(
    edge_factory: Any, settings: Settings, codec: AvroCodec
) -> None:
    """The kiosk chain's 2.2 file: its sale sits behind an <OriginalTransaction> (it was
    answered {"accepted": 0}); a document of nothing to publish names every transaction."""
    suspended = NOTHING_TO_PUBLISH.split(b"</Transaction>", 1)[1].removesuffix(b"</POSLog>")
    kiosk = live("kiosk_22_nonamespace_original_tx.xml").replace(
        b"</POSLog>", suspended + b"</POSLog>"
    )
    in_dollars = kiosk.replace(  # the sale only: the no-sale after it is the same
        b"<OperatorID>KIOSK", b"<CurrencyCode>USD</CurrencyCode><OperatorID>", 1
    )
    published = parse_poslog(kiosk).events
    assert [kind for kind, _ in published].count("till_event") == 1  # its no-sale
    edge = edge_factory("K17")
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        nothing = await http.post("/v1/poslog", content=NOTHING_TO_PUBLISH)
        assert nothing.status_code == 202, nothing.text
        assert nothing.json()["accepted"] == 0 and nothing.json()["set_aside"] == []
        assert [(s["transaction"], s["kind"], s["reason"]) for s in nothing.json()["skipped"]] == [
            (1, "Training", "training mode (not a real sale)"),
            (2, "RetailTransaction:Suspended", "status Suspended is not a completed sale"),
        ]
        # Another store's currency: each of its transactions is set aside, kept at the edge.
        dollars = await http.post("/v1/poslog", content=in_dollars)
        assert dollars.status_code == 202, dollars.text
        kept = dollars.json()["set_aside"]
        assert kept and all("USD is not this store's currency EUR" in k["reason"] for k in kept)
        first = await http.post("/v1/poslog", content=kiosk)
        assert first.status_code == 202, first.text
        assert first.json()["accepted"] == len(published)
        [skip] = first.json()["skipped"]
        assert (skip["sequence_number"], skip["kind"]) == ("302", "RetailTransaction:Suspended")
        again = await http.post("/v1/poslog", content=kiosk)
        assert again.json() == first.json()
    want = expected_ids(kiosk)
    counts, _ = await events_of(settings, codec, "K17", want)
    # (Other tests of the session may sell as K17 too: only this document's ids count.)
    assert want <= set(counts) and max(counts[i] for i in want) == 1
    # Counted per document read: the kiosk file twice, the nothing-to-publish one once.
    skipped = "tillstream_edge_poslog_transactions_skipped_total"
    assert edge.metric(skipped, 'kind="RetailTransaction:Suspended"') == 4


async def test_one_currency_per_store_on_the_json_channel_too(edge_factory: Any) -> None:
    store = "C1"
    edge = edge_factory(store)
    sale = sale_json(store, currency="USD")
    payment = payment_json(sale_json(store)) | {"currency": "GBP"}
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        answer = await http.post("/v1/events", content=dumps([sale, payment]))
        assert answer.status_code == 422, answer.text
        found = problems_of(answer)
        assert "USD is not this store's currency EUR" in found["events[0].currency"]
        assert "TILLSTREAM_STORE_CURRENCY" in found["events[0].currency"]
        pounds = await http.post("/v1/events", content=dumps(payment))
        assert pounds.status_code == 422, pounds.text
        assert "GBP is not this store's currency EUR" in problems_of(pounds)["currency"]
        good = await http.post("/v1/events", content=dumps(sale_json(store)))
        assert good.status_code == 202, good.text


def test_import_reports_skipped_and_set_aside_transactions(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "orders.xml").write_bytes((DATA / "v6_online_order_shipped.xml").read_bytes())
    (archive / "controls.xml").write_bytes(NOTHING_TO_PUBLISH)
    odd = (
        (DATA / "v6_online_order_shipped.xml")
        .read_bytes()
        .replace(b'UnitOfMeasureCode="EA"', b'UnitOfMeasureCode="BAG"', 1)
    )
    (archive / "odd.xml").write_bytes(odd)
    (archive / "broken.xml").write_bytes(b"<POSLog><Transaction>")
    command = ["edge", "import", str(archive)]
    command += ["--store", "WEB1", "--outbox", str(tmp_path / "import.db"), "--no-forward"]
    done = run_tillstream(*command, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr  # broken.xml cannot be parsed
    assert (
        "3 file(s) imported (2 events, 0 already known, 4 transaction(s) skipped, 1 set aside)"
    ) in done.stdout
    assert (
        f"skipped: {archive / 'orders.xml'}: transaction 880124 (#2): "
        "RetailTransaction:Ordered: status Ordered is not a completed sale"
    ) in done.stdout
    assert f"set aside: {archive / 'odd.xml'}: transaction 880123 (#1): RetailTransaction: " in (
        done.stderr
    )
    assert "unit of measure 'BAG'" in done.stderr
    assert "'tillstream edge set-aside retry --all'" in done.stderr
    assert f"failed: {archive / 'broken.xml'}: malformed XML" in done.stderr
    assert "1 file(s) could not be imported" in done.stderr
    listed = run_tillstream("edge", "set-aside", "list", "--outbox", str(tmp_path / "import.db"))
    assert listed.returncode == 0, listed.stderr
    assert "odd.xml  transaction 880123 (#1)  RetailTransaction  [unreadable]" in listed.stdout


async def test_import_marks_stock_items_from_the_stores_copy_but_compares_no_old_prices(
    settings: Settings, tmp_path: Path, codec: AvroCodec
) -> None:
    """A backfilled deposit must not move stock at head office any more than a live one;
    an old sale is not a price override because today's list price differs."""
    copy = MasterDataCopy(tmp_path / "import.masterdata.db", "300", ZoneInfo("UTC"), codec)
    await copy.open()
    topics = Topics(codec)
    await copy.apply([
        topics.item(item("SKU-SOCKS-3P", stock_item=False)),
        topics.item(item("4025929673704")),
        topics.price(price("4025929673704", "3.49")),  # the file's line is at 2.99
    ])  # fmt: skip
    await copy.close()
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "day1.xml").write_bytes((DATA / "return_negative_qty.xml").read_bytes())
    command = ["edge", "import", str(archive), "--store", "300"]
    env = {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    command += ["--outbox", str(tmp_path / "import.db"), "--no-forward"]
    done = run_tillstream(*command, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    with sqlite3.connect(tmp_path / "import.db") as outbox:
        values = [v for (v,) in outbox.execute("SELECT value FROM events WHERE event_type='sale'")]
    lines = {
        line["sku"]: line
        for value in values
        for line in codec.decode(value).record["lines"]
        if line["sku"] in ("SKU-SOCKS-3P", "4025929673704")
    }
    assert lines["SKU-SOCKS-3P"]["stock_item"] is False
    assert lines["4025929673704"]["stock_item"] is True
    assert lines["4025929673704"]["list_price"] is None


def test_import_without_a_copy_says_so_and_imports_as_sent(
    settings: Settings, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "day1.xml").write_bytes((DATA / "return_negative_qty.xml").read_bytes())
    outbox = tmp_path / "import.db"
    command = ["edge", "import", str(archive), "--store", "300", "--outbox", str(outbox)]
    env = {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    done = run_tillstream(*command, "--no-forward", env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"no item copy at {tmp_path / 'import.masterdata.db'}: sales imported as sent" in (
        done.stdout
    )
    assert not (tmp_path / "import.masterdata.db").exists()  # none made up
