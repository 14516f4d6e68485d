"""Units of measure as POS systems write them, mapped to the project's units.

Tills send UN/ECE Recommendation 20 codes (C62, H87, KGM, LTR...) or their own spellings
(ST, UN, PCS, KG, LB). Each maps to one of ``tillstream_edge.models.Unit`` (EA, KG, G, L, M) and the
factor that converts a quantity into it: 0.5 LBR is 0.227 KG at the price per kilogram.
"""

from __future__ import annotations

from decimal import Decimal
from xml.etree.ElementTree import Element

from tillstream_edge.poslog_xml import PoslogError, attr

ONE = Decimal(1)
# Unit codes as tills write them (UN/ECE Recommendation 20 and vendor spellings) -> the
# project's unit and the factor from the till's unit to it (a pound is 0.45359237 kg).
_UNITS: dict[str, tuple[str, Decimal]] = {
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


def unit_of(qty_el: Element | None, where: str) -> tuple[str, Decimal]:
    """The project's unit of a POSLog Quantity and the factor to convert its amount."""
    if qty_el is None:
        return "EA", ONE
    code = attr(qty_el, "UnitOfMeasureCode") or attr(qty_el, "UnitOfMeasure")
    if code is None:
        return "EA", ONE
    unit = _UNITS.get(code.strip().upper().rstrip("."))
    if unit is None:
        shown = repr(code) if code.isascii() and code.isalpha() and len(code) <= 12 else "given"
        raise PoslogError(
            f"{where}: unit of measure {shown} is not one tillstream reads (UN/ECE Rec 20 codes "
            "of pieces, weight, volume and length: EA, C62, PCE, KGM, GRM, LBR, LTR, MTR...)"
        )
    return unit
