"""The chaos run and its checker.

The checker is tried first without faults: the plan applied through the real consumers
must check out exact, the audit must hold exactly the planted flags, and each kind of damage
done to their stores afterwards must be counted as what it is. Then the short fault run (the
CI version of ``make chaos``) runs end to end: 3-node cluster, PostgreSQL, edges, consumers,
the audit, the fleet service, eight faults. (The fleet check's own verdicts are tried in
``tests/test_chaos_fleet.py``.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chaos.audit import planted_flags
from chaos.check import check_analytics, check_audit, check_crm, check_erp
from chaos.driver import batches
from chaos.expected import Expected, fingerprint
from chaos.plan import Plan
from tillstream_consumers.analytics import Analytics
from tillstream_consumers.audit import SalesAudit
from tillstream_consumers.crm import CrmProfiles
from tillstream_consumers.erp import ErpInventory
from tillstream_consumers.runtime.testing import ConsumerHarness

ROOT = Path(__file__).resolve().parent.parent
PLAN = Plan(
    seed=7,
    stores=("CH01", "CH02"),
    events=1500,
    start=datetime(2026, 3, 2, tzinfo=UTC),
    bad_ratio=0.01,
)
SUMMARY = re.compile(r"chaos: events=(\d+) lost=(\d+) duplicated=(\d+) wrong=(\d+) faults=(\d+)")


def test_a_plan_is_decided_by_its_seed() -> None:
    first = [fingerprint(r) for s in PLAN.all_steps() for _, r in s.events]
    again = [fingerprint(r) for s in Plan.from_manifest(PLAN.manifest()).all_steps()
             for _, r in s.events]  # fmt: skip
    other = [fingerprint(r) for s in Plan(8, PLAN.stores, 1500, PLAN.start).all_steps()
             for _, r in s.events]  # fmt: skip
    assert first == again
    assert first != other
    expected = Expected.of(PLAN)
    assert expected.total >= PLAN.events
    assert expected.refused, "the plan carries card numbers the edges must refuse"
    lines = [ln for s in PLAN.all_steps() for k, r in s.events if k == "sale" for ln in r["lines"]]
    deposits = {ln["kind"] for ln in lines if not ln["stock_item"]}
    assert deposits >= {"SALE", "VOID"}, "bottle deposits sold and voided: money, not stock"
    # Post-voids of sales sent before, and a few sent before their sale.
    sent: list[str] = []
    first = 0
    for step in PLAN.all_steps():
        for kind, record in step.events:
            if kind == "sale_void":
                first += str(record["voided_event_id"]) not in sent
            elif kind == "sale":
                sent.append(str(record["event_id"]))
    assert len(expected.voids) >= 4 and 0 < first < len(expected.voids)


def test_refused_events_travel_alone() -> None:
    sent = list(batches(PLAN.steps("CH01"), 100))
    refused = {str(r["event_id"]) for s in PLAN.steps("CH01") if s.refused for _, r in s.events}
    for events, alone in sent:
        ids = {str(r["event_id"]) for _, r in events}
        assert alone == bool(ids & refused)
        assert not alone or ids <= refused


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ConsumerHarness]:
    """The plan's accepted events applied by the real consumers, on SQLite."""
    root = tmp_path_factory.mktemp("chaos-check")
    harnesses = {
        "erp": ConsumerHarness(ErpInventory(), f"sqlite:///{root}/erp.db"),
        "crm": ConsumerHarness(CrmProfiles(), f"sqlite:///{root}/crm.db"),
        "analytics": ConsumerHarness(Analytics(), f"sqlite:///{root}/analytics.db"),
    }
    wanted = {
        "erp": {"sale", "stock_movement", "sale_void"},
        "crm": {"sale", "sale_void"},
        "analytics": {"sale", "payment", "sale_void"},
    }
    for step in PLAN.all_steps():
        if step.refused:
            continue
        for name, harness in harnesses.items():
            events = [(kind, record) for kind, record in step.events if kind in wanted[name]]
            if events:
                harness.apply_events(*events)
    return harnesses


def test_the_consumers_check_out_exact(applied: dict[str, ConsumerHarness]) -> None:
    expected = Expected.of(PLAN)
    for check, name in ((check_erp, "erp"), (check_crm, "crm"), (check_analytics, "analytics")):
        stage = check(applied[name].db, expected)
        assert stage.expected > 0
        assert (stage.lost, stage.duplicated, stage.wrong) == (0, 0, 0), (name, stage)


@pytest.mark.parametrize("first", ["stock_movement", "sale", "sale_void"])
def test_the_erp_checks_out_exact_whichever_topic_is_read_first(tmp_path: Path, first: str) -> None:
    """The plan's stock-takes are posted after later sales, its post-voids after (or before)
    their sales; stock must follow event time however the topics interleave (each topic's
    own order kept)."""
    counts = [r for s in PLAN.all_steps() for k, r in s.events
              if k == "stock_movement" and r["quantity_type"] == "COUNT"]  # fmt: skip
    assert len(counts) >= 6, "the plan takes stock now and then"
    events = [(k, r) for s in PLAN.all_steps() if not s.refused for k, r in s.events
              if k in ("sale", "stock_movement", "sale_void")]  # fmt: skip
    ordered = sorted(events, key=lambda e: e[0] != first)  # stable
    erp = ConsumerHarness(ErpInventory(), f"sqlite:///{tmp_path}/erp.db")
    for start in range(0, len(ordered), 100):
        erp.apply_events(*ordered[start : start + 100])
    expected = Expected.of(PLAN)
    stage = check_erp(erp.db, expected)
    assert (stage.lost, stage.duplicated, stage.wrong) == (0, 0, 0), stage
    assert any(expected.ledger[str(c["event_id"])][1] for c in counts)


def test_the_checker_counts_each_kind_of_damage(applied: dict[str, ConsumerHarness]) -> None:
    expected = Expected.of(PLAN)
    erp, crm, analytics = (applied[n].db for n in ("erp", "crm", "analytics"))
    with erp.transaction():
        victim = erp.fetchone("SELECT event_id FROM erp_ledger WHERE kind = 'sale' LIMIT 1")
        assert victim is not None
        erp.execute("DELETE FROM erp_ledger WHERE event_id = ?", victim)
    assert check_erp(erp, expected).lost == 1
    with erp.transaction():
        erp.execute("UPDATE erp_stock SET on_hand = on_hand + 1000 WHERE sku = "
                    "(SELECT MIN(sku) FROM erp_stock)")  # fmt: skip
    assert check_erp(erp, expected).wrong >= 1
    with crm.transaction():
        crm.execute("UPDATE crm_profiles SET visits = visits + 1 WHERE customer_id = "
                    "(SELECT MIN(customer_id) FROM crm_profiles)")  # fmt: skip
    assert check_crm(crm, expected).duplicated == 1
    with analytics.transaction():
        analytics.execute("UPDATE an_tenders SET payments = payments - 1 WHERE method = 'CASH'")
    damaged = check_analytics(analytics, expected)
    assert damaged.lost >= 1 and damaged.duplicated == 0
    with crm.transaction():  # a post-void the CRM never read
        crm.execute("DELETE FROM crm_voids WHERE voided_event_id = "
                    "(SELECT MIN(voided_event_id) FROM crm_voids)")  # fmt: skip
    assert check_crm(crm, expected).lost == 1


def test_the_plan_plants_what_the_audit_must_find() -> None:
    flags = planted_flags(PLAN)
    kinds = {kind for kind, *_ in flags}
    assert kinds == {"receipt_gap", "over_short", "till_not_closed"}, flags
    for store in PLAN.stores:
        planted = PLAN.planted(store)
        till = f"T{planted.short_till + 1:02d}"
        key = ("over_short", store, PLAN.start.date().isoformat(), till, f"{till} CASH")
        assert flags[key] == -int(planted.short_by * 10000)
    assert sum(kind == "till_not_closed" for kind, *_ in flags) == 1


def test_the_audit_checks_out_exact(tmp_path: Path) -> None:
    """The plan's till books, sales and payments through the real audit: exactly the planted
    flags; a flag lost, a false one or another amount is counted as what it is."""
    service = SalesAudit()
    audit = ConsumerHarness(service, f"sqlite:///{tmp_path}/audit.db")
    events = [(k, r) for s in PLAN.all_steps() if not s.refused for k, r in s.events
              if k in ("sale", "payment", "till_event", "sale_void")]  # fmt: skip
    for start in range(0, len(events), 200):
        audit.apply_events(*events[start : start + 200])
    service.settle(audit.db, datetime.now(UTC))  # the busy days batches left to the refresh
    planted = planted_flags(PLAN)
    expected = Expected.of(PLAN)
    stage = check_audit(audit.db, planted, expected)
    assert (stage.expected, stage.lost, stage.wrong) == (
        len(planted) + len(expected.voids),
        0,
        0,
    ), stage
    db = audit.db
    with db.transaction():
        db.execute("UPDATE audit_flags SET amount = amount + 100 WHERE kind = 'over_short' "
                   "AND store_id = 'CH01'")  # fmt: skip
        db.execute("UPDATE audit_flags SET is_open = 0 WHERE kind = 'receipt_gap' AND subject = "
                   "(SELECT MIN(subject) FROM audit_flags WHERE kind = 'receipt_gap')")  # fmt: skip
        db.execute("UPDATE audit_flags SET kind = 'receipt_gap', subject = 'T01 01-999999' "
                   "WHERE kind = 'till_not_closed'")  # fmt: skip
        db.execute("DELETE FROM audit_voids WHERE event_id = (SELECT MIN(event_id) FROM "
                   "audit_voids)")  # fmt: skip
    damaged = check_audit(db, planted, expected)
    assert (damaged.lost, damaged.wrong) == (3, 2), damaged


@pytest.mark.timeout(1200)
def test_short_chaos_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "chaos", "--short", "--workdir", str(tmp_path / "run")]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as run:
        try:
            stdout, stderr = run.communicate(timeout=1100)
        except subprocess.TimeoutExpired:
            run.terminate()  # SIGTERM: the run stops its cluster, database and services
            stdout, stderr = run.communicate(timeout=120)
    done = subprocess.CompletedProcess(command, run.returncode, stdout, stderr)
    lines = done.stdout.strip().splitlines()
    match = SUMMARY.fullmatch(lines[-1]) if lines else None
    assert match, f"no summary line:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    events, lost, duplicated, wrong, faults = map(int, match.groups())
    assert events >= 20_000
    assert faults == 8
    assert (lost, duplicated, wrong) == (0, 0, 0), done.stdout[-4000:]
    audit = re.search(r"^audit +(\d+) +0 +0 +0 ", done.stdout, re.MULTILINE)
    assert audit and int(audit[1]) > 0, "the audit holds exactly the planted flags"
    fleet = re.search(r"^fleet +(\d+) +0 +0 +0 ", done.stdout, re.MULTILINE)
    assert fleet and int(fleet[1]) >= 1, "the killed edge seen silent and back, none falsely"
    assert done.returncode == 0, done.stdout[-4000:]
