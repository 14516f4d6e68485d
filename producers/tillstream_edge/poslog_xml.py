"""Safe XML parsing and namespace-blind element access for POSLog.

POSLog files come from many vendors: the ARTS namespace changes between versions, vendors
add their own namespaces, and element order is not fixed. So everything here matches
elements and attributes by local name and looks among children, never at positions.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from contextvars import ContextVar, Token
from decimal import Decimal, InvalidOperation
from xml.etree.ElementTree import Element, ParseError

# defusedxml ships no type hints (types-defusedxml would add them).
from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
)
from defusedxml.ElementTree import iterparse

from tillstream.core.pan import mask_pans

# Real POSLog nests about ten levels deep; anything far deeper is an attack or garbage.
MAX_DEPTH = 100
_TRUE = frozenset({"true", "1", "yes", "y"})
# expat before 2.6 rescans an unfinished token on every feed, so iterparse's 16 KiB feeds
# make one huge comment or attribute quadratic (a 25 MiB comment: minutes of CPU). 1 MiB
# feeds keep that near linear, and the depth check still stops a nesting bomb within one.
_FEED_BYTES = 1024 * 1024
_MESSAGE_PART = 300
# Digits and what may separate them in a card number (tillstream.core.pan): cut off at a cut.
_NUMBER_END = re.compile(r"[\W_\d]+$")
_NUMBER_START = re.compile(r"^[\W_\d]+")
# Elements the converter looked at, while ``tillstream poslog check`` asks (None: nobody asks,
# and reading costs one lookup more per element).
_READ: ContextVar[set[int] | None] = ContextVar("poslog_read", default=None)


class PoslogError(ValueError):
    """The whole file/document cannot be converted; the message says why (and where).

    ``message`` has a ``{}`` (or ``{!r}``) for each of ``quoted``: what it quotes of the
    document. The message shows them (the till's answer, the reason files: the till sent
    them); :attr:`logged` does not, for log lines, which travel further than the store
    (``logged`` given: that text, for a message that quotes another's)."""

    def __init__(self, message: str, *quoted: object, logged: str | None = None) -> None:
        self.logged = _cut(
            _fill(message, [_NOT_LOGGED] * len(quoted)) if logged is None else logged
        )
        super().__init__(_cut(_fill(message, quoted)))


def _fill(message: str, quoted: Sequence[object]) -> str:
    if not quoted:
        return message
    try:
        return message.format(*quoted)
    except (IndexError, KeyError, ValueError):  # a brace in a name of the document's
        return message


class _NotLogged:
    def __repr__(self) -> str:
        return "<value>"

    __str__ = __repr__


_NOT_LOGGED = _NotLogged()


def _cut(message: str) -> str:
    # Messages quote the offending text, which goes to reason files and tills: a card
    # number typed into an amount or id field must not travel with it, and a 20 MiB value
    # must not either. Long ones keep where (start) and why (end), cut outside any number so
    # that no card number is split past recognition.
    if len(message) > 2 * _MESSAGE_PART:
        head = _NUMBER_END.sub("", message[:_MESSAGE_PART])
        tail = _NUMBER_START.sub("", message[-_MESSAGE_PART:])
        message = f"{head} [...] {tail}"
    return mask_pans(message)


def parse_xml(data: bytes, *, max_bytes: int) -> Element:
    """The root element of ``data``, parsed without DTDs, entities or external references."""
    if len(data) > max_bytes:
        raise PoslogError(f"input is {len(data)} bytes, over the limit of {max_bytes} bytes")
    if not data.strip():
        raise PoslogError("input is empty")
    depth = 0
    root: Element | None = None
    try:
        for event, element in iterparse(
            _LargeReads(data), events=("start", "end"), forbid_dtd=True, forbid_external=True
        ):
            if event == "start":
                depth += 1
                if depth > MAX_DEPTH:
                    raise PoslogError(
                        f"elements nested deeper than {MAX_DEPTH} levels "
                        f"(at <{local(element.tag)}>); not a POSLog document"
                    )
                if root is None:
                    root = element
            else:
                depth -= 1
    except DTDForbidden as exc:
        raise PoslogError(
            f"forbidden XML: a DTD (<!DOCTYPE {exc.name}>) is not allowed; POSLog needs none "
            "and DTDs carry entity expansion (XML bombs) and external entities"
        ) from exc
    except EntitiesForbidden as exc:
        raise PoslogError("forbidden XML: entity declaration {!r}", exc.name) from exc
    except DefusedXmlException as exc:
        raise PoslogError("forbidden XML: {}", exc) from exc
    except ParseError as exc:
        raise PoslogError(f"malformed XML: {exc}") from exc  # where, never what
    except RecursionError as exc:
        raise PoslogError("XML nested too deeply to parse") from exc
    except PoslogError:
        raise
    except (LookupError, ValueError) as exc:  # expat on encoding="bogus" or "shift_jis"
        raise PoslogError("unreadable XML declaration: {}", exc) from exc
    if root is None:  # pragma: no cover - expat reports "no element found" first
        raise PoslogError("malformed XML: no root element")
    return root


class _LargeReads(io.BytesIO):
    def read(self, size: int | None = -1, /) -> bytes:
        return super().read(-1 if size is None or size < 0 else max(size, _FEED_BYTES))


def local(tag: object) -> str:
    """Tag or attribute name without its ``{namespace}`` (comments/PIs have no name)."""
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def children(element: Element, *names: str) -> Iterator[Element]:
    """Direct children whose local name is one of ``names`` (any namespace), in order."""
    read = _READ.get()
    for child in element:
        if local(child.tag) in names:
            if read is not None:
                read.add(id(child))
            yield child


def mark_read(element: Element) -> None:
    """Count ``element`` as read (for what is found without :func:`children`)."""
    read = _READ.get()
    if read is not None:
        read.add(id(element))


def reading() -> tuple[set[int], Token[set[int] | None]]:
    """Start recording the elements read in this context: (the set, a token for
    :func:`stop_reading`)."""
    read: set[int] = set()
    return read, _READ.set(read)


def stop_reading(token: Token[set[int] | None]) -> None:
    _READ.reset(token)


def child(element: Element, *names: str) -> Element | None:
    """First direct child named like one of ``names``, preferring earlier names."""
    for name in names:
        for found in children(element, name):
            return found
    return None


def text(element: Element | None) -> str | None:
    """Stripped text of ``element``; None when absent or blank."""
    if element is None or element.text is None:
        return None
    value = element.text.strip()
    return value or None


def child_text(element: Element, *names: str) -> str | None:
    for name in names:
        for found in children(element, name):
            value = text(found)
            if value is not None:
                return value
    return None


def path(element: Element, *steps: str) -> Element | None:
    """Follow direct children by local name, e.g. ``path(tx, "BusinessUnit", "UnitID")``."""
    current: Element | None = element
    for step in steps:
        if current is None:
            return None
        current = child(current, step)
    return current


def attr(element: Element, name: str) -> str | None:
    """Attribute by local name, whatever its namespace prefix."""
    value = element.get(name)
    if value is None:
        for key, candidate in element.attrib.items():
            if local(key) == name:
                value = candidate
                break
    if value is None:
        return None
    return value.strip() or None


def is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


def flag(element: Element, name: str) -> bool:
    """A boolean given either as attribute or as child element (vendors do both)."""
    return is_true(attr(element, name)) or is_true(child_text(element, name))


_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")


def decimal(value: str, what: str) -> Decimal:
    """A decimal from XML text; rejects floats' exotica (NaN, exponents) and commas."""
    cleaned = value.strip()
    if not _NUMBER.match(cleaned):
        raise PoslogError(f"{what}: {{!r}} is not a decimal number", value)
    try:
        return Decimal(cleaned)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already guards
        raise PoslogError(f"{what}: {{!r}} is not a decimal number", value) from exc
