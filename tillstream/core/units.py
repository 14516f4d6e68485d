"""Units of measure: the codes tillstream reads, and the project's unit each one is in.

Tills and head office write UN/ECE Recommendation 20 codes (C62, H87, KGM, LTR...) or their
own spellings (ST, UN, PCS, KG, LB). Each maps to one of the project's units (EA, KG, G, L,
M: what sale lines carry) and the factor that converts a quantity into it: 0.5 LBR is
0.227 KG at the price per kilogram. One table for every way in (POSLog, the item master).
"""

from __future__ import annotations

from decimal import Decimal

ONE = Decimal(1)

UNITS: dict[str, tuple[str, Decimal]] = {
    **dict.fromkeys(
        (
            "EA",
            "EACH",
            "C62",
            "H87",
            "PCE",
            "PC",
            "PCS",
            "UNIT",
            "UNITS",
            "ST",
            "STK",
            "UN",
            "NAR",
            "PIECE",
            "PIECES",
            "PK",
            "PKG",
        ),
        ("EA", ONE),
    ),
    **dict.fromkeys(("KG", "KGM", "KGS", "KILO", "KILOGRAM", "KILOGRAMS"), ("KG", ONE)),
    **dict.fromkeys(("LB", "LBS", "LBR"), ("KG", Decimal("0.45359237"))),
    **dict.fromkeys(("OZ", "ONZ"), ("KG", Decimal("0.028349523125"))),
    **dict.fromkeys(("G", "GR", "GRM", "GRAM", "GRAMS"), ("G", ONE)),
    **dict.fromkeys(("L", "LT", "LTR", "LITRE", "LITER", "LITRES", "LITERS"), ("L", ONE)),
    **dict.fromkeys(("CL", "CLT"), ("L", Decimal("0.01"))),
    **dict.fromkeys(("ML", "MLT"), ("L", Decimal("0.001"))),
    **dict.fromkeys(("M", "MTR", "METRE", "METER", "METRES", "METERS"), ("M", ONE)),
    **dict.fromkeys(("CM", "CMT"), ("M", Decimal("0.01"))),
    **dict.fromkeys(("MM", "MMT"), ("M", Decimal("0.001"))),
    **dict.fromkeys(("FT", "FOT"), ("M", Decimal("0.3048"))),
}
"""Unit code as written (upper case) -> (the project's unit, factor from that code to it)."""

UNIT_CODES_HINT = (
    "UN/ECE Rec 20 codes of pieces, weight, volume and length: EA, C62, PCE, KGM, GRM, LBR, "
    "LTR, MTR..."
)


def unit_code(code: str) -> str:
    """``code`` as the table spells it: trimmed, upper case, without a trailing dot."""
    return code.strip().upper().rstrip(".")


def unit_of_code(code: str) -> tuple[str, Decimal] | None:
    """The project's unit of ``code`` and the factor to convert into it; None: not a unit
    tillstream reads."""
    return UNITS.get(unit_code(code))
