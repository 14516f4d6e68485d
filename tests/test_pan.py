"""The card-number guard: PANs are caught in any spelling; item identifiers follow one rule
(a real GTIN is an item, a card number is never a SKU or a GTIN) on every channel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import ean, luhn

from tests.fuzz_support import FUZZ, card_numbers
from tillstream.core.codec import AvroCodec
from tillstream.core.identifiers import (
    CARD_NUMBER,
    gtin_problem,
    is_gtin,
    sku_problem,
    text_problem,
)
from tillstream.core.pan import contains_pan, find_pans, mask_pans
from tillstream.dev.samples import sample_payment, sample_sale, sample_stock_movement
from tillstream_edge.devices.config import DeviceConfigError, load_devices
from tillstream_edge.ingest import IngestError, Ingestor
from tillstream_edge.outbox import Outbox
from tillstream_edge.poslog_xml import PoslogError


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


# -- any spelling of a card number ---------------------------------------------------------

SPELLINGS = {
    "dots": "4111.1111.1111.1111",
    "slashes": "4111/1111/1111/1111",
    "underscores": "4111_1111_1111_1111",
    "tabs": "4111\t1111\t1111\t1111",
    "two spaces": "4111  1111  1111  1111",
    "no-break spaces": "4111\u00a01111\u00a01111\u00a01111",
    "zero-width spaces": "4111\u200b1111\u200b1111\u200b1111",
    "mixed runs": "4111 -/ 1111._1111 \u200b 1111",
    "full-width digits": "４１１１１１１１１１１１１１１１",
    "full-width, ideographic spaces": "４１１１\u3000１１１１\u3000１１１１\u3000１１１１",
    "Arabic-Indic digits": "٤١١١١١١١١١١١١١١١",
    "Devanagari digits": "४१११ ११११११११११११",
    "mathematical digits": "𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏",
    "superscripts": "⁴¹¹¹¹¹¹¹¹¹¹¹¹¹¹¹",
    "scripts mixed": "4١1१ １111 1111 1111",
    "combining mark": "4\u0301111 1111 1111 1111",
}


@pytest.mark.parametrize("text", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_card_numbers_are_found_in_any_spelling(text: str) -> None:
    assert contains_pan(text) and contains_pan(f"paid with {text}, thanks")
    assert find_pans(f"x {text} y") == ["4111111111111111"]
    masked = mask_pans(f"paid with {text}, thanks")
    assert masked == "paid with ************1111, thanks"  # positions map back to the text


@given(card=card_numbers, before=st.text(max_size=20), after=st.text(max_size=20))
@FUZZ
def test_masking_leaves_no_card_number_in_any_spelling(
    card: tuple[str, str], before: str, after: str
) -> None:
    digits, written = card
    text = f"{before} {written} {after}"
    # Digits around it may join it (any separator joins groups): then a longer span is found.
    assert any(digits in found for found in find_pans(text))
    masked = mask_pans(text)
    assert find_pans(masked) == [] and not contains_pan(masked)
    assert written not in masked


def test_letters_still_end_a_number() -> None:
    assert not contains_pan("4111 1111 x 1111 1111")
    assert not contains_pan("4111a1111b1111c1111")


# -- item identifiers ----------------------------------------------------------------------

DINERS_GTIN = "36000000000081"  # a Diners Club number that is also a valid GTIN-14
REAL_GTINS = [
    "4006381333931",  # EAN-13 that also passes Luhn with a Visa prefix
    "036000291452",  # UPC-A
    "96385074",  # GTIN-8
    "14006381333938",  # GTIN-14 case code
    "40063813339314",  # GTIN-14 that passes Luhn with a Visa prefix: not a 14-digit scheme
    "00000000067591",  # a POSLog sample's ItemID
    "9780306406157",  # ISBN
]


def test_the_diners_number_is_a_card_and_a_valid_gtin_by_digits_alone() -> None:
    assert luhn.is_valid(DINERS_GTIN) and ean.is_valid(DINERS_GTIN)
    assert luhn.is_valid("40063813339314") and ean.is_valid("40063813339314")


@pytest.mark.parametrize("gtin", REAL_GTINS)
def test_real_gtins_pass_as_gtins_and_as_skus(gtin: str) -> None:
    assert gtin_problem(gtin) is None and is_gtin(gtin)
    assert sku_problem(gtin) is None


@pytest.mark.parametrize(
    ("gtin", "kind"),
    [
        (DINERS_GTIN, CARD_NUMBER),
        ("30000000000087", CARD_NUMBER),  # Carte Blanche (300), GTIN check digit valid too
        ("4111111111111111", CARD_NUMBER),
        ("5555 5555 5555 4444", CARD_NUMBER),
        ("４００６３８１３３３９３１", "invalid"),  # a GTIN is ASCII digits
        ("4006381333932", "invalid"),  # check digit
        ("01400000000007", "invalid"),  # GS1 prefix 140 is not assigned
        ("1234567", "invalid"),
        ("SKU-1", "invalid"),
    ],
)
def test_the_gtin_rule(gtin: str, kind: str) -> None:
    problem = gtin_problem(gtin)
    assert problem is not None and problem.kind == kind
    assert gtin not in problem.message


@pytest.mark.parametrize("prefix", ["300", "305", "3095", "36", "38", "39"])
def test_a_14_digit_diners_number_is_a_card_by_the_card_rules_own_prefixes(prefix: str) -> None:
    # The GTIN rule asks tillstream.core.pan which scheme a number is: one prefix table.
    body = prefix + "0" * (13 - len(prefix))
    card = body + luhn.calc_check_digit(body)
    problem = gtin_problem(card)
    assert problem is not None and problem.kind == CARD_NUMBER
    not_luhn = gtin_problem(body + str((int(luhn.calc_check_digit(body)) + 1) % 10))
    assert not_luhn is None or not_luhn.kind != CARD_NUMBER


@pytest.mark.parametrize(
    ("sku", "kind"),
    [
        ("4111111111111111", CARD_NUMBER),
        ("5555 5555 5555 4444", CARD_NUMBER),  # a card number first, whatever else is wrong
        ("SKU-4111-1111-1111-1111", CARD_NUMBER),
        ("4111.1111.1111.1111", CARD_NUMBER),
        (DINERS_GTIN, CARD_NUMBER),
        ("X" * 5000, "invalid"),
        ("A'; DROP TABLE erp_stock; --", "invalid"),
        ("", "invalid"),
        ("-leading-dash", "invalid"),
        ("SKU\u200bMILK", "invalid"),
    ],
)
def test_the_sku_rule(sku: str, kind: str) -> None:
    problem = sku_problem(sku)
    assert problem is not None and problem.kind == kind
    assert not sku or sku not in problem.message


@pytest.mark.parametrize("sku", ["SKU-MILK-1L", "WRAP-01", "X", "73010", "a.b/c_d-e", "9" * 64])
def test_ordinary_skus_pass(sku: str) -> None:
    assert sku_problem(sku) is None


@pytest.mark.parametrize(
    "text", ["card 4111 1111 1111 1111", "４１１１\u200b１１１１\u200b１１１１\u200b１１１１"]
)
def test_the_free_text_rule_refuses_a_card_number_without_quoting_it(text: str) -> None:
    problem = text_problem(text)
    assert problem is not None and problem.kind == CARD_NUMBER
    assert "1111" not in problem.message


@pytest.mark.parametrize("text", ["Milk 1L", "receipt 4006381333931", "cashier 0042", ""])
def test_the_free_text_rule_takes_anything_else(text: str) -> None:
    assert text_problem(text) is None


@pytest.mark.parametrize("channel", ["http", "poslog", "dropfolder", "import", "device"])
async def test_every_channel_refuses_a_card_number_as_an_item_id(
    channel: str, codec: AvroCodec, tmp_path: Path
) -> None:
    ingestor = Ingestor("S001", codec, Outbox(tmp_path / "o.db"))
    cases: list[tuple[str, dict[str, Any], str, str]] = []
    for sku in ("4111111111111111", "5555 5555 5555 4444", "４１１１.１１１１.１１１１.１１１１"):
        movement = sample_stock_movement("S001")
        movement["sku"] = sku
        cases.append(("stock_movement", movement, "sku", CARD_NUMBER))
    sale = sample_sale("S001")
    sale["lines"][0]["gtin"] = DINERS_GTIN
    cases.append(("sale", sale, r"lines\[0\]\.gtin", CARD_NUMBER))
    for sku in ("X" * 5000, "A'; DROP TABLE erp_stock; --"):  # the HTTP rule, everywhere
        sale = sample_sale("S001")
        sale["lines"][0]["sku"] = sku
        cases.append(("sale", sale, r"lines\[0\]\.sku", "invalid"))
    unknown_prefix = sample_stock_movement("S001")
    unknown_prefix["gtin"] = "01400000000007"
    cases.append(("stock_movement", unknown_prefix, "gtin", "invalid"))
    for event_type, record, field, reason in cases:
        with pytest.raises(IngestError, match=f"^{field}: ") as refused:
            ingestor.encode(event_type, record, channel)
        assert refused.value.reason == reason
        assert "1111" not in str(refused.value) and "DROP" not in str(refused.value)
    ok = sample_stock_movement("S001")
    ok["sku"], ok["gtin"] = "40063813339314", "40063813339314"  # a real GTIN-14 as SKU too
    assert ingestor.encode("stock_movement", ok, channel).event_id == ok["event_id"]


async def test_a_store_id_mismatch_does_not_quote_what_was_sent(
    codec: AvroCodec, tmp_path: Path
) -> None:
    ingestor = Ingestor("S001", codec, Outbox(tmp_path / "o.db"))
    movement = sample_stock_movement("S-4111111111111111")
    with pytest.raises(IngestError, match="S001") as refused:
        ingestor.encode("stock_movement", movement, "http")
    assert "4111" not in str(refused.value)


def test_a_devices_file_cannot_map_a_gtin_to_a_card_number(tmp_path: Path) -> None:
    path = tmp_path / "devices.toml"
    path.write_text('[items]\n"4006381333931" = "5555-5555-5555-4444"\n')
    with pytest.raises(DeviceConfigError, match="card number") as refused:
        load_devices(path)
    assert "5555" not in str(refused.value)


@pytest.mark.parametrize("card", ["4111.1111.1111.1111", "４１１１_１１１１_１１１１_１１１１"])
def test_a_long_poslog_message_is_never_cut_inside_a_card_number(card: str) -> None:
    # Cut at 300 characters: what is left of the number would no longer look like one.
    message = str(PoslogError("x" * 290 + f" {card} " + "y" * 1000))
    assert "[...]" in message and "4111" not in message and "１１１１" not in message
    message = str(PoslogError("x" * 1000 + f" {card} " + "y" * 290))
    assert "[...]" in message and "1111" not in message and "１１１１" not in message
