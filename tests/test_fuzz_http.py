"""Fuzzing the edge HTTP API: every bad request gets a clear 4xx, stores nothing, and the valid
requests around it are stored as if it had never been sent.

Runs the API in this process over ASGI with a real outbox (fast enough for hypothesis), plus
one edge process hit with raw garbage on its socket, since that is where uvicorn parses HTTP.
"""

from __future__ import annotations

import random
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.edge_support import EdgeProcess, payment_json, sale_json, stock_json, void_json
from tests.fuzz_support import (
    DAY30,
    DOOR_LIMIT,
    FUZZ,
    HOUR,
    TIMEOUT,
    EdgeIntake,
    ascii_card_numbers,
    card_numbers,
    dumps,
    extreme_times,
    fuzz,
    json_values,
    long_transaction,
    luhn_complete,
    mutated,
    mutated_xml,
    poslog,
    retail_tx,
)
from tillstream.core import rules
from tillstream.core.pan import digits_of
from tillstream.core.records import jsonable
from tillstream.dev.ports import free_port
from tillstream_edge.http_api import MAX_EVENTS_BODY, MAX_POSLOG_BODY
from tillstream_edge.limits import record_size
from tillstream_edge.models import ONE_EVENT
from tillstream_edge.poslog import parse_poslog
from tillstream_edge.poslog_intake import poslog_events

STORE = "S-FUZZ"
pytestmark = pytest.mark.timeout(TIMEOUT)


@pytest.fixture
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeIntake]:
    """One intake per test (shared by its examples): the outbox grows with one test's
    examples only."""
    intake = EdgeIntake(tmp_path_factory.mktemp("fuzz-http"), STORE)
    yield intake
    intake.close()


def valid(kind: str) -> dict[str, Any]:
    if kind == "stock_movement":
        return stock_json(STORE)
    if kind == "till_event":
        return till_json(STORE)
    sale = sale_json(STORE)
    if kind == "sale_void":
        return void_json(sale)
    return sale if kind == "sale" else payment_json(sale)


def till_json(store: str) -> dict[str, Any]:
    """A valid till event: a cash pickup, now."""
    at = datetime.now(UTC) - timedelta(minutes=5)
    return {
        "type": "till_event",
        "event_id": str(uuid.uuid4()),
        "store_id": store,
        "terminal_id": "T01",
        "kind": "PICKUP",
        "sequence_number": "4711",
        "operator_id": "C42",
        "business_day": at.date().isoformat(),
        "occurred_at": at.isoformat(),
        "currency": "EUR",
        "tenders": [{"tender": "CASH", "amount": "300.00"}],
        "reason": "SAFE-DROP",
    }


kinds = st.sampled_from(["sale", "payment", "stock_movement", "till_event", "sale_void"])


def accepted(edge: EdgeIntake, event: dict[str, Any]) -> str:
    answer = edge.post("/v1/events", dumps(event))
    assert answer.status_code == 202, answer.text
    return str(event["event_id"])


def assert_clear(answer: httpx.Response, status: int, field_prefix: str = "") -> None:
    """A refusal that says what is wrong: an error code and each bad field with a message."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"]
    assert body["problems"], "a refusal must name what is wrong"
    for problem in body["problems"]:
        assert problem["field"].startswith(field_prefix), (problem, field_prefix)
        assert problem["message"].strip()


def around(edge: EdgeIntake, path: str, content: Any, **kw: Any) -> tuple[httpx.Response, bool]:
    """Post ``content`` between two valid events; (answer, whether it stored nothing)."""
    before = edge.stored()
    first = accepted(edge, valid("stock_movement"))
    answer = edge.post(path, content, **kw)
    second = accepted(edge, valid("stock_movement"))
    after = edge.stored()
    assert first in after and second in after, "valid traffic around bad input was lost"
    return answer, after == [*before, first, second]


# --- /v1/events -------------------------------------------------------------------------

raw_bodies = st.one_of(
    st.binary(max_size=3000),
    json_values.map(dumps),
    st.builds(lambda k, v: dumps({"type": k, **v}), kinds, st.dictionaries(st.text(), json_values)),
)


@FUZZ
@given(body=raw_bodies)
def test_any_body_is_refused_clearly_and_stores_nothing(edge: EdgeIntake, body: bytes) -> None:
    answer, nothing_stored = around(edge, "/v1/events", body)
    assert_clear(answer, 422)
    assert nothing_stored


@FUZZ
@given(data=st.data(), kind=kinds, position=st.integers(0, 2))
def test_one_bad_event_refuses_the_batch_and_is_named(
    edge: EdgeIntake, data: st.DataObject, kind: str, position: int
) -> None:
    batch = [valid("stock_movement"), valid("sale"), valid("payment")]
    batch[position] = data.draw(mutated(valid(kind)), label="bad event")
    answer, nothing_stored = around(edge, "/v1/events", dumps(batch))
    if answer.status_code == 202:  # the change happened to keep the event valid
        stored = edge.stored()
        assert all(e["event_id"] in stored for e in batch)
        return
    assert_clear(answer, 422, field_prefix=f"events[{position}]")
    assert nothing_stored, "a refused batch left events in the outbox"


@FUZZ
@given(data=st.data(), kind=kinds)
def test_one_bad_single_event_is_refused_naming_a_field(
    edge: EdgeIntake, data: st.DataObject, kind: str
) -> None:
    event = data.draw(mutated(valid(kind)), label="bad event")
    answer, nothing_stored = around(edge, "/v1/events", dumps(event))
    if answer.status_code != 202:
        assert_clear(answer, 422)
        if not isinstance(event, list):  # one event: its fields are named without events[i]
            fields = [p["field"] for p in answer.json()["problems"]]
            assert not any(f.startswith("events[") for f in fields), fields
        assert nothing_stored


pans = st.builds(
    lambda body, sep: sep.join(luhn_complete("4" + body)[i : i + 4] for i in range(0, 16, 4)),
    st.text("0123456789", min_size=14, max_size=14),
    st.sampled_from(["", " ", "-"]),
) | card_numbers.map(lambda card: card[1])  # any scheme, separators and digits of any script
# Around the number: no digits or dashes, which would make it part of a longer number.
words = st.text(st.characters(categories=("L", "P", "Zs"), exclude_characters="-"), max_size=10)
free_text = st.sampled_from(
    [
        ("stock_movement", ("reference",)),
        ("sale", ("cashier_id",)),
        ("sale", ("lines", 0, "description")),
        ("till_event", ("operator_id",)),
        ("till_event", ("reason",)),
        ("sale_void", ("reason",)),
        ("sale_void", ("voided_receipt_number",)),
    ]
)


@fuzz(50)
@given(where=free_text, pan=pans, before=words, after=words)
def test_card_numbers_in_free_text_are_refused_and_never_echoed(
    edge: EdgeIntake, where: tuple[str, tuple[Any, ...]], pan: str, before: str, after: str
) -> None:
    kind, path = where
    event = valid(kind)
    holder: Any = event
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = f"{before} {pan} {after}"
    answer, nothing_stored = around(edge, "/v1/events", dumps(event))
    assert_clear(answer, 422)
    fields = [p["field"] for p in answer.json()["problems"]]
    assert any("card number" in p["message"] for p in answer.json()["problems"]), fields
    assert answer.json()["error"] == "card_number"  # counted under its own reason
    assert digits_of(pan) not in answer.text and pan not in answer.text
    assert nothing_stored


identifiers = st.sampled_from(
    [
        ("stock_movement", ("sku",), "sku"),
        ("stock_movement", ("gtin",), "gtin"),
        ("sale", ("lines", 0, "sku"), "lines[0].sku"),
        ("sale", ("lines", 0, "gtin"), "lines[0].gtin"),
    ]
)


@fuzz(50)
@given(where=identifiers, card=card_numbers | ascii_card_numbers)
def test_card_numbers_in_item_identifiers_are_refused_as_card_numbers(
    edge: EdgeIntake, where: tuple[str, tuple[Any, ...], str], card: tuple[str, str]
) -> None:
    kind, path, field = where
    digits, written = card
    event = valid(kind)
    holder: Any = event
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = written
    answer, nothing_stored = around(edge, "/v1/events", dumps(event))
    assert_clear(answer, 422)
    assert answer.json()["error"] == "card_number", answer.text
    assert [p["field"] for p in answer.json()["problems"]] == [field]
    assert digits not in answer.text and written not in answer.text
    assert nothing_stored


# --- the rules of a valid event (tillstream/core/rules.py) ------------------------------------

_MINUTE = timedelta(minutes=1)


@FUZZ
@given(kind=kinds, at=extreme_times)
def test_times_are_taken_only_if_every_consumer_can_hold_them_and_they_are_plausible(
    edge: EdgeIntake, kind: str, at: str
) -> None:
    event = valid(kind)
    event["occurred_at"] = at
    moment, now = datetime.fromisoformat(at), datetime.now(UTC)
    storable = rules.EARLIEST <= moment <= rules.LATEST
    if storable and "business_day" in event:  # the store-local date of the time (its rule)
        local = moment.astimezone(UTC) + timedelta(minutes=event.get("utc_offset_minutes", 0))
        event["business_day"] = local.date().isoformat()
    answer, nothing_stored = around(edge, "/v1/events", dumps(event))
    # A minute's margin each side of the window: the clock moves while the example runs.
    clearly_in = storable and now - DAY30 + _MINUTE <= moment <= now + HOUR - _MINUTE
    clearly_out = not storable or not now - DAY30 - _MINUTE <= moment <= now + HOUR + _MINUTE
    if answer.status_code == 202:
        assert not clearly_out, at
        [record] = edge.records([event["event_id"]])
        assert record["occurred_at"] == moment  # what a consumer decodes: the same instant
        return
    assert not clearly_in, answer.text
    assert_clear(answer, 422)
    assert [p["field"] for p in answer.json()["problems"]] == ["occurred_at"]
    assert nothing_stored


_CENT = Decimal("0.01")
_SIGN = {"SALE": 1, "RETURN": -1, "VOID": -1}  # written out again: the test's own oracle
amounts = st.decimals(min_value=0, max_value=Decimal("99999.99"), places=2)
anything = st.one_of(
    st.decimals(
        min_value=Decimal("-99999999999999.9999"),
        max_value=Decimal("99999999999999.9999"),
        places=4,
    ),
    st.sampled_from(["-99999999999999.9999", "99999999999999.9999", "0"]).map(Decimal),
)


@st.composite
def sales_with_totals(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A sale with drawn lines and totals; True if its totals are consistent by construction."""
    sale = valid("sale")
    template = sale["lines"][0]
    lines = []
    for n in range(1, draw(st.integers(1, 6)) + 1):
        extended = draw(amounts)
        taxed = draw(st.booleans())
        tax = (extended * 7 / 107).quantize(_CENT) if taxed else Decimal(0)
        kind = draw(st.sampled_from(["SALE", "SALE", "RETURN", "VOID"]))
        lines.append(
            template
            | {"line_number": n, "kind": kind, "quantity": "1", "unit_price": str(extended)}
            | {"extended_amount": str(extended), "tax_amount": str(tax)}
        )
    tolerance = _CENT * len(lines)
    gross = sum((_SIGN[ln["kind"]] * Decimal(ln["extended_amount"]) for ln in lines), _CENT * 0)
    tax = sum((_SIGN[ln["kind"]] * Decimal(ln["tax_amount"]) for ln in lines), _CENT * 0)
    goods = sum((Decimal(ln["extended_amount"]) for ln in lines), _CENT * 0)
    rounding = st.decimals(min_value=-tolerance, max_value=tolerance, places=2)
    how = draw(st.sampled_from(["exact", "rounded", "tax added", "discounted", "wild"]))
    given_gross = gross + (draw(rounding) if how == "rounded" else 0)
    discount = (
        draw(st.decimals(min_value=0, max_value=goods, places=2)) if how == "discounted" else 0
    )
    net = given_gross - discount + (tax if how == "tax added" else 0)
    net += draw(rounding) if how == "rounded" else 0
    totals = {"gross_amount": given_gross, "discount_amount": discount, "tax_amount": tax}
    totals["net_amount"] = net
    if how == "wild":  # any of the four, anything within the schema's precision
        field = draw(st.sampled_from(sorted(totals)))
        totals[field] = abs(draw(anything)) if field == "discount_amount" else draw(anything)
    sale["lines"] = lines
    sale["totals"] = {k: str(v) for k, v in totals.items()}
    return sale, how != "wild"


def totals_hold(sale: dict[str, Any]) -> bool:
    """The totals rule of docs/edge.md, checked independently of tillstream.core.rules."""
    lines, totals = sale["lines"], {k: Decimal(v) for k, v in sale["totals"].items()}
    tolerance = _CENT * len(lines)
    gross = sum(_SIGN[ln["kind"]] * Decimal(ln["extended_amount"]) for ln in lines)
    due = totals["gross_amount"] - totals["discount_amount"]
    return abs(totals["gross_amount"] - gross) <= tolerance and (
        abs(totals["net_amount"] - due) <= tolerance
        or abs(totals["net_amount"] - due - totals["tax_amount"]) <= tolerance
    )


@FUZZ
@given(drawn=sales_with_totals())
def test_every_sale_the_edge_accepts_satisfies_the_totals_rule(
    edge: EdgeIntake, drawn: tuple[dict[str, Any], bool]
) -> None:
    sale, consistent = drawn
    answer, nothing_stored = around(edge, "/v1/events", dumps(sale))
    if consistent:  # the rule refuses nothing a till computes correctly
        assert answer.status_code == 202, answer.text
    if answer.status_code == 202:
        [record] = edge.records([sale["event_id"]])
        assert totals_hold(jsonable(record)), sale["totals"]
        assert rules.totals_problems(record) == []
        return
    assert_clear(answer, 422, field_prefix="totals.")
    assert nothing_stored


@FUZZ
@given(total=anything | amounts, at=extreme_times)
def test_every_poslog_sale_the_edge_accepts_satisfies_the_rules(
    edge: EdgeIntake, total: Decimal, at: str
) -> None:
    """The same promise for POSLog: its till's total and time, whatever they are."""
    document = retail_tx(STORE, next(_sequence))
    document = re.sub(rb"<EndDateTime>[^<]*<", f"<EndDateTime>{at}<".encode(), document)
    document = document.replace(
        b'"TransactionGrandAmount">4.57<', f'"TransactionGrandAmount">{total}<'.encode()
    )
    answer, nothing_stored = around(edge, "/v1/poslog", poslog(document))
    if answer.status_code != 202:
        assert_clear(answer, 422, field_prefix="poslog")
        assert nothing_stored
        return
    for record in edge.records(answer.json()["event_ids"]):
        assert rules.EARLIEST <= record["occurred_at"] <= rules.LATEST
        if "lines" in record:
            assert totals_hold(jsonable(record)), record["totals"]


def test_reused_event_id_refuses_the_whole_batch(edge: EdgeIntake) -> None:
    """409 is a refusal too: the new events of a batch with a conflicting id are not kept."""
    first = valid("stock_movement")
    accepted(edge, first)
    clash = dict(first, quantity="99")
    fresh = [valid("stock_movement"), valid("sale")]
    answer, nothing_stored = around(edge, "/v1/events", dumps([fresh[0], clash, fresh[1]]))
    assert_clear(answer, 409, field_prefix="events[1].event_id")
    assert first["event_id"] in answer.text
    assert nothing_stored, "events next to a conflicting one were stored"
    retry = edge.post("/v1/events", dumps(fresh))  # the till drops the bad one and retries
    assert retry.status_code == 202


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("deep arrays", b"[" * 200_000 + b"]" * 200_000),
        ("deep objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        ("deep in a field", dumps({"type": "sale", "lines": [[[[[[[[[[[[[[]]]]]]]]]]]]]]})),
        ("huge string", dumps({"type": "stock_movement", "reference": "x" * 9_000_000})),
        ("huge number", b'{"type": "stock_movement", "quantity": ' + b"9" * 100_000 + b"}"),
        ("too many events", dumps([{"type": "stock_movement"}] * 10_001)),
        ("not UTF-8", b'{"type": "\xff\xfe"}'),
        ("NUL bytes", b"\x00" * 1000),
        ("empty", b""),
        ("empty array", b"[]"),
        ("BOM", b"\xef\xbb\xbf" + dumps(stock_json(STORE))),
    ],
)
def test_hostile_json_shapes(edge: EdgeIntake, name: str, body: bytes) -> None:
    started = time.process_time()
    answer, nothing_stored = around(edge, "/v1/events", body)
    assert_clear(answer, 422)
    assert nothing_stored
    assert time.process_time() - started < 20, f"{name} took too long"


async def chunks(total: int, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    while total > 0:
        yield b" " * min(size, total)
        total -= size


@pytest.mark.parametrize("path", ["/v1/events", "/v1/poslog"])
@pytest.mark.parametrize("declared", [True, False])
def test_oversized_requests_are_refused_before_parsing(
    edge: EdgeIntake, path: str, declared: bool
) -> None:
    limit = MAX_EVENTS_BODY if path == "/v1/events" else MAX_POSLOG_BODY
    body: Any = b"[" + b" " * limit + b"]" if declared else chunks(limit + 1)  # chunked: no size
    answer, nothing_stored = around(edge, path, body)
    assert_clear(answer, 413)
    assert str(limit) in answer.json()["problems"][0]["message"]
    assert nothing_stored


@FUZZ
@given(
    length=st.one_of(
        st.text(max_size=30),
        st.sampled_from(["²", "٣", "9" * 5000, "-1", "0x10", "1e9", " 12", "00000000000000012"]),
    )
)
def test_content_length_header_is_never_trusted_blindly(edge: EdgeIntake, length: str) -> None:
    body = dumps(stock_json("S-OTHER"))
    try:
        answer, nothing_stored = around(
            edge, "/v1/events", body, headers={"content-length": length}
        )
    except (httpx.LocalProtocolError, UnicodeEncodeError):
        return  # httpx itself refuses to send that header
    assert answer.status_code in (413, 422), answer.text
    assert_clear(answer, answer.status_code)
    assert nothing_stored


# --- /v1/poslog -------------------------------------------------------------------------

_sequence = iter(range(10**6, 10**7))


def poslog_body(data: st.DataObject) -> bytes:
    """A valid document with one transaction, then damaged one of several ways."""
    document = poslog(retail_tx(STORE, next(_sequence)))
    how = data.draw(st.sampled_from(["bytes", "xml", "cut", "flip"]), label="damage")
    if how == "bytes":
        return data.draw(st.binary(max_size=2000), label="body")
    if how == "xml":
        return data.draw(mutated_xml(document), label="body")
    if how == "cut":
        return document[: data.draw(st.integers(0, len(document) - 1), label="cut")]
    spots = data.draw(st.lists(st.integers(0, len(document) - 1), min_size=1, max_size=5))
    out = bytearray(document)
    for spot in spots:
        out[spot] = data.draw(st.integers(0, 255))
    return bytes(out)


@FUZZ
@given(data=st.data())
def test_damaged_poslog_is_refused_clearly_and_stores_nothing(
    edge: EdgeIntake, data: st.DataObject
) -> None:
    body = poslog_body(data)
    answer, nothing_stored = around(edge, "/v1/poslog", body)
    if answer.status_code == 202:  # each transaction converted, skipped or set aside with why
        stored = edge.stored()
        assert all(i in stored for i in answer.json()["event_ids"])
        assert all(k["reason"].strip() for k in answer.json()["set_aside"])
        return
    assert_clear(answer, 422, field_prefix="poslog")  # a document that cannot be parsed
    assert nothing_stored


def test_poslog_with_one_bad_transaction_sets_it_aside_and_stores_the_rest(
    edge: EdgeIntake,
) -> None:
    good = retail_tx(STORE, next(_sequence))
    bad = retail_tx(STORE, next(_sequence)).replace(b"<Amount>4.57", b"<Amount>4,57")
    answer, _ = around(edge, "/v1/poslog", poslog(good, bad))
    assert answer.status_code == 202, answer.text
    [kept] = answer.json()["set_aside"]
    assert kept["transaction"] == 2
    assert "Tender/Amount" in kept["reason"] and "'4,57' is not a decimal number" in kept["reason"]
    good_ids = {r["event_id"] for _, r in parse_poslog(poslog(good)).events}
    assert good_ids <= set(edge.stored())


# --- events larger than Kafka takes ---------------------------------------------------------


def long_sale(lines: int, text: int) -> dict[str, Any]:
    sale = sale_json(STORE)
    line = {**sale["lines"][0], "kind": "SALE", "gtin": None, "quantity": "1"}
    line.update(unit_price="1.00", discount_amount="0", tax_amount="0", extended_amount="1.00")
    description = ("long item description " * (text // 22 + 1))[:text] or None
    sale["lines"] = [
        {**line, "line_number": n, "sku": f"SKU-{n}", "description": description}
        for n in range(1, lines + 1)
    ]
    sale["totals"] = dict.fromkeys(("gross_amount", "net_amount"), str(lines))
    return sale


def weight(edge: EdgeIntake, event: dict[str, Any]) -> int:
    """The record size of an event as the edge would send it."""
    parsed = ONE_EVENT.validate_python(event)
    encoded = edge.unlimited.encode(parsed.type, parsed.record(), "http")
    return record_size(encoded.key, encoded.value)


def assert_oversize(answer: httpx.Response, field: str) -> None:
    assert_clear(answer, 413, field_prefix=field)
    assert answer.json()["error"] == "too_large"
    assert f"at most {DOOR_LIMIT} bytes per record" in answer.text
    assert "long item description" not in answer.text  # sizes, never content


@FUZZ
@given(lines=st.integers(1, 300), text=st.integers(0, 500), position=st.integers(0, 1))
@example(lines=300, text=500, position=1).via("always one refusal")
def test_an_event_larger_than_kafka_takes_is_refused_413_naming_the_limit(
    edge: EdgeIntake, lines: int, text: int, position: int
) -> None:
    sale = long_sale(lines, text)
    batch = [valid("stock_movement")]
    batch.insert(position, sale)
    answer, nothing_stored = around(edge, "/v1/events", dumps(batch))
    if weight(edge, sale) <= DOOR_LIMIT:
        assert answer.status_code == 202, answer.text
        return
    assert_oversize(answer, f"events[{position}]")
    assert nothing_stored, "a refused batch left events in the outbox"


@FUZZ
@given(lines=st.integers(1, 300), text=st.integers(0, 500))
@example(lines=300, text=500).via("always one refusal")
def test_a_poslog_transaction_larger_than_kafka_takes_is_set_aside_naming_the_limit(
    edge: EdgeIntake, lines: int, text: int
) -> None:
    sequence = next(_sequence)
    small = retail_tx(STORE, next(_sequence))
    document = poslog(small, long_transaction(STORE, sequence, lines, text))
    answer, _ = around(edge, "/v1/poslog", document)
    assert answer.status_code == 202, answer.text
    events = poslog_events(edge.unlimited, document, "poslog").events
    if max(record_size(e.key, e.value) for e in events) <= DOOR_LIMIT:
        assert answer.json()["set_aside"] == []
        return
    [kept] = answer.json()["set_aside"]
    assert kept["sequence_number"] == str(sequence)
    assert f"at most {DOOR_LIMIT} bytes per record" in kept["reason"]
    assert "long item description" not in answer.text  # sizes, never content
    small_ids = {r["event_id"] for _, r in parse_poslog(poslog(small)).events}
    assert small_ids <= set(edge.stored()), "the small transaction was held back"


# --- a real edge process, garbage on its socket ------------------------------------------


def _garbage() -> list[bytes]:
    rnd = random.Random(7)
    return [
        bytes(rnd.randrange(256) for _ in range(4096)),
        b"\r\n\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",  # then EOF
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n\xff\xfe",
    ]


def test_edge_process_survives_garbage_on_its_socket(tmp_path: Path) -> None:
    dead_kafka = f"127.0.0.1:{free_port()}"  # intake must not depend on Kafka
    edge = EdgeProcess(STORE, dead_kafka, tmp_path).start()
    try:
        good = [stock_json(STORE) for _ in range(len(_garbage()) + 1)]
        with httpx.Client(base_url=edge.url, timeout=10) as http:
            for event, garbage in zip(good, [*_garbage(), b""], strict=True):
                assert http.post("/v1/events", content=dumps(event)).status_code == 202
                if garbage:
                    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
                        sock.sendall(garbage)
                        sock.shutdown(socket.SHUT_WR)
                        reply = sock.recv(65536)
                    assert not reply or reply.startswith(b"HTTP/1.1 4"), reply[:200]
            assert http.get("/healthz").status_code == 200
        assert edge.proc is not None and edge.proc.poll() is None
        assert edge.stop() == 0
        with sqlite3.connect(f"file:{edge.outbox}?mode=ro", uri=True) as db:
            stored = [row[0] for row in db.execute("SELECT event_id FROM events ORDER BY seq")]
        assert stored == [e["event_id"] for e in good]
        assert "Traceback" not in edge.log()
    finally:
        edge.kill()
