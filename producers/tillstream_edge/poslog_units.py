"""Units of measure as POS systems write them, mapped to the project's units.

Tills send UN/ECE Recommendation 20 codes (C62, H87, KGM, LTR...) or their own spellings
(ST, UN, PCS, KG, LB). Each maps to one of ``tillstream_edge.models.Unit`` (EA, KG, G, L, M) and the
factor that converts a quantity into it: 0.5 LBR is 0.227 KG at the price per kilogram.
The table is the core's (``tillstream.core.units``), shared with the item master.
"""

from __future__ import annotations

from decimal import Decimal
from xml.etree.ElementTree import Element

from tillstream.core.units import ONE, UNIT_CODES_HINT, unit_of_code
from tillstream_edge.poslog_xml import PoslogError, attr

__all__ = ["ONE", "unit_of"]


def unit_of(qty_el: Element | None, where: str) -> tuple[str, Decimal]:
    """The project's unit of a POSLog Quantity and the factor to convert its amount."""
    if qty_el is None:
        return "EA", ONE
    code = attr(qty_el, "UnitOfMeasureCode") or attr(qty_el, "UnitOfMeasure")
    if code is None:
        return "EA", ONE
    unit = unit_of_code(code)
    if unit is None:
        shown = repr(code) if code.isascii() and code.isalpha() and len(code) <= 12 else "given"
        raise PoslogError(
            f"{where}: unit of measure {{}} is not one tillstream reads ({UNIT_CODES_HINT})",
            shown,
        )
    return unit
