"""`tillstream poslog check`: what a new vendor's files would become, offline; and the dialect
setting an edge may force (issue 21, "Onboarding a new vendor")."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tillstream.core.codec import AvroCodec
from tillstream.dev.processes import run_tillstream
from tillstream_edge.ingest import Ingestor
from tillstream_edge.outbox import Outbox
from tillstream_edge.poslog import parse_poslog
from tillstream_edge.poslog_dialect import BY_NAME, detect
from tillstream_edge.poslog_xml import parse_xml

DATA = Path(__file__).parent / "data" / "poslog"
SHAPED = DATA / "shaped"


def test_check_shows_each_transaction_and_what_was_not_read() -> None:
    document = SHAPED / "wincor-tpnet-furniture" / "tpnet-empty-then-sale.xml"
    done = run_tillstream("poslog", "check", str(document), "--json")
    assert done.returncode == 0, done.stderr
    [report] = [json.loads(line) for line in done.stdout.splitlines()]
    assert report["dialect"] == "wincor-tpnet"
    outcomes = [t["outcome"] for t in report["transactions"]]
    assert outcomes == ["skipped", "converted"]
    [sale] = [e for e in report["transactions"][1]["events"] if e["type"] == "sale"]
    expected = json.loads(document.with_suffix(".expected.json").read_text())
    due = expected["transactions"][1]["totals"]["net"]
    assert Decimal(sale["totals"]["net_amount"]) == Decimal(due)  # behind the empty one
    # The vendor's own elements are shown as not read (nothing of the sale depends on them).
    not_read = {n["element"] for n in report["not_read"]}
    assert any("TransactionSpecifics" in element for element in not_read)
    assert not any(element.endswith("/ItemID") for element in not_read)


def test_check_in_text_names_set_aside_transactions_and_exits_1_only_when_strict(
    tmp_path: Path,
) -> None:
    odd = (DATA / "v6_online_order_shipped.xml").read_bytes()
    odd = odd.replace(b'UnitOfMeasureCode="EA"', b'UnitOfMeasureCode="BAG"', 1)
    (tmp_path / "odd.xml").write_bytes(odd)
    (tmp_path / "broken.xml").write_bytes(b"<POSLog><Transaction>")
    done = run_tillstream("poslog", "check", str(tmp_path / "odd.xml"))
    assert done.returncode == 0, done.stderr
    assert "1 set aside" in done.stdout and "SET ASIDE" in done.stdout
    assert "unit of measure 'BAG'" in done.stdout
    strict = run_tillstream("poslog", "check", "--strict", str(tmp_path / "odd.xml"))
    assert strict.returncode == 1
    broken = run_tillstream("poslog", "check", str(tmp_path))  # a folder: every file in it
    assert broken.returncode == 1
    assert f"{tmp_path / 'broken.xml'}: refused whole: malformed XML" in broken.stdout


def test_a_dialect_is_detected_from_the_document_and_forced_by_name(codec: AvroCodec) -> None:
    wincor = (SHAPED / "wincor-tpnet-furniture" / "tpnet-empty-then-sale.xml").read_bytes()
    assert detect(parse_xml(wincor, max_bytes=10**7)).name == "wincor-tpnet"
    assert parse_poslog(wincor, dialect="arts").dialect.name == "arts"
    # Every dialect names how it is recognised, for docs/edge.md's table.
    assert all(d.recognised_by and d.title for d in BY_NAME.values())
    with pytest.raises(ValueError, match="TILLSTREAM_EDGE_POSLOG_DIALECT: no POSLog dialect"):
        Ingestor("S1", codec, Outbox(Path("unused.db")), poslog_dialect="wincor")


def test_a_vendors_own_body_is_skipped_only_in_its_dialect() -> None:
    """Wincor's back-office safe transactions are by their nature no sale (skipped); the same
    body in a document of no known dialect is unknown, so set aside to be re-run."""
    document = SHAPED / "wincor-tpnet-furniture" / "tpnet-control-and-safe.xml"
    data = document.read_bytes()
    as_wincor = parse_poslog(data, default_currency="EUR")
    assert "BSCMTransaction" in {s.kind for s in as_wincor.skipped}
    generic = parse_poslog(data, default_currency="EUR", dialect="arts")
    assert "BSCMTransaction" in {s.kind for s in generic.set_aside}
