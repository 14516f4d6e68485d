"""What the sales audit takes in and must not misread (issue 22): a day in any other form than
YYYY-MM-DD (``20261207``, ``2026-W49-1``: Python reads them, the audit then finds nothing)
on the read API, the page, ``tillstream audit --day`` and ``tillstream report --day``; and
receipt numbers: digits of other scripts, a 200-digit number, and a jump of thousands of
numbers, which is a break in the numbering and not thousands of missing receipts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from tests.audit_support import DAY, StoreDay, clean_store_day, local
from tests.test_audit import audit_api, audited, open_flags
from tillstream.cli import main
from tillstream.core.settings import Settings
from tillstream_consumers.analytics import Analytics
from tillstream_consumers.audit import gauges, queries
from tillstream_consumers.audit.numbering import MAX_GAP, read_number
from tillstream_consumers.runtime.db import Database

OTHER_FORMS = ["20260302", "2026-W10-1", "2026-061", "２０２６-03-02", "2026-3-2", "2026-02-30"]
"""Days in forms Python's date parsing reads (or a day that does not exist): all refused."""

# -- the form of a day ------------------------------------------------------------------------


@pytest.mark.parametrize("day", OTHER_FORMS)
async def test_the_read_api_and_the_page_take_a_day_only_as_yyyy_mm_dd(
    tmp_path: Path, day: str
) -> None:
    harness = audited(
        f"sqlite:///{tmp_path / 'audit.db'}", clean_store_day("D-1", DAY).all_events()
    )
    async with audit_api(harness) as client:
        listed = await client.get("/v1/audit/days", params={"day": day})
        assert listed.status_code == 400, listed.text
        assert listed.json() == {"error": "day must be a date: YYYY-MM-DD"}
        detail = await client.get(f"/v1/audit/days/D-1/{day}")
        assert detail.status_code == 400 and "YYYY-MM-DD" in detail.text
        page = await client.get("/", params={"day": day})
        assert page.status_code == 400 and "write it YYYY-MM-DD" in page.text
        assert day not in page.text  # the form is named, not what was typed
        store_day = await client.get(f"/audit/D-1/{day}")
        assert store_day.status_code == 400 and "YYYY-MM-DD" in store_day.text
        # The one form works.
        good = await client.get("/v1/audit/days", params={"day": DAY.isoformat()})
        assert [d["store_id"] for d in good.json()] == ["D-1"]
        assert (await client.get("/", params={"day": DAY.isoformat()})).status_code == 200


def test_the_commands_take_a_day_only_as_yyyy_mm_dd(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    audited(url, clean_store_day("D-2", DAY).all_events()).db.close()
    runner = CliRunner()
    for day in ("20260302", "2026-W10-1", "2026-3-2"):
        shown = runner.invoke(main, ["audit", "--day", day, "--db", url])
        assert shown.exit_code == 2 and "a day is written YYYY-MM-DD" in shown.output, day
        report = runner.invoke(
            main, ["report", "--store", "D-2", "--day", day, "--db", f"sqlite:///{tmp_path}/a.db"]
        )
        assert report.exit_code == 2 and "a day is written YYYY-MM-DD" in report.output, day
    shown = runner.invoke(main, ["audit", "--day", DAY.isoformat(), "--db", url])
    assert shown.exit_code == 0 and "D-2" in shown.output


async def test_the_analytics_report_api_takes_a_day_only_as_yyyy_mm_dd(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'analytics.db'}")
    consumer = Analytics(Settings())
    db.migrate(consumer.identity(), list(consumer.migrations))

    async def query(fn: Callable[[Database], Any]) -> Any:
        return fn(db)

    app = Starlette(routes=consumer.routes(query))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://analytics") as client:
        for day in OTHER_FORMS:
            answer = await client.get("/v1/report", params={"store": "S1", "day": day})
            assert answer.status_code == 400 and "day=YYYY-MM-DD" in answer.text, day
        fine = await client.get("/v1/report", params={"store": "S1", "day": "2026-03-02"})
        assert fine.status_code == 200
    db.close()


# -- receipt numbers --------------------------------------------------------------------------


def test_a_number_is_its_trailing_ascii_digits_and_no_more_than_eighteen() -> None:
    assert read_number("01-000124") == ("01-", 124, 6)
    assert read_number("C000012") == ("C", 12, 6)
    assert read_number("٠٠٠١٢٥") is None  # Arabic-Indic digits: a name, not a number
    assert read_number("R-١٢5") == ("R-١٢", 5, 1)  # the ASCII tail only
    assert read_number("9" * 18) == ("", 10**18 - 1, 18)
    assert read_number("1" + "0" * 199) is None  # 200 digits: no till counts that far
    assert read_number("A-") is None


def one_till(store: str, *numbers: str) -> StoreDay:
    """A store-day whose till rings up receipts with ``numbers`` (its till events are
    numbered in a series of their own), and balances."""
    sd = StoreDay(store, DAY)
    sd.store_event("STORE_DAY_OPEN", local(DAY, 7))
    till = sd.till("T01", "op-1")
    till.open(local(DAY, 8))
    for i, number in enumerate(numbers):
        till.sell(local(DAY, 9 + i), number=number)
    till.close(local(DAY, 20))
    sd.store_event("STORE_DAY_CLOSE", local(DAY, 21))
    return sd


@pytest.mark.parametrize(
    ("last", "flags"),
    [
        ("R-٠٠٠٠٠٥", set()),  # read as 5 it made a false gap R-000003..R-000004
        ("1" + "0" * 199, set()),  # read as a number it made a gap of 10**200 receipts
        ("R-001003", {("receipt_gap", "T01 R-000003..R-001002")}),  # 1,000 missing: a gap
        ("R-005000", {("numbering_break", "T01 R-000002..R-005000")}),
    ],
)
def test_receipt_numbers_are_read_by_the_rule_and_a_big_jump_is_a_break(
    db_url: str, last: str, flags: set[tuple[str, str]]
) -> None:
    harness = audited(db_url, one_till("N-1", "R-000001", "R-000002", last).all_events())
    try:
        assert {(kind, subject) for _, kind, subject in open_flags(harness.db)} == flags
        if any(kind == "numbering_break" for kind, _ in flags):
            (flag,) = queries.flags(harness.db, "N-1", DAY.isoformat())
            assert flag["message"] == (
                f"till T01: numbering jumps from R-000002 to R-005000, more than {MAX_GAP} "
                "numbers: a break in the numbering (a reset, a new series), not missing receipts"
            )
            assert len(flag["events"]) == 2  # the receipts either side
    finally:
        harness.db.close()


async def test_the_page_and_the_gauges_name_a_numbering_break(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    harness = audited(url, one_till("N-2", "R-000001", "R-000002", "R-900000").all_events())
    async with audit_api(harness) as client:
        chain = await client.get("/", params={"day": DAY.isoformat()})
        assert "numbering break 1" in chain.text
        detail = await client.get(f"/audit/N-2/{DAY.isoformat()}")
        assert "<td>numbering break</td>" in detail.text
        assert "numbering jumps from R-000002 to R-900000" in detail.text
    gauges.publish(harness.db, datetime.now(UTC).date(), 7)
    labels = {"kind": "numbering_break", "store": "N-2"}
    assert REGISTRY.get_sample_value("tillstream_audit_flags", labels) == 1
    harness.db.close()
