"""The sales audit: a chain day with planted faults audited to exactly those flags, a clean
day to none, the same flags whatever order the events arrive in, a backfilled receipt that
closes its gap, auditors' acknowledgements, the CLI and the read API; on SQLite and a real
PostgreSQL through the real applier, and once through a real broker as a process."""

from __future__ import annotations

import getpass
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from tests.audit_support import DAY, ChainDay, Event, Found, StoreDay, clean_store_day, local
from tests.consumer_support import ConsumerProcess, publish, wait_until
from tillstream.cli import main
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream_consumers.audit import SalesAudit, gauges, pacing, queries
from tillstream_consumers.audit.checks import audit_day, day_end
from tillstream_consumers.audit.flags import KINDS
from tillstream_consumers.audit.loading import load_store_day
from tillstream_consumers.audit.pacing import SHARE, Pacing
from tillstream_consumers.audit.reading import HOLD_SECONDS
from tillstream_consumers.runtime.access import ACK, READ, SIGN_IN, Principal
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.guard import Access
from tillstream_consumers.runtime.testing import ConsumerHarness
from tillstream_consumers.runtime.web import service_app

SETTINGS = Settings()

# -- the chain day ----------------------------------------------------------------------


def open_flags(db: Database) -> Found:
    return {
        (str(store), str(kind), str(subject))
        for store, kind, subject in db.fetchall(
            "SELECT store_id, kind, subject FROM audit_flags WHERE is_open = 1"
        )
    }


def audited(url: str, *batches: list[Event]) -> ConsumerHarness:
    harness = ConsumerHarness(SalesAudit(SETTINGS), url)
    for batch in batches:
        if batch:
            harness.apply_events(*batch)
    return harness


@pytest.fixture
def fresh_url(db_url: str, tmp_path: Path) -> Callable[[], str]:
    """Another empty database of the same kind as ``db_url``, each time it is called."""
    made = iter(range(1, 1000))

    def make() -> str:
        n = next(made)
        if db_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path / f'audit-{n}.db'}"
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        server = db_url.rsplit("/", 1)[0]
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{server}/{name}"

    return make


# -- the checks -------------------------------------------------------------------------


def test_a_chain_day_is_audited_to_exactly_its_planted_faults(db_url: str) -> None:
    chain = ChainDay("S")
    harness = audited(db_url, chain.events())
    assert open_flags(harness.db) == chain.planted()
    s1, s2, s3, s4 = chain.stores
    days = {d.store_id: d for d in queries.store_days(harness.db, DAY.isoformat())}
    assert {s: d.status for s, d in days.items()} == {
        s1: "closed-balanced",
        s2: "closed-unbalanced",
        s3: "closed-unbalanced",
        s4: "silent",
    }
    detail = queries.store_day(harness.db, s3, DAY, _now(), SETTINGS)
    assert detail is not None
    cash = [b for b in detail["balances"] if b["terminal_id"] == "T01"]
    assert [(b["tender"], Decimal(b["over_short"]), b["operator_id"]) for b in cash] == [
        ("CASH", Decimal("-20.00"), "op-31")
    ]
    assert Decimal(detail["over_short_by_cashier"]["op-31"]) == Decimal("-20.00")
    (short,) = [f for f in detail["flags"] if f["kind"] == "over_short"]
    assert Decimal(short["amount"]) == Decimal("-20.00") and short["operator_id"] == "op-31"
    assert "short by 20" in short["message"]


def test_a_clean_day_has_no_flags(db_url: str) -> None:
    stores = ["C-1", "C-2", "C-3"]
    events = [
        e
        for day in (DAY - timedelta(days=1), DAY)
        for store in stores
        for e in clean_store_day(store, day).all_events()
    ]
    harness = audited(db_url, events)
    assert open_flags(harness.db) == set()
    statuses = {d.status for d in queries.store_days(harness.db)}
    assert statuses == {"closed-balanced"}


def test_the_flags_do_not_depend_on_the_order_events_arrive_in(
    db_url: str, fresh_url: Callable[[], str]
) -> None:
    chain = ChainDay("O")
    lost_day, _, lost_flags = lost_receipt_day("O-5")
    events = chain.events() + lost_day
    rng = random.Random(14)
    orders = [list(reversed(events))]
    for _ in range(2):
        shuffled = events[:]
        rng.shuffle(shuffled)
        orders.append(shuffled)
    for order in orders:
        cut = sorted(rng.sample(range(1, len(order)), 6))
        batches = [order[a:b] for a, b in zip([0, *cut], [*cut, len(order)], strict=True)]
        harness = audited(fresh_url(), *batches)
        assert open_flags(harness.db) == chain.planted() | lost_flags


def test_a_backfilled_receipt_closes_its_gap(db_url: str) -> None:
    chain = ChainDay("B")
    harness = audited(db_url, chain.events())
    s2 = chain.stores[1]
    gap = {f for f in open_flags(harness.db) if f[1] == "receipt_gap"}
    assert len(gap) == 1
    harness.apply_events(*chain.missing)  # the POSLog import, days later
    assert open_flags(harness.db) == chain.planted() - gap
    resolved = harness.db.fetchall(
        "SELECT subject, resolved_at FROM audit_flags WHERE store_id = ? AND kind = ?",
        (s2, "receipt_gap"),
    )
    assert len(resolved) == 1 and resolved[0][1] is not None  # kept, as resolved


def test_a_sale_after_its_till_settled_is_flagged(db_url: str) -> None:
    sd = clean_store_day("A-1", DAY)
    till = sd.tills[0]
    extra = till.sell(local(DAY, 20, 30), "CARD")  # after 20:00's close, before 21:00's
    harness = audited(db_url, sd.all_events())
    number = extra[0][1]["receipt_number"]
    assert open_flags(harness.db) == {("A-1", "after_till_close", f"T01 receipt {number}")}


ALICE = Principal("alice@example.org", SIGN_IN, "alice-sub", frozenset({READ, ACK}))
BOB = Principal("bob@example.org", SIGN_IN, "bob-sub", frozenset({READ, ACK}))


def test_acknowledgements_are_kept_and_review_the_day(db_url: str) -> None:
    chain = ChainDay("K")
    harness = audited(db_url, chain.events())
    s3 = chain.stores[2]
    detail = queries.store_day(harness.db, s3, DAY, _now(), SETTINGS)
    assert detail is not None and detail["status"] == "closed-unbalanced"
    for flag in detail["flags"]:
        queries.acknowledge(harness.db, flag["flag_id"], "spoke to the cashier", ALICE, _now())
    first = detail["flags"][0]["flag_id"]
    queries.acknowledge(harness.db, first, "and again", BOB, _now())
    detail = queries.store_day(harness.db, s3, DAY, _now(), SETTINGS)
    assert detail is not None and detail["status"] == "closed-reviewed"  # not balanced
    trail = next(f for f in detail["flags"] if f["flag_id"] == first)["acknowledgements"]
    assert [(a["by"], a["by_kind"], a["note"]) for a in trail] == [
        ("alice@example.org", "sign-in", "spoke to the cashier"),
        ("bob@example.org", "sign-in", "and again"),
    ]
    with pytest.raises(queries.UnknownFlag):
        queries.acknowledge(harness.db, "nope", "x", ALICE, _now())
    # New events re-audit the day; acknowledgements stay with their flags.
    harness.apply_events(*chain.missing)
    again = queries.store_day(harness.db, s3, DAY, _now(), SETTINGS)
    assert again is not None and again["status"] == "closed-reviewed"


# -- the command line and the read API ---------------------------------------------------


def test_the_cli_lists_details_and_acknowledges(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    chain = ChainDay("L")
    audited(url, chain.events()).db.close()
    runner = CliRunner()
    listed = runner.invoke(main, ["audit", "--db", url, "--day", DAY.isoformat(), "--json"])
    assert listed.exit_code == 0, listed.output
    statuses = {d["store_id"]: d["status"] for d in json.loads(listed.output)}
    assert statuses[chain.stores[3]] == "silent"
    s3 = chain.stores[2]
    shown = runner.invoke(main, ["audit", "--db", url, "--store", s3, "--day", DAY.isoformat()])
    assert shown.exit_code == 0, shown.output
    assert "-20.00" in shown.output  # T01's cash, in the balances
    assert "never" in shown.output  # T02 was never settled
    detail = json.loads(
        runner.invoke(
            main, ["audit", "--db", url, "--store", s3, "--day", DAY.isoformat(), "--json"]
        ).output
    )
    flag = next(f["flag_id"] for f in detail["flags"] if f["kind"] == "over_short")
    acked = runner.invoke(main, ["audit", "ack", flag, "--note", "counted again", "--db", url])
    assert acked.exit_code == 0, acked.output
    # Recorded as this machine's user: never a name typed on the command line.
    assert flag in acked.output and f"by {getpass.getuser()} (local)" in acked.output
    typed = runner.invoke(main, ["audit", "ack", flag, "--note", "x", "--by", "carol", "--db", url])
    assert typed.exit_code == 2 and "No such option '--by'" in typed.output
    card = runner.invoke(
        main, ["audit", "ack", flag, "--note", "card 4111 1111 1111 1111", "--db", url]
    )
    assert card.exit_code == 2 and "card number" in card.output and "4111" not in card.output
    unknown = runner.invoke(main, ["audit", "ack", "nope", "--note", "x", "--db", url])
    assert unknown.exit_code != 0 and "no flag nope" in unknown.output


@asynccontextmanager
async def audit_api(harness: ConsumerHarness) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the audit service's routes (read API and page) over ``harness``'s
    database."""

    async def query(fn: Callable[[Database], Any]) -> Any:
        return fn(harness.db)

    # As the service serves itself with neither sign-in nor tokens: on loopback, to the
    # machine's own user (tests/test_audit_security.py: signed in, with tokens).
    access = Access(SETTINGS, query, None, loopback_only=True)
    app = service_app(
        "sales-audit", lambda: (True, 0), SalesAudit(SETTINGS).routes(query), None, access
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client


async def test_the_read_api_lists_details_and_acknowledges(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    chain = ChainDay("R")
    harness = audited(url, chain.events())
    async with audit_api(harness) as client:
        days = (await client.get("/v1/audit/days", params={"day": DAY.isoformat()})).json()
        assert {d["store_id"] for d in days} == set(chain.stores)
        latest = (await client.get("/v1/audit/days")).json()
        assert {d["business_day"] for d in latest} == {DAY.isoformat()}
        s2 = chain.stores[1]
        detail = (await client.get(f"/v1/audit/days/{s2}/{DAY.isoformat()}")).json()
        kinds = sorted(f["kind"] for f in detail["flags"] if f["open"])
        assert kinds == ["duplicate_number", "receipt_gap"]
        flag = detail["flags"][0]["flag_id"]
        acked = await client.post(f"/v1/audit/flags/{flag}/ack", json={"note": "till restarted"})
        assert acked.status_code == 201
        assert (acked.json()["by"], acked.json()["by_kind"]) == ("local user", "local")
        assert (
            await client.post("/v1/audit/flags/nope/ack", json={"note": "x"})
        ).status_code == 404
        typed = await client.post(f"/v1/audit/flags/{flag}/ack", json={"note": "x", "by": "d"})
        assert typed.status_code == 422 and typed.json()["problems"][0]["field"] == "by"
        empty = await client.post(f"/v1/audit/flags/{flag}/ack", json={"note": " "})
        assert empty.status_code == 422
        assert (await client.get(f"/v1/audit/days/{s2}/2026-13-01")).status_code == 400
        assert (await client.get(f"/v1/audit/days/{s2}/2020-01-01")).status_code == 404


# -- through the broker -----------------------------------------------------------------


async def test_tillstream_consume_audit_finds_the_planted_faults(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    chain = ChainDay(f"K{uuid.uuid4().hex[:6]}")
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    await publish(kafka_topics, codec, chain.events())
    process = ConsumerProcess(
        "audit",
        kafka_topics.kafka_bootstrap_servers,
        url,
        tmp_path / "run",
        args=["--group", f"audit-{uuid.uuid4().hex[:8]}"],
    ).start()
    try:
        mine = set(chain.stores)

        def found() -> Found:
            db = Database(url)
            try:
                return {f for f in open_flags(db) if f[0] in mine}
            except Exception:
                return set()
            finally:
                db.close()

        await wait_until(lambda: found() == chain.planted(), timeout=120, what="planted flags")
        base = f"http://127.0.0.1:{process.port}"
        s4 = chain.stores[3]
        detail = httpx.get(f"{base}/v1/audit/days/{s4}/{DAY.isoformat()}").json()
        assert detail["status"] == "silent"
        series = f'tillstream_audit_flags{{kind="silent_store",store="{s4}"}} 1.0'
        await wait_until(
            lambda: series in httpx.get(f"{base}/metrics").text, what="the silent store's gauge"
        )
        await publish(kafka_topics, codec, chain.missing)
        await wait_until(
            lambda: found() == {f for f in chain.planted() if f[1] != "receipt_gap"},
            timeout=120,
            what="the gap closed",
        )
    finally:
        assert process.stop() == 0, process.log()[-3000:]


def _now() -> datetime:
    return datetime.now(UTC)


# -- each check on its own ----------------------------------------------------------------


def test_payments_must_add_up_once_the_till_settled(db_url: str) -> None:
    sd = clean_store_day("P-1", DAY)
    till = sd.tills[0]
    unpaid = till.sell(local(DAY, 16), "CARD")
    sd.tills[0].events.remove(unpaid[1])  # its payment never comes
    trading = StoreDay("P-2", DAY)
    open_till = trading.till("T01", "op-1")
    open_till.open(local(DAY, 8))
    pending = open_till.sell(local(DAY, 9), "CARD")
    open_till.events.remove(pending[1])
    now = local(DAY, 10)  # the store is trading: nothing is due yet
    harness = audited(db_url, sd.all_events(), trading.all_events())
    number = unpaid[0][1]["receipt_number"]
    flags = open_flags(harness.db)
    assert ("P-1", "payment_mismatch", f"T01 {number}") in flags
    (row,) = harness.db.fetchall(
        "SELECT amount FROM audit_flags WHERE store_id = 'P-1' AND kind = 'payment_mismatch'"
    )
    assert Decimal(row[0]).scaleb(-4) == -unpaid[0][1]["totals"]["net_amount"]
    # While the other store trades, its unpaid receipt is pending, not flagged.
    early = audit_day(load_store_day(harness.db, "P-2", DAY), now, SETTINGS)
    assert early.pending == (pending[0][1]["event_id"],)
    assert [f.kind for f in early.flags] == []


def test_totals_copies_missing_declarations_and_unclosed_days(db_url: str) -> None:
    sd = clean_store_day("D-1", DAY)
    first = sd.tills[0]
    sale = next(r for e, r in first.events if e == "sale")
    copy = {**sale, "event_id": str(uuid.uuid4())}
    sd.events.append(("sale", copy))  # a resend under another id, same content
    no_count = StoreDay("D-2", DAY)
    till = no_count.till("T01", "op-1")
    till.open(local(DAY, 8))
    till.sell(local(DAY, 9))
    till.control("TILL_CLOSE", local(DAY, 20))  # settled without counting
    harness = audited(db_url, sd.all_events(), no_count.all_events())
    found = open_flags(harness.db)
    assert ("D-1", "duplicate_copy", f"T01 {sale['receipt_number']}") in found
    assert ("D-2", "no_declaration", "T01") in found
    assert ("D-2", "day_not_closed", "day") in found  # never closed, long ago
    # A copy is one receipt: its payments are counted once, against one total.
    assert not any(f[1] == "payment_mismatch" for f in found if f[0] == "D-1")


def test_an_overdue_day_and_a_silent_store_are_flagged_without_a_new_event(db_url: str) -> None:
    today = datetime.now(UTC).date()
    sd = StoreDay("N-1", today)
    till = sd.till("T01", "op-1")
    till.open(local(today, 8))
    till.sell(local(today, 9), "CARD")
    yesterday = clean_store_day("N-2", today - timedelta(days=1)).all_events()
    service = SalesAudit(SETTINGS)
    harness = ConsumerHarness(service, db_url)
    harness.apply_events(*yesterday, *sd.all_events())
    # Trading: nothing to say yet, not even of N-2, which traded yesterday and not yet today.
    assert open_flags(harness.db) == set()
    later = day_end(today, 60) + timedelta(hours=SETTINGS.audit_close_grace_hours, minutes=1)
    assert service.flag_overdue(harness.db, later) == 1
    assert open_flags(harness.db) == {
        ("N-1", "day_not_closed", "day"),
        ("N-1", "till_not_closed", "T01"),
        ("N-2", "silent_store", "N-2"),
    }
    assert service.flag_overdue(harness.db, later) == 0  # flagged once


def test_over_short_within_the_tolerance_is_shown_not_flagged(db_url: str) -> None:
    sd = StoreDay("T-1", DAY)
    sd.store_event("STORE_DAY_OPEN", local(DAY, 7))
    for terminal, short in (("T01", "1.00"), ("T02", "1.01")):
        till = sd.till(terminal, f"op-{terminal}")
        till.open(local(DAY, 8))
        till.sell(local(DAY, 9))
        till.close(local(DAY, 20), short=Decimal(short))
    sd.store_event("STORE_DAY_CLOSE", local(DAY, 21))
    harness = audited(db_url, sd.all_events())
    assert open_flags(harness.db) == {("T-1", "over_short", "T02 CASH")}
    detail = queries.store_day(harness.db, "T-1", DAY, _now(), SETTINGS)
    assert detail is not None
    assert {b["terminal_id"]: b["over_short"] for b in detail["balances"]} == {
        "T01": "-1.00",
        "T02": "-1.01",
    }


def test_the_business_day_is_the_stores_not_the_utc_day(db_url: str) -> None:
    # A store west of UTC: its evening is the next UTC day, still its business day.
    sd = clean_store_day("W-1", DAY)
    west = []
    for event, record in sd.all_events():
        shifted = dict(record)
        if "utc_offset_minutes" in record:  # payments have none
            shifted["utc_offset_minutes"] = -300
        shifted["occurred_at"] = record["occurred_at"] + timedelta(hours=6)
        west.append((event, shifted))
    harness = audited(db_url, west)
    assert open_flags(harness.db) == set()
    (day,) = queries.store_days(harness.db, store="W-1")
    assert day.business_day == DAY.isoformat() and day.status == "closed-balanced"
    assert day.closed_at == "2026-03-02T21:00:00-05:00"


def lost_receipt_day(store: str, day: date = DAY) -> tuple[list[Event], list[Event], Found]:
    """A store-day whose cash receipt never arrives while its payment does, and whose last
    receipt is post-voided: its events, the lost receipt, and the flags it gives."""
    sd = StoreDay(store, day)
    sd.store_event("STORE_DAY_OPEN", local(day, 7))
    till = sd.till("T01", "op-1")
    till.open(local(day, 8))
    till.sell(local(day, 9))
    lost = till.sell(local(day, 10))  # the cash is in the drawer...
    till.events.remove(lost[0])  # ...the receipt never reaches head office
    voided = till.sell(local(day, 11))
    till.post_void(local(day, 11, 30), voided)  # the cashier rang the wrong tender
    till.close(local(day, 20))
    sd.store_event("STORE_DAY_CLOSE", local(day, 21))
    sale = lost[0][1]
    flags = {
        (store, "receipt_gap", f"T01 {sale['receipt_number']}"),
        (store, "payment_without_sale", f"T01 {sale['event_id']}"),
    }  # and no over/short: the cash it took is expected in the drawer
    return sd.all_events(), [lost[0]], flags


def test_a_payment_whose_sale_never_came_counts_in_the_drawer_until_the_sale_does(
    db_url: str,
) -> None:
    events, lost, flags = lost_receipt_day("M-1")
    harness = audited(db_url, events)
    assert open_flags(harness.db) == flags
    # The page lists the payment behind the flag in the store's local time, by its receipt.
    flags_shown = queries.flags(harness.db, "M-1", DAY.isoformat())
    flag = next(f for f in flags_shown if f["kind"] == "payment_without_sale")
    (payment,) = queries.events(harness.db, flag["events"])
    assert payment["what"] == "cash captured for a sale never received"
    assert payment["at"].endswith("+01:00")  # the store's offset, not UTC
    harness.apply_events(*lost)  # backfilled
    assert open_flags(harness.db) == set()
    (payment,) = queries.events(harness.db, flag["events"])
    assert payment["what"] == f"cash captured for receipt {lost[0][1]['receipt_number']}"


@pytest.mark.parametrize("first", ["payment", "till_event", "sale", "sale_void"])
def test_a_topic_read_ahead_of_the_others_flags_nothing_not_read_yet(
    db_url: str, first: str
) -> None:
    """A consumer that catches up reads each topic at its own pace: here one whole topic,
    then the others, of a day published in time order. No flag may show that the events
    still to be read would take back (a gap, a payment without its sale, an over/short, a
    payment mismatch), and in the end exactly the planted ones do."""
    today = datetime.now(UTC).date()  # not over: only the reading can clear a finding
    events, _, flags = lost_receipt_day(f"RA-{first}", today)
    published = sorted(events, key=lambda e: e[1]["occurred_at"])  # stable: a sale, its payment
    start = int(datetime.now(UTC).timestamp() * 1000)
    stamped = [(event, record, start + i) for i, (event, record) in enumerate(published)]
    harness = ConsumerHarness(SalesAudit(SETTINGS), db_url)
    topics = ("sale", "payment", "till_event", "sale_void")
    for topic in [first, *(t for t in topics if t != first)]:
        batch = [s for s in stamped if s[0] == topic]
        harness.apply_events(*((e, r) for e, r, _ in batch), published_ms=[m for *_, m in batch])
        assert open_flags(harness.db) <= flags, f"after the {topic} topic"
    harness.consumer.settle(harness.db, datetime.now(UTC))
    assert open_flags(harness.db) == flags


def test_sales_read_ahead_of_a_till_event_numbered_between_them_show_no_gap(
    db_url: str,
) -> None:
    """Most tills number receipts and till events with one counter: a pickup between two
    sales holds the number between theirs. Sales read ahead of the till events must not
    flag that number as a gap; a number that truly never came is flagged, after the hold."""
    today = datetime.now(UTC).date()
    sd = StoreDay("RA-P", today)
    till = sd.till("T01", "op-1")
    till.open(local(today, 8))
    till.sell(local(today, 9))
    till.pickup(local(today, 10), Decimal("100.00"))  # a till event, numbered
    pickup = f"T01 {till.number:06d}"
    till.sell(local(today, 11))
    lost = till.sell(local(today, 12))
    till.events.remove(lost[0])  # never reaches head office
    missing = f"T01 {lost[0][1]['receipt_number']}"
    till.sell(local(today, 13))
    start = int(datetime.now(UTC).timestamp() * 1000)
    published = sorted(sd.all_events(), key=lambda e: e[1]["occurred_at"])
    stamped = [(event, record, start + i) for i, (event, record) in enumerate(published)]
    harness = ConsumerHarness(SalesAudit(SETTINGS), db_url)
    for topic in ("sale", "payment"):  # the till events come later
        batch = [s for s in stamped if s[0] == topic]
        harness.apply_events(*((e, r) for e, r, _ in batch), published_ms=[m for *_, m in batch])
    harness.consumer.settle(harness.db, datetime.now(UTC))
    gaps = {subject for _, kind, subject in open_flags(harness.db) if kind == "receipt_gap"}
    assert gaps == set(), "the pickup's number is not read yet, so no gap can be told"
    later = datetime.now(UTC) + timedelta(seconds=HOLD_SECONDS + 1)
    harness.consumer.settle(harness.db, later)  # the till events never come: the hold ends
    gaps = {subject for _, kind, subject in open_flags(harness.db) if kind == "receipt_gap"}
    assert gaps == {pickup, missing}
    # The till sells on: its day is audited again, the gaps wait again, and stay shown.
    more = [e for e in till.sell(local(today, 14)) if e[0] == "sale"]
    harness.apply_events(*more, published_ms=[start + len(stamped)])
    harness.consumer.settle(harness.db, datetime.now(UTC))
    gaps = {subject for _, kind, subject in open_flags(harness.db) if kind == "receipt_gap"}
    assert gaps == {pickup, missing}, "a flag shown is not taken back by a new hold"
    batch = [s for s in stamped if s[0] == "till_event"]
    harness.apply_events(*((e, r) for e, r, _ in batch), published_ms=[m for *_, m in batch])
    gaps = {subject for _, kind, subject in open_flags(harness.db) if kind == "receipt_gap"}
    assert gaps == {missing}


def test_a_finding_waits_for_other_topics_no_longer_than_the_hold(db_url: str) -> None:
    """A till's count is the last thing it publishes for the day: no payment follows it to
    move the payments' mark past it. A short waits for the payments, but not for long."""
    today = datetime.now(UTC).date()
    sd = StoreDay("H-1", today)
    till = sd.till("T01", "op-1")
    till.open(local(today, 8))
    till.sell(local(today, 9))
    till.close(local(today, 20), short=Decimal("20.00"))
    harness = audited(db_url, sd.all_events())
    assert open_flags(harness.db) == set()
    assert harness.db.fetchall("SELECT COUNT(*) FROM audit_dirty") == [(1,)]
    later = datetime.now(UTC) + timedelta(seconds=HOLD_SECONDS + 1)
    harness.consumer.settle(harness.db, later)
    assert open_flags(harness.db) == {("H-1", "over_short", "T01 CASH")}
    assert harness.db.fetchall("SELECT COUNT(*) FROM audit_dirty") == [(0,)]


def test_a_payment_waiting_for_sales_is_flagged_once_a_later_sale_is_read(db_url: str) -> None:
    today = datetime.now(UTC).date()
    sd = StoreDay("M-3", today)
    sd.store_event("STORE_DAY_OPEN", local(today, 7))
    till = sd.till("T01", "op-1")
    till.open(local(today, 8))
    till.sell(local(today, 9))
    lost = till.sell(local(today, 10))  # the day's last sale never arrives; its payment does
    till.events.remove(lost[0])
    till.close(local(today, 20))
    sd.store_event("STORE_DAY_CLOSE", local(today, 21))
    harness = audited(db_url, sd.all_events())  # published in this order
    assert open_flags(harness.db) == set()  # a later sale may still fill the gap, pay them
    tomorrow = today + timedelta(days=1)
    next_day = StoreDay("M-3", tomorrow)
    next_day.till("T01", "op-1").sell(local(tomorrow, 9))  # published after the payment
    harness.apply_events(*next_day.all_events())
    harness.consumer.settle(harness.db, datetime.now(UTC))
    assert {(kind, subject) for _, kind, subject in open_flags(harness.db)} == {
        ("payment_without_sale", f"T01 {lost[0][1]['event_id']}"),
    }  # the gap waits for the store's post-voids too (its number may be a post-void's)
    later = datetime.now(UTC) + timedelta(seconds=HOLD_SECONDS + 1)
    harness.consumer.settle(harness.db, later)  # none comes: the hold ends
    assert {(kind, subject) for _, kind, subject in open_flags(harness.db)} == {
        ("receipt_gap", f"T01 {lost[0][1]['receipt_number']}"),
        ("payment_without_sale", f"T01 {lost[0][1]['event_id']}"),
    }


# -- the auditor's page -------------------------------------------------------------------


async def test_the_auditors_page_shows_the_chain_and_takes_an_acknowledgement(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    chain = ChainDay("H")
    harness = audited(url, chain.events())
    async with audit_api(harness) as client:
        page = await client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        for store, status in zip(
            chain.stores,
            ["closed-balanced", "closed-unbalanced", "closed-unbalanced", "silent"],
            strict=True,
        ):
            assert f'href="/audit/{store}/{DAY.isoformat()}">{store}</a>' in page.text
            assert f'<span class="status {status}">{status}</span>' in page.text
        s3 = chain.stores[2]
        detail = await client.get(f"/audit/{s3}/{DAY.isoformat()}")
        assert detail.status_code == 200
        assert "short by 20.00" in detail.text and 'class="num short">-20.00 EUR<' in detail.text
        flags = queries.flags(harness.db, s3, DAY.isoformat())
        late = next(f for f in flags if f["kind"] == "late_event")
        (event,) = late["events"]
        assert f'href="#event-{event}"' in detail.text and f'id="event-{event}"' in detail.text
        form = {"flag": late["flag_id"], "note": "sold after close <ok>"}
        foreign = await client.post(
            f"/audit/{s3}/{DAY.isoformat()}/ack", data=form, headers={"Origin": "http://evil"}
        )
        assert foreign.status_code == 403
        posted = await client.post(
            f"/audit/{s3}/{DAY.isoformat()}/ack", data=form, headers={"Origin": "http://localhost"}
        )
        assert posted.status_code == 303
        assert posted.headers["location"] == f"/audit/{s3}/{DAY.isoformat()}#flag-{late['flag_id']}"
        after = await client.get(f"/audit/{s3}/{DAY.isoformat()}")
        assert "acknowledged by local user (local)" in after.text
        assert "sold after close &lt;ok&gt;" in after.text  # escaped
        empty = await client.post(f"/audit/{s3}/{DAY.isoformat()}/ack", data={**form, "note": ""})
        assert empty.status_code == 400 and "note: required" in empty.text
        assert (await client.get(f"/audit/{s3}/2020-01-01")).status_code == 404


def test_the_gauges_count_open_flags_until_acknowledged(db_url: str) -> None:
    from prometheus_client import REGISTRY

    chain = ChainDay("G")
    service = SalesAudit(SETTINGS)
    harness = ConsumerHarness(service, db_url)
    harness.apply_events(*chain.events())
    service.refresh(harness.db)
    s3 = chain.stores[2]

    def value(kind: str) -> float | None:
        return REGISTRY.get_sample_value("tillstream_audit_flags", {"kind": kind, "store": s3})

    def unbalanced(store: str) -> float | None:
        return REGISTRY.get_sample_value("tillstream_audit_unbalanced_store_days", {"store": store})

    assert value("over_short") == 1 and value("till_not_closed") == 1
    assert value("receipt_gap") == 0  # every kind is there, at 0 when nothing is open
    assert unbalanced(s3) == 1  # closed, with flags nobody acknowledged
    s3_flags = queries.flags(harness.db, s3, DAY.isoformat(), include_resolved=False)
    flag = next(f for f in s3_flags if f["kind"] == "over_short")
    queries.acknowledge(harness.db, flag["flag_id"], "deducted", ALICE, _now())
    service.refresh(harness.db)
    assert value("over_short") == 0 and value("till_not_closed") == 1
    assert unbalanced(s3) == 1
    for f in s3_flags:
        queries.acknowledge(harness.db, f["flag_id"], "seen", ALICE, _now())
    service.refresh(harness.db)  # DAY is months ago: s3 has nothing open, its series go
    assert value("till_not_closed") is None and unbalanced(s3) is None
    assert (
        REGISTRY.get_sample_value("tillstream_audit_store_days", {"status": "silent"}) is not None
    )
    # The stores of the recent days have their series, at 0 when nothing is open, clean
    # ones included.
    gauges.publish(harness.db, DAY + timedelta(days=1), 7)
    assert {value(kind) for kind in KINDS} == {0} and unbalanced(s3) == 0
    s1 = chain.stores[0]
    assert (
        REGISTRY.get_sample_value("tillstream_audit_flags", {"kind": "over_short", "store": s1})
        == 0
    )
    assert unbalanced(s1) == 0
    gauges.publish(harness.db, DAY + timedelta(days=30), 7)
    assert unbalanced(s1) is None and unbalanced(s3) is None and value("over_short") is None


def test_two_receipts_under_one_number_keep_their_own_flags(db_url: str) -> None:
    sd = clean_store_day("U-1", DAY)
    till = sd.tills[0]
    first = till.sell(local(DAY, 16), "CARD")
    number = first[0][1]["receipt_number"]
    second = till.sell(local(DAY, 16, 30), "CARD", variant=1, number=number)
    for made in (first, second):
        till.events.remove(made[1])  # neither is paid
    harness = audited(db_url, sd.all_events())
    ids = sorted(m[0][1]["event_id"] for m in (first, second))
    assert open_flags(harness.db) == {
        ("U-1", "duplicate_number", f"T01 {number}"),
        *(("U-1", "payment_mismatch", f"T01 {number} {i}") for i in ids),
    }


def test_the_tills_own_totals_show_a_pickup_that_never_arrived(db_url: str) -> None:
    clean = clean_store_day("Z-1", DAY, totals=True)
    lossy = clean_store_day("Z-2", DAY, totals=True)
    till = lossy.tills[0]
    pickup = next(e for e in till.events if e[0] == "till_event" and e[1]["kind"] == "PICKUP")
    till.events.remove(pickup)
    harness = audited(db_url, clean.all_events(), lossy.all_events())
    assert open_flags(harness.db) == {
        ("Z-2", "receipt_gap", f"T01 {pickup[1]['sequence_number']}"),
        ("Z-2", "till_totals_mismatch", "T01 CASH"),
        ("Z-2", "over_short", "T01 CASH"),  # the drawer lacks what head office thinks is in it
    }
    amounts = dict(
        harness.db.fetchall(
            "SELECT kind, amount FROM audit_flags WHERE store_id = 'Z-2' AND is_open = 1 "
            "AND amount IS NOT NULL"
        )
    )
    assert Decimal(amounts["till_totals_mismatch"]).scaleb(-4) == Decimal("20.00")
    assert Decimal(amounts["over_short"]).scaleb(-4) == Decimal("-20.00")


def test_a_batch_touching_many_store_days_is_audited_on_the_next_refresh(db_url: str) -> None:
    chain = ChainDay("Y")

    class Deferring(SalesAudit):
        inline_store_days = 0  # every batch leaves its store-days to settle

    service = Deferring(SETTINGS)
    harness = ConsumerHarness(service, db_url)
    harness.apply_events(*chain.events())
    assert open_flags(harness.db) == set()  # not audited yet
    assert service.settle(harness.db, _now()) == len(chain.stores) * 2 - 1  # S4: no events today
    assert open_flags(harness.db) == chain.planted()
    assert harness.db.fetchall("SELECT * FROM audit_dirty") == []
    harness.apply_events(*chain.missing)
    service.refresh(harness.db)  # what the running service does every couple of seconds
    assert open_flags(harness.db) == {f for f in chain.planted() if f[1] != "receipt_gap"}


class SteppingClock:
    """A monotonic clock that moves one second each time it is read (every audit "takes"
    a second) and jumps when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_big_store_day_is_left_to_the_refresh(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = ChainDay("P")
    events = chain.events()
    store = chain.stores[1]  # the one with the lost receipt
    harness = ConsumerHarness(SalesAudit(SETTINGS), db_url)
    harness.apply_events(*events)
    flags = open_flags(harness.db)
    monkeypatch.setattr(pacing, "SMALL_DAY", 1)  # pretend every day is big
    harness.apply_events(*chain.missing)  # the lost receipt and its payment, backfilled
    assert open_flags(harness.db) == flags
    [(pending,)] = harness.db.fetchall(
        "SELECT new_events FROM audit_dirty WHERE store_id = ?", (store,)
    )
    assert pending == 1  # one receipt waits for the audit
    harness.consumer.settle(harness.db, datetime.now(UTC))
    gap = {f for f in chain.planted() if f[1] == "receipt_gap"}
    assert open_flags(harness.db) == chain.planted() - gap
    assert harness.db.fetchall("SELECT COUNT(*) FROM audit_dirty") == [(0,)]


def test_a_day_of_payments_read_ahead_of_its_sales_is_big(db_url: str) -> None:
    """What an audit reads sizes a day: a day of few receipts but many payments read ahead
    of their sales is left to the refresh like a full one."""
    today = datetime.now(UTC).date()
    sd = StoreDay("B-1", today)
    till = sd.till("T01", "op-1")
    till.open(local(today, 8))
    for minute in range(pacing.SMALL_DAY):
        till.sell(local(today, 9) + timedelta(minutes=minute), "CARD")
    till.close(local(today, 20))
    sales = [e for e in sd.all_events() if e[0] == "sale"]
    harness = audited(db_url, [e for e in sd.all_events() if e[0] != "sale"])
    [(facts,)] = harness.db.fetchall("SELECT facts FROM audit_days WHERE store_id = 'B-1'")
    assert facts > pacing.SMALL_DAY
    harness.apply_events(sales[0])
    assert harness.db.fetchall("SELECT new_events FROM audit_dirty") == [(1,)]


def test_dirty_store_days_are_settled_once_their_wait_has_passed(db_url: str) -> None:
    chain = ChainDay("Q")

    class Deferring(SalesAudit):
        inline_store_days = 0  # every batch leaves its store-days to the refresh

    service = Deferring(SETTINGS)
    clock = SteppingClock()
    service._pacing = Pacing(clock)  # every audit takes a second
    harness = ConsumerHarness(service, db_url)
    harness.apply_events(*chain.events())
    service.refresh(harness.db)  # never audited: due
    assert open_flags(harness.db) == chain.planted()
    gap = {f for f in chain.planted() if f[1] == "receipt_gap"}
    harness.apply_events(*chain.missing)
    service.refresh(harness.db)  # its wait: 4 x the audits of the 3 trading days
    assert open_flags(harness.db) == chain.planted()
    clock.now += 60
    service.refresh(harness.db)
    assert open_flags(harness.db) == chain.planted() - gap
    assert harness.db.fetchall("SELECT COUNT(*) FROM audit_dirty") == [(0,)]


def test_the_refresh_audits_dirty_days_in_at_most_a_share_of_the_time() -> None:
    clock = SteppingClock()
    pacing = Pacing(clock)
    one, two = ("S1", DAY), ("S2", DAY)
    assert pacing.due(one)
    with pacing.timing(one):
        pass  # a second
    with pacing.timing(two):
        pass  # another
    assert pacing.wait() == 2 * (1 / SHARE - 1)
    assert not pacing.due(one)
    clock.now += pacing.wait()
    assert pacing.due(one)
    pacing.forget_due()
    assert pacing.wait() == 0


def test_an_event_sent_again_changes_nothing_without_the_runtimes_memory(db_url: str) -> None:
    chain = ChainDay("R")
    harness = audited(db_url, chain.events())
    before = open_flags(harness.db)
    harness.apply_events(*chain.events()[:50])  # a till's resend: the same ids, new offsets
    assert open_flags(harness.db) == before == chain.planted()
    assert harness.db.fetchall("SELECT COUNT(*) FROM runtime_events") == [(0,)]
    transactions = harness.db.fetchall("SELECT COUNT(*) FROM audit_transactions")
    sales = len({r["event_id"] for e, r in chain.events() if e == "sale"})
    assert transactions == [(sales,)]
