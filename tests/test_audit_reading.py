"""An auditor's reading of the audit (issue 22): acknowledged is not balanced, the money at
stake stays shown; a drawer worked by several cashiers is attributed as the chain runs its
drawers; receipt numbers as the till wrote them, the currency with every amount, store-local
acknowledgements, what to do next about each flag; ``tillstream audit`` whole on a narrow
terminal and plain in a pipe, ``audit ack --api``, ``tillstream report`` counting every flag.
Through the real applier into SQLite, the service's own routes, and the real command line."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from tests.audit_support import DAY, FLOAT, ChainDay, Event, StoreDay, audit_service_http, local
from tillstream.cli import main
from tillstream.core.settings import Settings
from tillstream_consumers.analytics import Analytics
from tillstream_consumers.audit import SalesAudit, gauges, queries
from tillstream_consumers.audit.drawers import split
from tillstream_consumers.audit.flags import KINDS, NEXT_STEPS
from tillstream_consumers.audit.status import STATUSES
from tillstream_consumers.runtime import api_tokens
from tillstream_consumers.runtime.access import ACK, READ, SIGN_IN, Principal
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.guard import Access
from tillstream_consumers.runtime.testing import ConsumerHarness
from tillstream_consumers.runtime.web import service_app

DOCS = Path(__file__).resolve().parent.parent / "docs"


ALICE = Principal("alice@example.org", SIGN_IN, "alice-sub", frozenset({READ, ACK}))
ERIN = Principal("erin@example.org", SIGN_IN, "erin-sub", frozenset({READ, ACK}))


def _now() -> datetime:
    return datetime.now(UTC)


def audited(url: str, events: list[Event], settings: Settings | None = None) -> ConsumerHarness:
    harness = ConsumerHarness(SalesAudit(settings or Settings()), url)
    harness.apply_events(*events)
    return harness


@asynccontextmanager
async def service(
    harness: ConsumerHarness, settings: Settings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the audit service's routes (read API and page) over ``harness``."""

    async def query(fn: Callable[[Database], Any]) -> Any:
        return fn(harness.db)

    settings = settings or Settings()
    consumer = SalesAudit(settings)
    # As `tillstream consume audit` serves it with neither sign-in nor tokens: for this machine.
    access = Access(settings, query, None, loopback_only=True)
    app = service_app(consumer.name, lambda: (True, 0), consumer.routes(query), None, access)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


def reviewed_day(store: str) -> StoreDay:
    """A closed day with 6 receipts missing (two runs) and a cashier 10.74 short."""
    sd = StoreDay(store, DAY)
    sd.store_event("STORE_DAY_OPEN", local(DAY, 7))
    till = sd.till("T01", "op-1")
    till.open(local(DAY, 8))
    lost: list[Event] = []
    for n in range(12):
        made = till.sell(local(DAY, 9, n * 4), "CARD")
        if n in (2, 3, 4, 7, 8, 9):
            lost += made
    till.events = [e for e in till.events if e not in lost]
    till.close(local(DAY, 20), short=Decimal("10.74"))
    sd.store_event("STORE_DAY_CLOSE", local(DAY, 21))
    return sd


# -- 1. acknowledged is not balanced ------------------------------------------------------


async def test_a_day_whose_every_flag_is_acknowledged_is_reviewed_not_balanced(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    chain = ChainDay("RV")
    store = "RV-9"
    harness = audited(url, chain.events() + reviewed_day(store).all_events())
    for f in queries.flags(harness.db, store, DAY.isoformat()):
        queries.acknowledge(harness.db, f["flag_id"], "spoke to the store", ALICE, _now())
    async with service(harness) as client:
        days = {
            d["store_id"]: d
            for d in (await client.get("/v1/audit/days", params={"day": DAY.isoformat()})).json()
        }
        detail = (await client.get(f"/v1/audit/days/{store}/{DAY.isoformat()}")).json()
        page = (await client.get(f"/audit/{store}/{DAY.isoformat()}")).text
        chain_page = (await client.get("/", params={"day": DAY.isoformat()})).text
    mine = days[store]
    assert mine["status"] == "closed-reviewed" and mine["unacknowledged"] == 0
    assert mine["open_flags"] == {"receipt_gap": 2, "over_short": 1}
    assert mine["at_stake"] == {
        "currency": "EUR",
        "short": "-10.74",
        "over": "0.00",
        "payment_differences": "0.00",
        "paid_without_sale": "0.00",
        "till_totals_differences": "0.00",
        "receipts_missing": 6,
    }
    assert days[chain.stores[0]]["status"] == "closed-balanced"  # nothing flagged at all
    assert days[chain.stores[0]]["at_stake"]["receipts_missing"] == 0
    assert detail["status"] == "closed-reviewed" and detail["at_stake"] == mine["at_stake"]
    gaps = [f for f in detail["flags"] if f["kind"] == "receipt_gap"]
    assert sorted(f["missing"] for f in gaps) == [3, 3]
    assert '<span class="status closed-reviewed" id="status">closed-reviewed</span>' in page
    assert "short 10.74 EUR, 6 receipts missing" in page
    assert "reviewed, not balanced" in page
    assert "short 10.74 EUR, 6 receipts missing" in chain_page
    assert "1 closed reviewed" in chain_page

    # The gauge counts it apart (DAY as one of the recent days).
    gauges.publish(harness.db, DAY + timedelta(days=1), 7)
    reviewed = {"status": "closed-reviewed"}
    assert REGISTRY.get_sample_value("tillstream_audit_store_days", reviewed) == 1

    # The command line says it too, with the money at stake.
    harness.db.close()
    listed = CliRunner().invoke(main, ["audit", "--db", url, "--day", DAY.isoformat()])
    assert listed.exit_code == 0, listed.output
    line = next(x for x in listed.output.splitlines() if x.startswith(store))
    assert "closed-reviewed" in line and "short 10.74 EUR, 6 receipts missing" in line


def test_money_at_stake_keeps_shorts_and_overs_apart() -> None:
    from tillstream_consumers.audit.at_stake import AtStake, describe

    stake = AtStake.of_flags(
        [
            ("over_short", Decimal("-20.00"), None),
            ("over_short", Decimal("20.00"), None),
            ("payment_mismatch", Decimal("-0.08"), None),
            ("payment_mismatch", Decimal("0.50"), None),
            ("receipt_gap", None, 2),
            ("late_event", None, None),
        ],
        "GBP",
    )
    assert describe(stake.as_json()) == (
        "short 20.00 GBP, over 20.00 GBP, payments off by 0.58 GBP, 2 receipts missing"
    )
    assert describe(AtStake.of_flags([], "GBP").as_json()) == "nothing"


# -- 2. a drawer several cashiers used ----------------------------------------------------


def shared_drawer(
    store: str, cashiers: int = 12, receipts: Callable[[int], int] = lambda k: 1
) -> StoreDay:
    """One till, ``cashiers`` cashiers signed on in turn (an hour each, cashier k ringing up
    ``receipts(k)`` cash receipts), the last one declaring the drawer 12.00 short."""
    sd = StoreDay(store, DAY)
    sd.store_event("STORE_DAY_OPEN", local(DAY, 7))
    till = sd.till("T01", "op-01")
    till.control("OPENING_FLOAT", local(DAY, 7, 30), {"CASH": FLOAT})
    till.cash = FLOAT
    for k in range(1, cashiers + 1):
        till.operator = f"op-{k:02d}"
        till.control("SIGN_ON", local(DAY, 7 + k))
        for n in range(receipts(k)):
            till.sell(local(DAY, 7 + k, 10 + n), "CASH")
        if k < cashiers:
            till.control("SIGN_OFF", local(DAY, 8 + k))
    till.close(local(DAY, 8 + cashiers), short=Decimal("12.00"))
    sd.store_event("STORE_DAY_CLOSE", local(DAY, 22))
    return sd


@pytest.mark.parametrize(
    ("attribution", "expected"),
    [
        ("declaring", {"op-12": "-12.00"}),
        ("split-by-time", {f"op-{k:02d}": "-1.00" for k in range(1, 13)}),
    ],
)
async def test_a_drawer_twelve_cashiers_worked_is_attributed_as_the_chain_says(
    tmp_path: Path, attribution: str, expected: dict[str, str]
) -> None:
    settings = Settings(audit_drawer_attribution=attribution)
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    harness = audited(url, shared_drawer("DR-1").all_events(), settings)
    detail = queries.store_day(harness.db, "DR-1", DAY, _now(), settings)
    assert detail is not None and detail["drawer_attribution"] == attribution
    assert detail["over_short_by_cashier"] == expected
    (till,) = detail["tills"]
    assert [c["operator_id"] for c in till["cashiers"]] == [f"op-{k:02d}" for k in range(1, 13)]
    first, last = till["cashiers"][0], till["cashiers"][-1]
    assert first["shifts"] == [
        {"signed_on": "2026-03-02T08:00:00+01:00", "signed_off": "2026-03-02T09:00:00+01:00"}
    ]
    assert last["shifts"][0]["signed_on"] == "2026-03-02T19:00:00+01:00"
    assert first["receipts"] == 1 and first["sales"] == "2.08" and first["currency"] == "EUR"
    assert {c["operator_id"]: c["over_short"] for c in till["cashiers"] if c["over_short"]} == (
        expected
    )
    (flag,) = [f for f in detail["flags"] if f["kind"] == "over_short"]
    assert flag["subject"] == "T01 CASH"  # one drawer, one flag, whatever the attribution
    if attribution == "split-by-time":
        assert flag["operator_id"] is None and "shared drawer" in flag["message"]
    async with service(harness, settings) as client:
        page = (await client.get(f"/audit/DR-1/{DAY.isoformat()}")).text
    assert "Who worked each drawer" in page and "08:00–09:00" in page
    assert page.count('<tr data-till="T01">') == 12
    harness.db.close()
    shown = CliRunner().invoke(
        main,
        ["audit", "--db", url, "--store", "DR-1", "--day", DAY.isoformat()],
        env={"TILLSTREAM_AUDIT_DRAWER_ATTRIBUTION": attribution},
    )
    assert shown.exit_code == 0, shown.output
    assert "Who worked each drawer" in shown.output
    row = next(x for x in shown.output.splitlines() if x.split()[:2] == ["T01", "op-01"])
    assert "2026-03-02T08:00:00+01:00 - 2026-03-02T09:00:00+01:00" in row
    share = expected.get("op-01")
    assert row.endswith(f"2.08 EUR  {share} EUR" if share else "2.08 EUR"), row


def test_a_shared_drawer_split_by_sales_follows_what_each_cashier_took(tmp_path: Path) -> None:
    settings = Settings(audit_drawer_attribution="split-by-sales")
    sd = shared_drawer("DR-2", cashiers=2, receipts=lambda k: 1 if k == 1 else 3)
    harness = audited(f"sqlite:///{tmp_path / 'audit.db'}", sd.all_events(), settings)
    detail = queries.store_day(harness.db, "DR-2", DAY, _now(), settings)
    assert detail is not None
    assert detail["over_short_by_cashier"] == {"op-01": "-3.00", "op-02": "-9.00"}
    (balance,) = detail["balances"]
    assert balance["attributed"] == {"op-01": "-3.00", "op-02": "-9.00"}


def test_splits_add_up_to_the_cent() -> None:
    shares = split(Decimal("-10.00"), {"a": Decimal(1), "b": Decimal(1), "c": Decimal(1)})
    assert sum(shares.values()) == Decimal("-10.00")
    assert sorted(shares.values()) == [Decimal("-3.34"), Decimal("-3.33"), Decimal("-3.33")]
    odd = split(Decimal("0.125"), {"a": Decimal(1), "b": Decimal(1)})
    assert sum(odd.values()) == Decimal("0.125")


def per_cashier_till(store: str) -> StoreDay:
    """Two cashiers each with a drawer of their own on one till: op-1 counts hers right,
    op-2 is 5.00 short; op-3 signs on, takes cash and declares nothing."""
    sd = StoreDay(store, DAY)
    sd.store_event("STORE_DAY_OPEN", local(DAY, 7))
    till = sd.till("T01", "op-1")
    for n, short in enumerate((Decimal(0), Decimal("5.00"))):
        till.operator = f"op-{n + 1}"
        till.control("SIGN_ON", local(DAY, 8 + 4 * n))
        till.control("OPENING_FLOAT", local(DAY, 8 + 4 * n), {"CASH": Decimal("100.00")})
        till.cash = Decimal("100.00")
        till.sell(local(DAY, 9 + 4 * n), "CASH")
        till.control("TENDER_DECLARATION", local(DAY, 11 + 4 * n), {"CASH": till.cash - short})
        till.control("SIGN_OFF", local(DAY, 11 + 4 * n, 30))
    till.operator = "op-3"
    till.control("SIGN_ON", local(DAY, 17))
    till.sell(local(DAY, 17, 30), "CASH")
    till.control("TILL_CLOSE", local(DAY, 20))
    sd.store_event("STORE_DAY_CLOSE", local(DAY, 21))
    return sd


def test_per_cashier_drawers_are_each_counted_against_their_own_declaration(
    tmp_path: Path,
) -> None:
    events = per_cashier_till("PC-1").all_events()
    own = Settings(audit_drawer_attribution="per-cashier")
    harness = audited(f"sqlite:///{tmp_path / 'own.db'}", events, own)
    detail = queries.store_day(harness.db, "PC-1", DAY, _now(), own)
    assert detail is not None
    assert {(b["operator_id"], b["over_short"]) for b in detail["balances"]} == {
        ("op-1", "0.00"),
        ("op-2", "-5.00"),
    }
    found = {(f["kind"], f["subject"]) for f in detail["flags"] if f["open"]}
    assert found == {("over_short", "T01 CASH op-2"), ("no_declaration", "T01 op-3")}
    # The same day read as one drawer: the last count against everything the till took.
    one = audited(f"sqlite:///{tmp_path / 'one.db'}", events)
    whole = queries.store_day(one.db, "PC-1", DAY, _now(), Settings())
    assert whole is not None
    (b,) = whole["balances"]
    assert b["operator_id"] == "op-2" and Decimal(b["over_short"]) < Decimal("-100")


def test_every_attribution_is_documented_for_payroll_and_hr() -> None:
    text = (DOCS / "audit.md").read_text()
    section = text[text.index("### Whose drawer it is") :]
    section = section[: section.index("\n## ")]
    for value in ("declaring", "per-cashier", "split-by-time", "split-by-sales"):
        assert f"`{value}`" in section
    assert "estimate" in section and "payroll" in section.lower()
    assert "TILLSTREAM_AUDIT_DRAWER_ATTRIBUTION" in section


# -- 3. what the page shows ------------------------------------------------------------


def numbered_as_the_till_does(store: str) -> StoreDay:
    """A till numbering its till events ``C000001``... and its receipts ``01-000001``...,
    apart; its cashier declares 20.00 short."""
    sd = StoreDay(store, DAY)
    sd.store_event("STORE_DAY_OPEN", local(DAY, 7))
    till = sd.till("T01", "op-7")
    till.open(local(DAY, 8))
    for hour in (9, 10, 11):
        till.sell(local(DAY, hour))
    till.close(local(DAY, 20), short=Decimal("20.00"))
    sd.store_event("STORE_DAY_CLOSE", local(DAY, 21))
    controls = receipts = 0
    for kind, record in till.events:
        if kind == "till_event":
            controls += 1
            record["sequence_number"] = f"C{controls:06d}"
        elif kind == "sale":
            receipts += 1
            record["receipt_number"] = f"01-{receipts:06d}"
    return sd


async def test_the_page_shows_numbers_as_written_money_with_its_currency_and_local_times(
    tmp_path: Path,
) -> None:
    events = numbered_as_the_till_does("NM-1").all_events()
    harness = audited(f"sqlite:///{tmp_path / 'audit.db'}", events)
    detail = queries.store_day(harness.db, "NM-1", DAY, _now(), Settings())
    assert detail is not None
    short = next(f for f in detail["flags"] if f["kind"] == "over_short")
    queries.acknowledge(
        harness.db, short["flag_id"], "recounted", ERIN, datetime(2026, 3, 3, 7, 15, tzinfo=UTC)
    )
    async with service(harness) as client:
        page = (await client.get(f"/audit/NM-1/{DAY.isoformat()}")).text
        api = (await client.get(f"/v1/audit/days/NM-1/{DAY.isoformat()}")).json()
    (declaration,) = [
        r["sequence_number"]
        for kind, r in events
        if kind == "till_event" and r["kind"] == "TENDER_DECLARATION"
    ]
    assert declaration.startswith("C")
    assert f"tender declaration {declaration}" in page
    assert declaration.lower() not in page
    assert "text-transform" not in page  # no CSS lowers them either
    # Every amount with its currency.
    assert "-20.00 EUR" in page and "short by 20.00 EUR" in page
    assert re.search(r"class=\"num\">\d+\.\d\d EUR<", page)
    assert "Amounts are in EUR" in page
    # The acknowledgement in the store's local time (UTC+01:00), like the rest of the page.
    assert "acknowledged by erin@example.org (sign-in) at 2026-03-03 08:15: recounted" in page
    assert page.count("UTC") == 1  # the offset, said once: "(UTC+01:00)"
    flag = next(f for f in api["flags"] if f["kind"] == "over_short")
    assert flag["acknowledgements"][0]["at"] == "2026-03-03T08:15:00+01:00"
    assert flag["amount"] == "-20.00" and flag["currency"] == "EUR"
    assert api["currency"] == "EUR" and api["balances"][0]["currency"] == "EUR"
    # What to do next, in the API and on the page.
    assert flag["next_step"] == NEXT_STEPS["over_short"]
    assert "Next: Have the store recount the drawer" in page


async def test_a_receipt_gap_says_to_fetch_and_backfill_the_missing_receipt(
    tmp_path: Path,
) -> None:
    chain = ChainDay("NX")
    harness = audited(f"sqlite:///{tmp_path / 'audit.db'}", chain.events())
    s2 = chain.stores[1]
    async with service(harness) as client:
        api = (await client.get(f"/v1/audit/days/{s2}/{DAY.isoformat()}")).json()
        page = (await client.get(f"/audit/{s2}/{DAY.isoformat()}")).text
    gap = next(f for f in api["flags"] if f["kind"] == "receipt_gap")
    assert "journal" in gap["next_step"] and "`tillstream edge import`" in gap["next_step"]
    assert "<code>tillstream edge import</code>" in page


def test_every_flag_kind_has_a_next_step_and_docs_list_them_as_the_code_says() -> None:
    assert set(NEXT_STEPS) == set(KINDS)
    text = (DOCS / "audit.md").read_text()
    section = text[text.index("## What to do next") :]
    for kind, step in NEXT_STEPS.items():
        assert f"| `{kind}` | {step} |" in section, kind


def test_every_status_is_documented_with_its_meaning() -> None:
    text = (DOCS / "audit.md").read_text()
    for status, meaning in STATUSES.items():
        assert f"| `{status}` | {meaning} |" in text, status


# -- 4. the command line ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ChainDay]:
    url = f"sqlite:///{tmp_path_factory.mktemp('audit-cli') / 'audit.db'}"
    chain = ChainDay("CL")
    audited(url, chain.events()).db.close()
    return url, chain


def test_tillstream_audit_never_cuts_a_status_or_a_flag_kind(
    chain_db: tuple[str, ChainDay],
) -> None:
    url, chain = chain_db
    listing = ["audit", "--db", url, "--day", DAY.isoformat()]
    detail = [*listing, "--store", chain.stores[2]]
    for columns in ("80", "60"):  # a terminal, as wide as an old one and narrower
        env = {"TTY_COMPATIBLE": "1", "COLUMNS": columns, "NO_COLOR": "1"}
        for command in (listing, detail):
            shown = CliRunner().invoke(main, command, env=env)
            assert shown.exit_code == 0, shown.output
            assert "…" not in shown.output
            assert "closed-unbalanced" in shown.output
            for kind in ("till_not_closed", "over_short", "late_event"):
                assert kind in shown.output, (columns, kind, shown.output)
    plain = CliRunner().invoke(main, listing, env={"TTY_COMPATIBLE": "0", "COLUMNS": "40"})
    assert plain.exit_code == 0, plain.output
    assert not set("│┃─━┏└…") & set(plain.output)
    row = next(x for x in plain.output.splitlines() if x.startswith(chain.stores[2]))
    assert re.fullmatch(
        rf"{chain.stores[2]} +closed-unbalanced +short 20\.00 EUR +15 +1/2 +"
        r"late_event 1, till_not_closed 1, over_short 1 +3",
        row,
    ), row


def test_tillstream_audit_ack_goes_through_the_service_with_api(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    chain = ChainDay("AP")
    harness = audited(url, chain.events())
    with harness.db.transaction():
        token = api_tokens.create(harness.db, "close-bot", ["read", "ack"], _now())
    harness.db.close()
    env = {"TILLSTREAM_AUDIT_API_TOKEN": token}
    s3 = chain.stores[2]
    with audit_service_http(url) as base:
        detail = CliRunner().invoke(
            main, ["audit", "--api", base, "--store", s3, "--day", DAY.isoformat(), "--json"],
            env=env,
        )  # fmt: skip
        assert detail.exit_code == 0, detail.output
        flag = next(f for f in json.loads(detail.output)["flags"] if f["kind"] == "over_short")
        acked = CliRunner().invoke(
            main, ["audit", "ack", flag["flag_id"], "--note", "recounted", "--api", base], env=env
        )
        assert acked.exit_code == 0, acked.output
        assert f"acknowledged {flag['flag_id']} by close-bot (token)" in acked.output
        unknown = CliRunner().invoke(
            main, ["audit", "ack", "nope", "--note", "x", "--api", base], env=env
        )
        assert unknown.exit_code != 0 and "no such flag" in unknown.output
        anonymous = CliRunner().invoke(
            main, ["audit", "ack", flag["flag_id"], "--note", "x", "--api", base]
        )
        assert anonymous.exit_code != 0 and "TILLSTREAM_AUDIT_API_TOKEN" in anonymous.output
    db = Database(url)
    try:
        (row,) = db.fetchall("SELECT acked_by, acked_by_kind, note FROM audit_acks")
    finally:
        db.close()
    assert tuple(row) == ("close-bot", "token", "recounted")


def test_tillstream_report_counts_every_open_flag_of_the_store_day(
    chain_db: tuple[str, ChainDay], tmp_path: Path
) -> None:
    url, chain = chain_db
    s3 = chain.stores[2]
    analytics = f"sqlite:///{tmp_path / 'analytics.db'}"
    ConsumerHarness(Analytics(Settings()), analytics).db.close()  # its tables, no sales
    report = ["report", "--store", s3, "--day", DAY.isoformat(), "--db", analytics]
    result = CliRunner().invoke(main, [*report, "--audit-db", url])
    assert result.exit_code == 0, result.output
    assert "Sales audit (store-day closed-unbalanced): 3 open flag(s): " in result.output
    assert "late_event 1, till_not_closed 1, over_short 1; 0 acknowledged" in result.output
    assert "at stake: short 20.00 EUR" in result.output
