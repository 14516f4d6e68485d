"""Fuzzing the Avro codec: whatever the bytes, decoding gives a record or a CodecError (never
IndexError, EOFError, struct.error...), and encoding refuses bad records with a CodecError.
"""

from __future__ import annotations

import struct
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz_support import FUZZ, TIMEOUT, text
from tillstream.core.codec import AvroCodec, CodecError, Decoded
from tillstream.core.registry import FileRegistry
from tillstream.core.schemas import SchemaSet
from tillstream.dev.samples import sample_payment, sample_sale, sample_stock_movement

pytestmark = pytest.mark.timeout(TIMEOUT)
CODEC = AvroCodec(FileRegistry(SchemaSet()))
# Every committed schema (consumers' events too), not only the three the edge writes.
SCHEMA_IDS = sorted(v.schema_id for v in SchemaSet().all_versions() if v.schema_id is not None)


def samples() -> dict[str, dict[str, Any]]:
    sale = sample_sale()
    return {
        "sale": sale,
        "payment": sample_payment(sale),
        "stock_movement": sample_stock_movement(),
    }


ENCODED = {event: CODEC.encode(event, record) for event, record in samples().items()}


def decode(data: bytes) -> Decoded | CodecError:
    """What decoding ``data`` gives; any other exception fails the test, as does a hang."""
    started = time.process_time()
    try:
        result: Decoded | CodecError = CODEC.decode(data)
    except CodecError as exc:
        result = exc
    assert time.process_time() - started < 2, "decoding took too long"
    if isinstance(result, CodecError):
        assert str(result).strip()
    else:
        assert isinstance(result.record, dict) and result.schema_id in SCHEMA_IDS
    return result


@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes_decode_to_a_codec_error(data: bytes) -> None:
    decode(data)


@FUZZ
@given(schema_id=st.sampled_from(SCHEMA_IDS), body=st.binary(max_size=600))
def test_random_body_behind_a_valid_header(schema_id: int, body: bytes) -> None:
    decode(struct.pack(">BI", 0, schema_id) + body)


@FUZZ
@given(data=st.data(), event=st.sampled_from(sorted(ENCODED)))
def test_damaged_messages_decode_or_fail_clearly(data: st.DataObject, event: str) -> None:
    message = bytearray(ENCODED[event])
    how = data.draw(st.sampled_from(["flip", "cut", "insert", "extend"]))
    if how == "flip":
        for spot in data.draw(st.lists(st.integers(5, len(message) - 1), min_size=1, max_size=6)):
            message[spot] = data.draw(st.integers(0, 255))
    elif how == "cut":
        del message[data.draw(st.integers(0, len(message) - 1)) :]
    elif how == "insert":
        at = data.draw(st.integers(5, len(message)))
        message[at:at] = data.draw(st.binary(min_size=1, max_size=20))
    else:
        message += data.draw(st.binary(min_size=1, max_size=20))
    result = decode(bytes(message))
    if how in ("cut", "extend"):  # nothing half-decoded and nothing left over passes
        assert isinstance(result, CodecError)


def test_wrong_magic_byte_is_named_as_it_is() -> None:
    data = b"\xff" + ENCODED["sale"][1:]
    with pytest.raises(CodecError, match="magic byte 0xff"):
        CODEC.decode(data)


any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**80),
    st.floats(),
    st.decimals(),
    st.sampled_from([Decimal("1E+40"), Decimal("1E-40"), Decimal("NaN"), Decimal("-0")]),
    text,
    st.text(),  # lone surrogates included: not encodable as UTF-8
    st.binary(max_size=10),
    st.datetimes(),  # naive
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(text, st.integers(), max_size=2),
    st.builds(uuid.uuid4),
)


def replace_somewhere(data: st.DataObject, record: Any) -> Any:
    if isinstance(record, dict) and record and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(record)))
        action = data.draw(st.sampled_from(["replace", "drop", "add"]))
        out = dict(record)
        if action == "drop":
            del out[key]
        elif action == "add":
            out[data.draw(text)] = data.draw(any_value)
        else:
            out[key] = replace_somewhere(data, record[key])
        return out
    if isinstance(record, list) and record and data.draw(st.booleans()):
        out_list = list(record)
        index = data.draw(st.integers(0, len(out_list) - 1))
        out_list[index] = replace_somewhere(data, out_list[index])
        return out_list
    return data.draw(any_value)


@FUZZ
@given(data=st.data(), event=st.sampled_from(sorted(ENCODED)))
def test_bad_records_are_refused_with_a_codec_error(data: st.DataObject, event: str) -> None:
    record = replace_somewhere(data, samples()[event])
    try:
        encoded: bytes | CodecError = CODEC.encode(event, record)
    except CodecError as exc:
        encoded = exc
    if isinstance(encoded, CodecError):
        assert str(encoded).startswith(f"cannot encode {event}")
        return
    decoded = decode(encoded)  # whatever was accepted must read back
    assert isinstance(decoded, Decoded) and decoded.event == event


@pytest.mark.parametrize(
    ("event", "field", "value"),
    [
        ("stock_movement", "event_id", ""),
        ("payment", "sale_event_id", "not-a-uuid"),
        ("sale", "business_day", 2_932_897),  # the day after 9999-12-31
        ("sale", "business_day", -719_163),  # the day before 0001-01-01
        ("sale", "occurred_at", 10**20),
        ("sale", "occurred_at", float("nan")),
        ("sale", "business_day", Decimal("-719163")),
        ("sale", "business_day", Decimal("NaN")),
    ],
)
def test_values_fastavro_writes_but_cannot_read_back_are_refused(
    event: str, field: str, value: Any
) -> None:
    """These were encoded, and then no consumer could decode the message."""
    record = dict(samples()[event], **{field: value})
    with pytest.raises(CodecError, match=f"cannot encode {event}: {field} is not a valid"):
        CODEC.encode(event, record)
    edge = dict(samples()[event], **{field: 2_932_896 if field == "business_day" else 0})
    if field in ("business_day", "occurred_at"):  # the last readable value still is
        assert CODEC.decode(CODEC.encode(event, edge)).record[field]


def test_encode_refuses_unknown_events_and_non_records() -> None:
    with pytest.raises(CodecError, match="unknown event type"):
        CODEC.encode("refund", {})
    for not_a_record in (None, [], "sale", 42, date(2026, 1, 1), datetime.now(UTC)):
        with pytest.raises(CodecError, match="cannot encode sale"):
            CODEC.encode("sale", not_a_record)  # type: ignore[arg-type]
