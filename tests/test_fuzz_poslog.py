"""Fuzzing POSLog: the converter, hostile XML, the drop folder and the backfill import.

Whatever the bytes, conversion ends in events or one PoslogError saying why (never another
exception, never a hang); a file that cannot be converted is set aside with its reason and
stores nothing, and the good files around it are converted as usual. Card numbers typed
anywhere in a file never reach the outbox, a reason file or an error message.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.fuzz_support import (
    AWKWARD,
    DOOR_LIMIT,
    FUZZ,
    TIMEOUT,
    EdgeIntake,
    ascii_card_numbers,
    card_numbers,
    fuzz,
    long_transaction,
    mutated_xml,
    poslog,
    retail_tx,
)
from tillstream.core import rules
from tillstream_edge.dropfolder import MAX_FILE_BYTES, DropFolder
from tillstream_edge.importer import import_files
from tillstream_edge.models import CardIn
from tillstream_edge.poslog import PoslogError, parse_poslog
from tillstream_edge.poslog_intake import poslog_events

STORE = "S-FUZZ"
pytestmark = pytest.mark.timeout(TIMEOUT)
# Fixed-width sequence numbers: documents keep their length, so hypothesis's draws do too.
_sequence = itertools.count(10_000_000)


@pytest.fixture(scope="module")
def intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeIntake]:
    edge = EdgeIntake(tmp_path_factory.mktemp("fuzz-poslog"), STORE)
    yield edge
    edge.close()


def tx() -> bytes:
    return retail_tx(STORE, next(_sequence))


def event_ids(document: bytes) -> set[str]:
    events = parse_poslog(document, max_bytes=MAX_FILE_BYTES).events
    return {str(r["event_id"]) for _, r in events}


def convert(intake: EdgeIntake, data: bytes) -> None:
    """The whole path to encoded events; only the two documented errors may come out."""
    started = time.process_time()
    reason = ""
    try:
        batch = poslog_events(intake.ingestor, data, "poslog")
        reason = "converted"
        assert all(k.reason.strip() for k in batch.set_aside), "a set-aside must say why"
    except PoslogError as exc:
        reason = str(exc)
    assert reason.strip(), "a refusal must say why"
    assert time.process_time() - started < 10, "conversion took too long"


# --- the converter --------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=4000))
def test_any_bytes_convert_or_fail_with_a_poslog_error(intake: EdgeIntake, data: bytes) -> None:
    convert(intake, data)


@FUZZ
@given(data=st.data())
def test_damaged_documents_convert_or_fail_with_a_poslog_error(
    intake: EdgeIntake, data: st.DataObject
) -> None:
    document = poslog(tx(), tx())
    how = data.draw(st.sampled_from(["xml", "cut", "flip", "splice"]))
    if how == "xml":
        damaged = data.draw(mutated_xml(document))
    elif how == "cut":
        damaged = document[: data.draw(st.integers(0, len(document)))]
    elif how == "flip":
        out = bytearray(document)
        for spot in data.draw(st.lists(st.integers(0, len(out) - 1), min_size=1, max_size=8)):
            out[spot] = data.draw(st.integers(0, 255))
        damaged = bytes(out)
    else:
        at = data.draw(st.integers(0, len(document)))
        damaged = document[:at] + data.draw(st.binary(max_size=50)) + document[at:]
    convert(intake, damaged)


def leaves(document: bytes) -> list[tuple[int, str]]:
    """(position in document order, tag) of every element holding text."""
    return [(i, e.tag) for i, e in enumerate(ET.fromstring(document).iter()) if not list(e)]


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_awkward_values_in_every_field_fail_with_a_reason(zone: str) -> None:
    """Each AWKWARD value in each field: calendar edges (OverflowError), '²' and 5000-digit
    sequence numbers (ValueError from int()) once escaped as crashes."""
    template = poslog(retail_tx(STORE, 1))
    outcomes = set()
    for position, _tag in leaves(template):
        for value in AWKWARD:
            root = ET.fromstring(template)
            list(root.iter())[position].text = value
            result = parse_poslog(ET.tostring(root), default_timezone=ZoneInfo(zone))
            if result.converted:
                outcomes.add("converted")
            for kept in result.set_aside:
                outcomes.add("set aside" if kept.reason.strip() else "set aside without a reason")
    assert outcomes == {"converted", "set aside"}


_DTD = "a DTD"
HOSTILE = {  # name: (document, what the reason must say)
    "billion laughs": (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(b'<!ENTITY %c "%s">' % (98 + i, b"&%c;" % (97 + i) * 10) for i in range(9))
        + b"]><POSLog>&j;</POSLog>",
        _DTD,
    ),
    "quadratic blowup": (
        b'<!DOCTYPE p [<!ENTITY x "'
        + b"x" * 50_000
        + b'">]><POSLog>'
        + b"&x;" * 50_000
        + b"</POSLog>",
        _DTD,
    ),
    "external entity": (
        b'<!DOCTYPE p [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<POSLog><Transaction><RetailStoreID>&e;</RetailStoreID></Transaction></POSLog>",
        _DTD,
    ),
    "external DTD": (b'<!DOCTYPE POSLog SYSTEM "http://127.0.0.1:9/evil.dtd"><POSLog/>', _DTD),
    "parameter entity": (
        b'<!DOCTYPE p [<!ENTITY % r SYSTEM "file:///etc/passwd"> %r;]><POSLog/>',
        _DTD,
    ),
    "entity without DTD": (b"<POSLog>&undeclared;</POSLog>", "undefined entity"),
    "deep nesting": (b"<POSLog>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</POSLog>", "deeper"),
    "deep, unclosed": (b"<a>" * 300_000, "nested deeper than 100 levels"),
    "unknown encoding": (b'<?xml version="1.0" encoding="bogus-8"?><POSLog/>', "bogus-8"),
    "multi-byte encoding": (b'<?xml version="1.0" encoding="shift_jis"?><POSLog/>', "multi-byte"),
    "encoding lies": (b'<?xml version="1.0" encoding="utf-16"?><POSLog/>', "encoding"),
    "NUL bytes": (b"<POSLog>\x00</POSLog>", "malformed XML"),
    "not XML": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "malformed XML"),
    "wrong root": (b"<html><body>POSLog</body></html>", "<html> is neither"),
    "huge name": (b"<" + b"P" * 1_000_000 + b"/>", "is neither POSLog nor Transaction"),
}
HARMLESS = {  # big but well formed, nothing tillstream reads in them: refused quickly
    "many empty transactions": b"<POSLog>" + b"<Transaction/>" * 50_000 + b"</POSLog>",
    "huge attribute": b'<POSLog a="' + b"x" * 5_000_000 + b'"/>',
    # One giant token: expat 2.5 fed 16 KiB at a time rescans it each feed (minutes).
    "huge comment": b"<POSLog><!--" + b"x" * (19 * 1024 * 1024) + b"--></POSLog>",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_xml_is_refused_quickly_with_a_reason(intake: EdgeIntake, name: str) -> None:
    document, reason = HOSTILE[name]
    started = time.process_time()
    with pytest.raises(PoslogError) as refused:
        poslog_events(intake.ingestor, document, "poslog")
    assert time.process_time() - started < 5, f"{name} took too long"
    message = str(refused.value)
    assert reason in message
    assert len(message) < 1000, "a reason must be readable, not the input echoed"
    assert "root:" not in message  # never a line of /etc/passwd


@pytest.mark.parametrize("name", list(HARMLESS))
def test_big_but_harmless_xml_is_refused_quickly_as_nothing_tillstream_reads(
    intake: EdgeIntake, name: str
) -> None:
    """No transaction, or thousands it cannot read: refused whole, never thousands of
    set-aside transactions filling the store's disk."""
    started = time.process_time()
    with pytest.raises(PoslogError) as refused:
        poslog_events(intake.ingestor, HARMLESS[name], "poslog")
    assert time.process_time() - started < 5, f"{name} took too long"
    assert len(str(refused.value)) < 1000, "a reason must be readable, not every transaction"


def test_a_huge_value_sets_its_transaction_aside_with_a_short_reason(intake: EdgeIntake) -> None:
    document = poslog(
        retail_tx(STORE, 1).replace(b"<Amount>4.57", b"<Amount>" + b"x" * 5_000_000), tx()
    )
    started = time.process_time()
    batch = poslog_events(intake.ingestor, document, "poslog")
    assert time.process_time() - started < 5
    [kept] = batch.set_aside
    assert "Tender/Amount: 'xxx" in kept.reason and len(kept.reason) < 1000
    assert len(batch.units) == 1  # the other transaction is not held back


def test_xinclude_is_never_followed() -> None:
    document = poslog(tx()).replace(
        b"<Description>Milk 1L</Description>",
        b'<Description><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
        b'href="/etc/passwd" parse="text"/></Description>',
    )
    records = [r for _, r in parse_poslog(document).events]
    assert records and "root:" not in repr(records)


# --- card numbers never leave ---------------------------------------------------------------

PAN = "4111 1111 1111 1111"
# Elements a till may fill with any text (ItemID and POSItemID hold item ids, never masked).
_TEXTS = [
    e.tag
    for e in ET.fromstring(retail_tx(STORE, 1)).iter()
    if e.tag not in ("ItemID", "POSItemID") and not list(e)
]


@fuzz(60)
@given(
    where=st.sampled_from(_TEXTS),
    glue=st.sampled_from(["{}", "x {} x", "{}\n"]),
    card=st.just(("4111111111111111", PAN)) | card_numbers,
)
def test_a_card_number_anywhere_never_reaches_outbox_or_reason(
    intake: EdgeIntake, tmp_path: Path, where: str, glue: str, card: tuple[str, str]
) -> None:
    digits, written = card
    document = ET.fromstring(retail_tx(STORE, next(_sequence)))
    for element in document.iter(where):
        element.text = glue.format(written)
    folder = tmp_path / f"drop-{next(_sequence)}"
    folder.mkdir()
    (folder / "card.xml").write_bytes(poslog(ET.tostring(document)))
    settle(folder)
    assert intake.loop.run(DropFolder(intake.ingestor, folder).scan_once()) == 1
    for value in intake.loop.run(intake.outbox.pending(1_000_000)):
        assert digits.encode() not in value.value and written.encode() not in value.value
    for reason in (folder / "rejected").glob("*.reason.txt"):
        text = reason.read_text()
        assert digits not in text and written not in text, text


@fuzz(60)
@given(
    where=st.sampled_from(["ItemID", "POSItemID", "SerialNumber"]),
    card=card_numbers | ascii_card_numbers,
)
def test_a_card_number_as_an_item_id_is_refused_as_one(
    intake: EdgeIntake, where: str, card: tuple[str, str]
) -> None:
    digits, written = card
    tx = retail_tx(STORE, next(_sequence)).decode()
    apples = "<ItemID>SKU-APPLES</ItemID>"
    if where == "ItemID":
        tx = tx.replace(apples, f"<ItemID>{written}</ItemID>")
    elif where == "POSItemID":  # an item known by its POS id only
        tx = tx.replace(apples, f"<POSIdentity><POSItemID>{written}</POSItemID></POSIdentity>")
    else:  # a "GTIN" serial beside a good SKU: never taken for the GTIN, never sent
        tx = tx.replace(apples, f'{apples}<SerialNumber Type="GTIN">{written}</SerialNumber>')
    before = intake.stored()
    answer = intake.post("/v1/poslog", poslog(tx.encode()))
    if where == "SerialNumber":
        assert answer.status_code == 202, answer.text
        stored = b"".join(p.value for p in intake.loop.run(intake.outbox.pending(1_000_000)))
        assert digits.encode() not in stored and written.encode() not in stored
        return
    # The transaction is set aside, not published; nothing of the number is kept or answered.
    assert answer.status_code == 202, answer.text
    [kept] = answer.json()["set_aside"]
    assert kept["reason"].startswith("transaction ") and "card number" in kept["reason"]
    assert digits not in answer.text and written not in answer.text
    assert intake.stored() == before
    documents = b"".join(k.document for k in intake.loop.run(intake.outbox.kept(resolved=True)))
    assert digits.encode() not in documents and written.encode() not in documents


# --- the drop folder --------------------------------------------------------------------------


def settle(folder: Path) -> None:
    """Files look finished (unchanged for a while) and keep their name order; the folder
    has what ``DropFolder.run`` makes before its first scan."""
    for sub in ("processed", "rejected"):
        (folder / sub).mkdir(exist_ok=True)
    for n, path in enumerate(sorted(folder.glob("*.xml"))):
        past = time.time() - 60 + n
        os.utime(path, (past, past))


def damaged(data: st.DataObject) -> bytes:
    """A valid transaction, then a damaged one: if refused, the valid one must not be stored."""
    how = data.draw(st.sampled_from(["xml", "bytes", "cut"]), label="damage")
    second = poslog(tx())
    if how == "xml":
        second = data.draw(mutated_xml(second), label="damaged")
    elif how == "bytes":
        return poslog(tx()) + data.draw(st.binary(max_size=500), label="appended")
    else:
        second = second[: data.draw(st.integers(0, len(second) - 1), label="cut")]
    return poslog(tx()).removesuffix(b"</POSLog>") + second.removeprefix(b"<POSLog>")


@fuzz(60)
@given(data=st.data())
def test_drop_folder_sets_bad_files_aside_and_converts_the_rest(
    intake: EdgeIntake, tmp_path: Path, data: st.DataObject
) -> None:
    folder = tmp_path / f"drop-{next(_sequence)}"
    folder.mkdir()
    good_a, good_c = poslog(tx()), poslog(tx())
    bad = damaged(data)
    (folder / "a-good.xml").write_bytes(good_a)
    (folder / "b-bad.xml").write_bytes(bad)
    (folder / "c-good.xml").write_bytes(good_c)
    settle(folder)
    before = set(intake.stored())
    assert intake.loop.run(DropFolder(intake.ingestor, folder).scan_once()) == 3
    new = set(intake.stored()) - before
    processed = {p.name for p in (folder / "processed").iterdir()}
    assert {"a-good.xml", "c-good.xml"} <= processed
    expected = event_ids(good_a) | event_ids(good_c)
    converted = (folder / "processed" / "b-bad.xml").exists()  # the damage was harmless
    event("damaged file converted" if converted else "damaged file set aside")
    if converted:  # (the same harmless damage may come twice: then its events are known)
        assert new - event_ids(bad) == expected
        assert event_ids(bad) <= set(intake.stored())
        return
    assert (folder / "rejected" / "b-bad.xml").read_bytes() == bad
    reason = (folder / "rejected" / "b-bad.xml.reason.txt").read_text()
    assert reason.strip(), "a file set aside must say why"
    assert new == expected, "a file set aside left events in the outbox"
    assert not list(folder.glob("*.xml")), "a file was left behind"


def test_drop_folder_size_limit(intake: EdgeIntake, tmp_path: Path) -> None:
    """Over 50 MiB: set aside unread. Under it, a big file converts (it is not held to the
    20 MiB of HTTP bodies)."""
    folder = tmp_path / "drop"
    folder.mkdir()
    with (folder / "a-huge.xml").open("wb") as sparse:
        sparse.truncate(MAX_FILE_BYTES + 1)
    padding = b"<!-- " + b"x" * (25 * 1024 * 1024) + b" -->"
    big = poslog(tx(), padding, tx())
    (folder / "b-big.xml").write_bytes(big)
    settle(folder)
    before = set(intake.stored())
    assert intake.loop.run(DropFolder(intake.ingestor, folder).scan_once()) == 2
    reason = (folder / "rejected" / "a-huge.xml.reason.txt").read_text()
    assert f"larger than {MAX_FILE_BYTES} bytes" in reason
    assert (folder / "processed" / "b-big.xml").exists()
    assert set(intake.stored()) - before == event_ids(big)


def test_backfill_import_reports_bad_files_and_imports_the_rest(
    intake: EdgeIntake, tmp_path: Path
) -> None:
    files = {
        "a.xml": poslog(tx()),
        "b.xml": HOSTILE["unknown encoding"][0],
        "c.xml": poslog(tx(), b"<Transaction><RetailTransaction/>"),
        "d.xml": poslog(tx()),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    before = set(intake.stored())
    paths = [tmp_path / name for name in files]
    report = intake.loop.run(import_files(intake.ingestor, intake.outbox, paths))
    assert report.imported == 2
    assert set(report.failed) == {str(tmp_path / "b.xml"), str(tmp_path / "c.xml")}
    assert all(reason.strip() for reason in report.failed.values())
    assert set(intake.stored()) - before == event_ids(files["a.xml"]) | event_ids(files["d.xml"])


@fuzz(20)
@given(lines=st.integers(200, 400), text=st.integers(400, 500))
def test_a_file_with_a_transaction_kafka_cannot_take_is_set_aside_or_failed_with_the_limit(
    intake: EdgeIntake, tmp_path_factory: pytest.TempPathFactory, lines: int, text: int
) -> None:
    # At least 200 lines of 400 characters: always over the fuzzed edge's 64 KiB door.
    folder = tmp_path_factory.mktemp("drop-oversize")
    sequence = next(_sequence)
    big = poslog(tx(), long_transaction(STORE, sequence, lines, text))
    good = poslog(tx())
    (folder / "a-big.xml").write_bytes(big)
    (folder / "b-good.xml").write_bytes(good)
    settle(folder)
    before = set(intake.stored())
    assert intake.loop.run(DropFolder(intake.ingestor, folder).scan_once()) == 2
    record = json.loads((folder / "processed" / "a-big.xml.result.json").read_text())
    [kept] = record["set_aside"]
    assert kept["sequence_number"] == str(sequence)
    assert f"at most {DOOR_LIMIT} bytes per record" in kept["reason"]
    assert "long item description" not in kept["reason"]
    # The big transaction is set aside; the small one beside it is not held back.
    first = event_ids(poslog(big_first(big)))
    assert set(intake.stored()) - before == event_ids(good) | first

    archive = folder / "archive.xml"
    archive.write_bytes(big)
    report = intake.loop.run(import_files(intake.ingestor, intake.outbox, [archive]))
    assert report.imported == 1 and not report.failed
    [kept_again] = report.set_aside[str(archive)]
    assert f"at most {DOOR_LIMIT} bytes per record" in kept_again.reason


def big_first(document: bytes) -> bytes:
    """The first transaction of a document."""
    root = ET.fromstring(document)
    return ET.tostring(root[0])


# --- any sale the converter accepts adds up -------------------------------------------------

_CENT = Decimal("0.01")
_PAN_ENDINGS = ["************4242", "XXXXXXXXXXXX0004", "545454******5454", "***123", ""]


def _cents(draw: st.DrawFn, low: int, high: int) -> Decimal:
    return Decimal(draw(st.integers(low, high))) * _CENT


def _r2(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


@st.composite
def till_receipts(draw: st.DrawFn) -> tuple[bytes, str]:
    """A receipt as some vendor's till writes it, consistent as a till computes it: lines
    (sold, returned, voided, weighed, discounted, deposits), tax included per line or added
    as a Tax line item, receipt discounts or NCR loyalty rewards, and tenders with change
    written any vendor's way. Returns (document, style label)."""
    added_tax = draw(st.booleans())
    rate = Decimal(draw(st.sampled_from([0, 7, 19, 20])))
    items: list[str] = []
    gross = tax = Decimal(0)
    seq = 0
    for _ in range(draw(st.integers(1, 5))):
        seq += 1
        weighed = draw(st.booleans())
        unit = draw(
            st.sampled_from(["KGM", "LBR", "KG"] if weighed else ["EA", "C62", "UN", "PCS"])
        )
        qty = (
            Decimal(draw(st.integers(1, 5000))) / 1000
            if weighed
            else Decimal(draw(st.integers(1, 5)))
        )
        price = _cents(draw, 1, 99_999)
        full = _r2(qty * price)
        off = (
            _cents(draw, 0, int(full * 100) - 1)
            if full > _CENT and draw(st.booleans())
            else Decimal(0)
        )
        extended = full - off
        kind = draw(st.sampled_from(["sale"] * 4 + ["return", "negative qty", "negative amount"]))
        voided = kind == "sale" and draw(st.integers(0, 4)) == 0
        line_tax = Decimal(0) if added_tax else _r2(extended * rate / (100 + rate))
        sign = 1 if kind == "sale" else -1
        if not voided:
            gross += sign * extended
            tax += sign * line_tax
        element = "Return" if kind == "return" else "Sale"
        q = f"-{qty}" if kind == "negative qty" else f"{qty}"
        e = f"-{extended}" if kind == "negative amount" else f"{extended}"
        item_type = draw(st.sampled_from(["Stock", "Deposit", "GiftCard"]))
        modifier = (
            f'<RetailPriceModifier><Amount Action="Subtract">{off}</Amount></RetailPriceModifier>'
            if off
            else ""
        )
        tax_el = f"<Tax><Amount>{line_tax}</Amount></Tax>" if line_tax else ""
        void = ' VoidFlag="true"' if voided else ""
        items.append(
            f"<LineItem{void}><SequenceNumber>{seq}</SequenceNumber>"
            f'<{element} ItemType="{item_type}"><ItemID>SKU-{seq}</ItemID>'
            f"<Description>Item {seq}</Description>"
            f"<RegularSalesUnitPrice>{price}</RegularSalesUnitPrice>"
            f"<ExtendedAmount>{e}</ExtendedAmount>{modifier}"
            f'<Quantity UnitOfMeasureCode="{unit}">{q}</Quantity>{tax_el}</{element}></LineItem>'
        )
    if added_tax and rate and gross > 0:
        tax = _r2(gross * rate / 100)
        seq += 1
        items.append(
            f'<LineItem><SequenceNumber>{seq}</SequenceNumber><Tax TaxType="Sales">'
            f"<Amount>{tax}</Amount></Tax></LineItem>"
        )
    elif added_tax:
        tax = Decimal(0)
    discount = Decimal(0)
    if gross > _CENT and draw(st.booleans()):
        discount = _cents(draw, 1, int(gross * 50))
        seq += 1
        if draw(st.booleans()):
            items.append(
                f"<LineItem><SequenceNumber>{seq}</SequenceNumber><Discount>"
                f'<Amount Action="Subtract">{discount}</Amount></Discount></LineItem>'
            )
        else:  # NCR: the reward in detail, then again as a summary, and points granted
            for how, category, amount in (
                ('detailedData="true"', "Monetary", f"-{discount}"),
                ('summarizedActivity="true"', "Monetary", f"-{discount}"),
                ('detailedData="true"', "CustomOffer", "5"),
            ):
                items.append(
                    f"<LineItem><SequenceNumber>{seq}</SequenceNumber><LoyaltyReward {how}>"
                    f"<RewardCategory>{category}</RewardCategory><ExtendedRewardAmount>{amount}"
                    "</ExtendedRewardAmount></LoyaltyReward></LineItem>"
                )
                seq += 1
    net = gross - discount + (tax if added_tax else Decimal(0))
    tenders, style = _tenders(draw, net, seq)
    totals = ""
    if not tenders or draw(st.booleans()):
        totals += f'<Total TotalType="TransactionGrandAmount">{net}</Total>'
    if draw(st.booleans()):
        totals += f'<Total TotalType="TransactionTaxAmount">{tax}</Total>'
    namespace = draw(st.sampled_from(["", ' xmlns="http://www.nrf-arts.org/IXRetail/namespace/"']))
    document = (
        f"<POSLog{namespace}><Transaction><RetailStoreID>{STORE}</RetailStoreID>"
        f"<WorkstationID>7</WorkstationID><SequenceNumber>{draw(st.integers(1, 10**6))}"
        "</SequenceNumber><EndDateTime>2025-03-14T10:15:00+01:00</EndDateTime>"
        f"<RetailTransaction>{''.join(items)}{tenders}{totals}</RetailTransaction>"
        "</Transaction></POSLog>"
    )
    return document.encode(), style


def _tenders(draw: st.DrawFn, net: Decimal, seq: int) -> tuple[str, str]:
    """Tenders paying ``net`` (refunding it when negative), with change written the way of
    one vendor, and sometimes a voided card tender beside them."""
    out: list[str] = []

    def line(body: str, void: bool = False) -> None:
        nonlocal seq
        seq += 1
        flag = ' VoidFlag="true"' if void else ""
        out.append(f"<LineItem{flag}><SequenceNumber>{seq}</SequenceNumber>{body}</LineItem>")

    def card(amount: Decimal, refund: bool = False) -> str:
        pan = draw(st.sampled_from(_PAN_ENDINGS))
        code = ' TypeCode="Refund"' if refund else ""
        return (
            f'<Tender TenderType="CreditDebit"{code}><Amount>{amount}</Amount>'
            f'<CreditDebit TypeCode="Visa"><PrimaryAccountNumber>{pan}</PrimaryAccountNumber>'
            "</CreditDebit></Tender>"
        )

    if draw(st.integers(0, 5)) == 0:
        line(card(_cents(draw, 1, 5000)), void=True)  # declined at the pin pad, voided
    if net < 0:
        if draw(st.booleans()):
            line(card(-net, refund=True))
        else:  # NCR writes the refund as a negative cash tender
            line(f'<Tender TenderType="Cash" TypeCode="Refund"><Amount>{net}</Amount></Tender>')
        return "".join(out), "refund"
    if net == 0:
        return "".join(out), "nothing to pay"
    by_card = _cents(draw, 0, int(net * 100)) if draw(st.booleans()) else Decimal(0)
    if by_card:
        line(card(by_card))
    cash = net - by_card
    if not cash:
        return "".join(out), "card"
    change = _cents(draw, 0, 5000)
    style = draw(st.sampled_from(["inside", "own line", "ncr negative tender"]))
    if not change:
        line(f'<Tender TenderType="Cash"><Amount>{cash}</Amount></Tender>')
        return "".join(out), "exact cash"
    if style == "inside":  # ARTS, Wincor, kiosk
        line(
            f'<Tender TenderType="Cash"><Amount>{cash + change}</Amount>'
            f"<TenderChange><Amount>{change}</Amount></TenderChange></Tender>"
        )
    elif style == "own line":  # roqqio
        line(f'<Tender TenderType="Cash"><Amount>{cash + change}</Amount></Tender>')
        line(
            '<TenderChange TypeCode="Refund"><TenderChange TenderType="Cash">'
            f"<Amount>{change}</Amount></TenderChange></TenderChange>"
        )
    else:  # NCR ACS
        line(f'<Tender TenderType="Cash" TypeCode="Sale"><Amount>{cash + change}</Amount></Tender>')
        line(
            f'<Tender TenderType="Cash" TypeCode="Refund"><Amount>-{change}</Amount>'
            f"<TenderChange><Amount>{change}</Amount></TenderChange></Tender>"
        )
    return "".join(out), f"change {style}"


@FUZZ
@given(receipt=till_receipts())
def test_any_sale_the_converter_accepts_adds_up_and_is_paid_in_full(
    receipt: tuple[bytes, str],
) -> None:
    """Totals rule (tillstream.core.rules) and payments rule: captured less refunded payments are
    the sale's net amount; change handed back is never a refund; cards are the HTTP shape."""
    document, style = receipt
    event(style)
    result = parse_poslog(document)
    if result.set_aside:  # set aside with its reason: nothing to check
        event(f"set aside: {result.set_aside[0].reason[:40]}")
        return
    [sale] = [r for kind, r in result.events if kind == "sale"]
    payments = [r for kind, r in result.events if kind == "payment"]
    assert rules.sale_problems(sale) == []
    sign = {"CAPTURED": 1, "REFUNDED": -1, "VOIDED": 0}
    paid = sum((sign[p["status"]] * p["amount"] for p in payments), Decimal(0))
    assert paid == sale["totals"]["net_amount"]
    if sale["totals"]["net_amount"] >= 0:
        assert "REFUNDED" not in {p["status"] for p in payments}
    for payment in payments:
        if payment["card"] is not None:
            CardIn.model_validate(payment["card"])


# --- no transaction silently lost (#12) -----------------------------------------------------

# (TransactionStatus, is a sale): None is no status at all, which is a finished sale.
_STATUSES = [(s, True) for s in (None, "Finished", "Totaled", "Shipped", "Delivered", "COMPLETED")]
_STATUSES += [(s, False) for s in ("Suspended", "Voided", "Ordered", "PostVoided")]
_CONTROLS = ["OperatorSignOn", "OperatorSignOff", "NoSale"]
_TENDER_CONTROLS = ["TillSettle", "TenderPickup", "TenderLoan", "PaidIn", "PaidOut"]
_REFERENCES = ["<OriginalTransaction><SequenceNumber>1</SequenceNumber></OriginalTransaction>"]
_TIMES = ["EndDateTime", "BeginDateTime", "POSLogDateTime"]


@st.composite
def _transaction(draw: st.DrawFn, sequence: int) -> tuple[bytes, bool]:
    """A transaction of any kind, with vendor references before its body and any one of the
    times a sale may carry; and whether it is a sale."""
    reference = draw(st.sampled_from(["", *_REFERENCES]))
    time_element = draw(st.sampled_from(_TIMES))
    kind = draw(st.sampled_from(["retail", "control", "tender_control"]))
    sale = False
    if kind == "retail":
        status, sale = draw(st.sampled_from(_STATUSES))
        opening = f'<RetailTransaction TransactionStatus="{status}">' if status else None
        body = retail_tx(STORE, sequence).decode()
        body = body[body.index("<RetailTransaction>") :]
        body = body.replace("<RetailTransaction>", opening) if opening else body
        body = body[: body.index("</Transaction>")]
    elif kind == "control":
        body = f"<ControlTransaction><{draw(st.sampled_from(_CONTROLS))}/></ControlTransaction>"
    else:
        inner = draw(st.sampled_from(_TENDER_CONTROLS))
        cash = '<Tender TenderType="Cash"><Amount>25.00</Amount></Tender>'
        body = f"<TenderControlTransaction><{inner}>{cash}</{inner}></TenderControlTransaction>"
    day = "2024-05-06"
    header = (
        f"<RetailStoreID>{STORE}</RetailStoreID><WorkstationID>7</WorkstationID>"
        f"<SequenceNumber>{sequence}</SequenceNumber>"
        f"<{time_element}>{day}T10:15:00+01:00</{time_element}>"
    )
    return f"<Transaction>{header}{reference}{body}</Transaction>".encode(), sale


@FUZZ
@given(data=st.data(), count=st.integers(1, 8))
def test_every_transaction_is_converted_or_listed_never_lost(
    data: st.DataObject, count: int
) -> None:
    drawn = [data.draw(_transaction(n)) for n in range(1, count + 1)]
    document = poslog(*(tx for tx, _ in drawn))
    sales = [n for n, (_, sale) in enumerate(drawn, 1) if sale]
    result = parse_poslog(document)  # control transactions are till events
    assert result.set_aside == []
    converted = [r["receipt_number"] for event, r in result.events if event == "sale"]
    assert converted == [str(n) for n in sales]
    till_events = [int(r["sequence_number"]) for e, r in result.events if e == "till_event"]
    post_voids = [int(r["voided_receipt_number"]) for e, r in result.events if e == "sale_void"]
    skipped = [s.index for s in result.skipped]
    every = sorted(skipped + sales + till_events + post_voids)
    assert every == list(range(1, count + 1)), "a transaction was lost"
    assert all(s.kind and s.reason for s in result.skipped)
