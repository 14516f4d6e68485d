"""The Avro codec: round trips, schema evolution, and clear errors on bad bytes."""

from __future__ import annotations

import json
import shutil
import struct
from decimal import Decimal
from pathlib import Path

import pytest

from tests.helpers import normalized
from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.registry import FileRegistry
from tillstream.core.schemas import SchemaSet, pin_new_versions
from tillstream.dev.samples import sample_payment, sample_sale, sample_stock_movement


def samples() -> list[tuple[str, dict]]:
    sale = sample_sale()
    return [
        ("sale", sale),
        ("payment", sample_payment(sale)),
        ("stock_movement", sample_stock_movement()),
    ]


@pytest.mark.parametrize(
    ("event", "record"), samples(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_round_trip_each_event_type(codec: AvroCodec, event: str, record: dict) -> None:
    data = codec.encode(event, record)
    assert data[0] == 0  # Confluent magic byte
    decoded = codec.decode(data)
    assert decoded.event == event
    assert decoded.schema_id == struct.unpack(">I", data[1:5])[0]
    assert normalized(decoded.record) == record


def test_money_and_weights_stay_decimal(codec: AvroCodec) -> None:
    sale = sample_sale()
    decoded = codec.decode(codec.encode("sale", sale)).record
    weighed = decoded["lines"][1]
    assert weighed["quantity"] == Decimal("0.734")
    assert isinstance(weighed["unit_price"], Decimal)
    assert decoded["occurred_at"].tzinfo is not None


def test_a_tombstone_is_a_codec_error(codec: AvroCodec) -> None:
    with pytest.raises(CodecError, match="tombstone"):
        codec.decode(None)


def test_unknown_schema_id_is_a_codec_error(codec: AvroCodec) -> None:
    data = codec.encode("stock_movement", sample_stock_movement())
    with pytest.raises(CodecError, match="unknown schema id 999"):
        codec.decode(b"\x00" + struct.pack(">I", 999) + data[5:])


@pytest.mark.parametrize("cut", [1, 4, 5, 12, 40, -1])
def test_truncated_bytes_never_decode(codec: AvroCodec, cut: int) -> None:
    data = codec.encode("sale", sample_sale())
    with pytest.raises(CodecError):
        codec.decode(data[:cut])


def test_wrong_magic_byte_and_trailing_bytes_are_rejected(codec: AvroCodec) -> None:
    data = codec.encode("payment", sample_payment(sample_sale()))
    with pytest.raises(CodecError, match="magic byte 0x01"):
        codec.decode(b"\x01" + data[1:])
    with pytest.raises(CodecError, match="2 bytes left over"):
        codec.decode(data + b"\x00\x00")


def test_encoding_wrong_types_names_the_field(codec: AvroCodec) -> None:
    movement = sample_stock_movement()
    movement["quantity"] = 1.5  # a float: money and quantities are never floats
    with pytest.raises(CodecError, match="quantity"):
        codec.encode("stock_movement", movement)
    with pytest.raises(CodecError, match="unknown event type"):
        codec.encode("refund", movement)


def test_there_is_no_place_for_a_card_number(codec: AvroCodec) -> None:
    payment = sample_payment(sample_sale())
    payment["card"]["pan"] = "4111111111111111"
    decoded = codec.decode(codec.encode("payment", payment)).record
    assert "4111111111111111" not in json.dumps(normalized(decoded), default=str)


def test_old_data_is_read_in_the_current_shape(tmp_path: Path) -> None:
    """A consumer on v2 reads events written with v1; the new field gets its default."""
    root = tmp_path / "schemas"
    shutil.copytree(SchemaSet().root, root)
    v1 = json.loads((root / "stock_movement" / "v1.avsc").read_text())
    old = AvroCodec(FileRegistry(SchemaSet(root)), SchemaSet(root))
    data = old.encode("stock_movement", sample_stock_movement())

    v2 = dict(
        v1,
        fields=[
            *v1["fields"],
            {
                "name": "operator_id",
                "type": ["null", "string"],
                "default": None,
                "doc": "Who moved the stock.",
            },
        ],
    )
    (root / "stock_movement" / "v2.avsc").write_text(json.dumps(v2))
    pin_new_versions(SchemaSet(root))
    new = AvroCodec(FileRegistry(SchemaSet(root)), SchemaSet(root))
    decoded = new.decode(data)
    assert decoded.event == "stock_movement"
    assert decoded.record["operator_id"] is None
    assert new.schema_id("stock_movement") != old.schema_id("stock_movement")
