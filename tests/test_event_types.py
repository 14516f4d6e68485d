"""The typed events a consumer reads: ``tillstream/core/events.py`` is generated from
``schemas/`` and must not fall behind it; ``Record`` has a typed accessor per event type."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import get_type_hints

import pytest

from tillstream.core import event_types, events
from tillstream.core.codec import AvroCodec
from tillstream.core.schemas import SchemaSet
from tillstream.core.topics import EVENT_TOPICS
from tillstream.dev.samples import sample_payment, sample_sale
from tillstream_consumers.runtime import Record, WrongEvent

ROOT = Path(__file__).resolve().parent.parent


def test_the_generated_event_types_are_up_to_date_with_the_schemas() -> None:
    assert event_types.TARGET.read_text() == event_types.render(SchemaSet(ROOT / "schemas")), (
        "tillstream/core/events.py is out of date with schemas/: run tillstream schemas types"
    )


def test_a_schema_change_shows_as_out_of_date(tmp_path: Path) -> None:
    target = tmp_path / "events.py"
    assert event_types.write(target) is True
    assert event_types.write(target) is False  # unchanged the second time
    target.write_text(target.read_text().replace("receipt_number: str", "receipt: str"))
    done = subprocess.run(
        [sys.executable, "-m", "tillstream", "schemas", "types", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr  # the real file is current
    assert "up to date" in done.stdout
    assert target.read_text() != event_types.render()


def test_every_event_type_has_its_typed_dict_and_record_accessor() -> None:
    schemas = SchemaSet(ROOT / "schemas")
    assert set(events.EVENT_TYPES) == set(schemas.versions)
    for event in schemas.versions:
        assert callable(getattr(Record, event, None)), f"Record.{event}() is missing"


def test_typed_dicts_follow_what_the_codec_decodes() -> None:
    hints = get_type_hints(events.Sale)
    assert hints["event_id"] is str
    assert hints["occurred_at"] is datetime
    line = get_type_hints(events.SaleLine)
    assert line["quantity"] is Decimal
    assert set(line["kind"].__args__) == {"SALE", "RETURN", "VOID"}


def test_a_typed_accessor_gives_the_value_or_names_both_event_types(codec: AvroCodec) -> None:
    sale = sample_sale("S1")
    decoded = codec.decode(codec.encode("sale", sale))
    record = Record.decoded(EVENT_TOPICS["sale"].name, 3, 42, b"S1", "sale", decoded.record, 0)
    assert record.sale()["receipt_number"] == sale["receipt_number"]
    with pytest.raises(
        WrongEvent, match=r"tillstream\.sales\[3\]@42 is a sale event, not a payment"
    ):
        record.payment()
    payment = codec.decode(codec.encode("payment", sample_payment(sale))).record
    assert Record.decoded("p", 0, 0, None, "payment", payment, 0).payment()["amount"] > 0


def test_the_kinds_a_till_may_send_are_the_schemas_but_other() -> None:
    from typing import get_args

    from tillstream.core.till_events import WrittenKind

    assert set(get_args(WrittenKind)) == set(get_args(events.TillEventKind)) - {"OTHER"}
