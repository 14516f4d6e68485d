"""The audit's fact digests are stored and compared with events that arrive later, maybe
after an upgrade: they must not change with the code that makes them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from tests.audit_support import DAY, Till, local
from tillstream.core.codec import AvroCodec
from tillstream.core.events import Sale
from tillstream.core.registry import FileRegistry
from tillstream.core.schemas import SchemaSet
from tillstream.dev.samples import sample_sale
from tillstream_consumers.audit.facts import content_digest, receipt_digest


def _decoded(event: str, record: dict[str, Any]) -> dict[str, Any]:
    schemas = SchemaSet()
    codec = AvroCodec(FileRegistry(schemas), schemas)
    return codec.decode(codec.encode(event, record)).record


def _sale(**totals: Decimal) -> Sale:
    sale = sample_sale("S001", at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    sale["event_id"] = "8d0c3f3e-5f0c-4c39-9a53-0c1f2b7d9e11"
    sale["totals"] = dict(sale["totals"], **totals)
    return cast(Sale, _decoded("sale", sale))


def test_a_receipts_digest_is_the_one_earlier_versions_stored() -> None:
    sale = _sale()
    assert receipt_digest(sale) == "ca2370b5eaa792961e06c0ba81485fcc"
    resent = cast(Sale, {**sale, "event_id": "0b6f1d8e-6a0e-4a55-8a6c-4a1b0f7f2d33"})
    assert receipt_digest(resent) == receipt_digest(sale)


def test_a_till_events_digest_is_the_one_earlier_versions_stored() -> None:
    event = Till("S001", "T1", DAY, "op1").control(
        "TENDER_DECLARATION", local(DAY, 21), {"CASH": Decimal("170.00")}
    )
    assert content_digest(_decoded("till_event", event)) == "b13fa1d190af1fdb50e01511589b9cd2"
