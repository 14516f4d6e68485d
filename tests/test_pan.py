"""The card-number guard: PANs are caught in any shape, item identifiers are not PANs."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.ingest import IngestError, Ingestor
from producers.outbox import Outbox
from producers.pan import contains_pan, mask_pans
from tillstream.codec import AvroCodec
from tillstream.samples import sample_payment, sample_sale, sample_stock_movement


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "paid with 5500000000000004 ok",
        "378282246310005",
        "6011111111111117",
        "3530111333300000",
        "2223003122003222",
        "Tel 12 4111 1111 1111 1111",  # a card number after other grouped digits
        "1234 4111 1111 1111 1111 9",
    ],
)
def test_card_numbers_are_found(text: str) -> None:
    assert contains_pan(text)
    assert mask_pans(text).count("*") >= 9


@pytest.mark.parametrize(
    "text",
    [
        "4006381333931",
        "5012345678900",
        "40063813339310",
        "4111111111111112",
        "123456789012",
        "receipt 000123 till 7",
        "1234567812345670",
    ],
)
def test_item_identifiers_and_other_numbers_are_not_card_numbers(text: str) -> None:
    assert not contains_pan(text)
    assert mask_pans(text) == text


@pytest.mark.parametrize("channel", ["http", "poslog", "dropfolder", "import", "device"])
async def test_every_channel_refuses_a_card_number_in_free_text(
    channel: str, codec: AvroCodec, tmp_path: Path
) -> None:
    ingestor = Ingestor("S001", codec, Outbox(tmp_path / "o.db"))
    movement = sample_stock_movement("S001")
    movement["reference"] = "card 4111 1111 1111 1111"
    with pytest.raises(IngestError, match="reference: looks like a card number"):
        ingestor.encode("stock_movement", movement, channel)
    sale = sample_sale("S001")
    sale["lines"][0]["description"] = "4111111111111111"
    with pytest.raises(IngestError, match=r"lines\[0\].description"):
        ingestor.encode("sale", sale, channel)
    payment = sample_payment(sample_sale("S001"))
    payment["card"]["token"] = "5500-0000-0000-0004"
    with pytest.raises(IngestError, match=r"card\.token"):
        ingestor.encode("payment", payment, channel)
    ok = sample_stock_movement("S001")
    ok["gtin"] = ok["reference"] = "4006381333924"  # a GTIN-13 that also passes Luhn: an item
    assert ingestor.encode("stock_movement", ok, channel).event_id == ok["event_id"]
