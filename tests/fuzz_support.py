"""Shared budget, strategies and harnesses of the fuzz tests (``tests/test_fuzz_*.py``).

CI runs a fixed, derandomized budget so a run is fast and reproducible. For a longer hunt,
``TILLSTREAM_FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/test_fuzz_*.py`` scales every test's
budget (``FUZZ`` gets that many examples, slower tests a proportional share) and draws fresh
random examples each run; a failure prints the blob that reproduces it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sqlite3
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tillstream.core.codec import AvroCodec
from tillstream.core.registry import FileRegistry
from tillstream.core.rules import TimeWindow
from tillstream.core.schemas import SchemaSet
from tillstream_edge.http_api import create_app
from tillstream_edge.ingest import Ingestor
from tillstream_edge.limits import RecordLimits
from tillstream_edge.outbox import Outbox

T = TypeVar("T")
DAY30, HOUR = timedelta(days=30), timedelta(hours=1)

DEFAULT_EXAMPLES = 100
_ASKED = int(os.environ.get("TILLSTREAM_FUZZ_EXAMPLES") or 0)
EXAMPLES = max(_ASKED, DEFAULT_EXAMPLES)

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # shared CI machines stall; the tests bound CPU time and waits themselves
    derandomize=not _ASKED,  # CI: the same examples every run; on demand: new ground
    database=None,  # no example database: CI replays the same examples anyway
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # tmp_path is shared: examples use subfolders
        HealthCheck.large_base_example,
    ],
)


# Per test, so a hang fails its test instead of the suite; longer runs get longer.
TIMEOUT = 120 * EXAMPLES // DEFAULT_EXAMPLES


def fuzz(examples: int) -> settings:
    """``FUZZ`` with a smaller CI budget, for tests whose examples cost real I/O or time."""
    return settings(FUZZ, max_examples=max(1, examples * EXAMPLES // DEFAULT_EXAMPLES))


# --- strategies ---------------------------------------------------------------------------

# Text that can go through os.environ, XML attributes, JSON: no lone surrogates, no NUL.
text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)

# Values that broke a parser once: calendar edges, digits int() refuses or misreads, a PAN.
AWKWARD = [
    "",
    "0",
    "-1",
    "1e5",
    "1e400",
    "NaN",
    "9" * 40,
    "9" * 5000,
    "²",
    "٣",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59Z",
    "-99999999999999.9999",
    "99999999999999.9999",
    "2026-13-45T99:00:00",
    "4111111111111111",
]

# --- card numbers in any spelling ------------------------------------------------------------

# Issuer prefixes and lengths of numbers schemes issue (no 13-digit ones: a 13-digit number
# that is a valid GTIN-13 is an item, by rule).
CARD_SHAPES = [
    ("4", 16),
    ("4", 19),
    ("51", 16),
    ("2221", 16),
    ("34", 15),
    ("37", 15),
    ("36", 14),
    ("300", 14),
    ("6011", 16),
    ("62", 17),
    ("3530", 16),
    ("6759", 18),
]
# Between groups: anything that is neither a letter nor a digit.
SEPARATORS = [
    "",
    " ",
    "-",
    ".",
    "/",
    "_",
    "\t",
    "  ",
    "\u00a0",
    "\u200b",
    " / ",
    "\u3000",
    "\u2009",
]
# Ten digits of one script each: ASCII, full-width, Arabic-Indic, Devanagari, Bengali, Thai,
# mathematical bold (NFKC), superscripts (NFKC; not Unicode decimal digits themselves).
DIGITS = [
    "0123456789",
    "０１２３４５６７８９",
    "٠١٢٣٤٥٦٧٨٩",
    "०१२३४५६७८९",
    "০১২৩৪৫৬৭৮৯",
    "๐๑๒๓๔๕๖๗๘๙",
    "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗",
    "⁰¹²³⁴⁵⁶⁷⁸⁹",
]
ASCII_SEPARATORS = [" ", "-", ".", "/", "_", "  ", "--", " . "]


def luhn_complete(digits: str) -> str:
    """``digits`` with the check digit that makes it pass Luhn."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (1 if i % 2 else 2)
        total += n - 9 if n > 9 else n
    return digits + str(-total % 10)


@st.composite
def card_digits(draw: st.DrawFn) -> str:
    """A card number (ASCII digits) that passes its scheme's prefix and Luhn checks."""
    prefix, length = draw(st.sampled_from(CARD_SHAPES))
    size = length - len(prefix) - 1
    return luhn_complete(prefix + draw(st.text("0123456789", min_size=size, max_size=size)))


@st.composite
def spelled(
    draw: st.DrawFn, digits: str, separators: list[str] = SEPARATORS, scripts: bool = True
) -> str:
    """``digits`` as a till or a person may write them: groups of any size, any separators
    between them, each digit in any script."""
    out, at = [], 0
    while at < len(digits):
        size = draw(st.integers(1, 6))
        group = digits[at : at + size]
        if scripts:
            group = "".join(draw(st.sampled_from(DIGITS))[int(d)] for d in group)
        out.append(group)
        at += size
        if at < len(digits):
            out.append(draw(st.sampled_from(separators)))
    return "".join(out)


card_numbers = card_digits().flatmap(lambda d: st.tuples(st.just(d), spelled(d)))
"""(ASCII digits, the number as written) pairs."""
ascii_card_numbers = card_digits().flatmap(
    lambda d: st.tuples(st.just(d), spelled(d, ASCII_SEPARATORS, scripts=False))
)
"""The same in printable ASCII, as a scanner sends it."""


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | text
    | st.sampled_from(AWKWARD),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """``value`` (JSON data) with one thing changed: a member dropped, replaced or added."""
    if not isinstance(value, dict | list) or not value or draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    if isinstance(value, dict):
        key = draw(st.sampled_from(sorted(value)))
        action = draw(st.sampled_from(["drop", "replace", "descend", "add"]))
        out = dict(value)
        if action == "drop":
            del out[key]
        elif action == "add":
            out[draw(text)] = draw(json_values)
        elif action == "replace":
            out[key] = draw(json_values)
        else:
            out[key] = draw(mutated(value[key]))
        return out
    index = draw(st.integers(0, len(value) - 1))
    items = list(value)
    items[index] = draw(mutated(items[index]))
    return items


@st.composite
def mutated_xml(draw: st.DrawFn, document: bytes) -> bytes:
    """A well-formed variant of ``document``: element texts, attributes and children changed.

    Serialised by ElementTree, so the XML itself stays well formed unless a drawn text holds
    characters XML cannot carry (which the parser must then refuse cleanly).
    """
    root = ET.fromstring(document)
    elements = list(root.iter())
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(elements))
        action = draw(st.sampled_from(["text", "attribute", "drop", "duplicate", "child"]))
        if action == "text":
            target.text = draw(text | st.sampled_from(AWKWARD))
        elif action == "attribute":
            name = draw(st.sampled_from(["Currency", "TypeCode", "TenderType", "VoidFlag", "x"]))
            target.set(name, draw(text))
        elif action == "child":
            name = draw(st.sampled_from(["LineItem", "Sale", "Tender", "Amount", "Quantity"]))
            ET.SubElement(target, name).text = draw(text)
        else:
            parent = next((p for p in elements if target in list(p)), None)
            if parent is None:
                continue
            if action == "drop":
                parent.remove(target)
            else:
                parent.append(copy.deepcopy(target))
            elements = list(root.iter())
    return ET.tostring(root, encoding="utf-8")


# Times at and around every limit of the edge: what datetime, Avro and the consumers hold
# (tillstream.core.rules.EARLIEST/LATEST) and the live plausibility window around now.
_NOW = datetime.now(UTC)
extreme_times = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "0002-12-31T23:59:59.999999Z",
            "0003-01-01T00:00:00Z",
            "0003-01-01T00:00:00-14:00",
            "9997-12-31T23:59:59.999999Z",
            "9997-12-31T23:59:59+14:00",
            "9998-01-01T00:00:00Z",
            "9999-12-31T23:59:59-14:00",
            "9999-12-31T23:59:59.999999+14:00",
        ]
    ),
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=14))]
        ),
    ).map(datetime.isoformat),
    st.timedeltas(min_value=-timedelta(days=60), max_value=timedelta(hours=3)).map(
        lambda d: (_NOW + d).isoformat()
    ),
)


def poslog(*transactions: bytes) -> bytes:
    return b"<POSLog>" + b"".join(transactions) + b"</POSLog>"


def retail_tx(store: str, sequence: int | str, *, day: str | None = None) -> bytes:
    """A small, valid POSLog RetailTransaction: two lines (one weighed) and a card tender,
    on ``day`` (default yesterday: inside the edge's plausibility window)."""
    day = day or (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    return f"""<Transaction>
<RetailStoreID>{store}</RetailStoreID><WorkstationID>7</WorkstationID>
<SequenceNumber>{sequence}</SequenceNumber><BusinessDayDate>{day}</BusinessDayDate>
<EndDateTime>{day}T10:15:00+01:00</EndDateTime><CurrencyCode>EUR</CurrencyCode>
<RetailTransaction>
<LineItem><SequenceNumber>1</SequenceNumber><Sale><ItemID>4006381333931</ItemID>
<Description>Milk 1L</Description><RegularSalesUnitPrice>1.19</RegularSalesUnitPrice>
<ExtendedAmount>2.38</ExtendedAmount><Quantity>2</Quantity></Sale></LineItem>
<LineItem><SequenceNumber>2</SequenceNumber><Sale><ItemID>SKU-APPLES</ItemID>
<RegularSalesUnitPrice>2.99</RegularSalesUnitPrice><ExtendedAmount>2.19</ExtendedAmount>
<Quantity UnitOfMeasureCode="KGM">0.734</Quantity></Sale></LineItem>
<LineItem><SequenceNumber>3</SequenceNumber><Tender TenderType="CreditCard">
<Amount>4.57</Amount><CreditDebit CardType="Visa"><PrimaryAccountNumber>************4242
</PrimaryAccountNumber></CreditDebit></Tender></LineItem>
<Total TotalType="TransactionGrandAmount">4.57</Total>
</RetailTransaction></Transaction>""".encode()


def dumps(value: Any) -> bytes:
    # allow_nan: fuzzed floats include NaN and infinities, which the edge must refuse cleanly
    return json.dumps(value, allow_nan=True).encode()


def new_id() -> str:
    return str(uuid.uuid4())


# --- harnesses ----------------------------------------------------------------------------


class Loop:
    """A private event loop for synchronous hypothesis tests (never the session's loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro``; a hang fails the example instead of stalling the suite."""

        async def bounded() -> T:
            async with asyncio.timeout(timeout):
                return await coro

        return self.loop.run_until_complete(bounded())

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


DOOR_LIMIT = 64 * 1024
"""The fuzzed edges' record limit: small, so oversize events are cheap to make."""


def long_transaction(store: str, sequence: int, lines: int, text: int) -> bytes:
    """A valid POSLog RetailTransaction of ``lines`` cash-paid lines, ``text``-long descriptions."""
    description = ("long item description " * (text // 22 + 1))[:text] or "item"
    items = "".join(
        f"<LineItem><SequenceNumber>{n}</SequenceNumber><Sale><ItemID>SKU-{n}</ItemID>"
        f"<Description>{description}</Description><RegularSalesUnitPrice>1.00"
        "</RegularSalesUnitPrice><ExtendedAmount>1.00</ExtendedAmount><Quantity>1</Quantity>"
        "</Sale></LineItem>"
        for n in range(1, lines + 1)
    )
    return f"""<Transaction>
<RetailStoreID>{store}</RetailStoreID><WorkstationID>7</WorkstationID>
<SequenceNumber>{sequence}</SequenceNumber><BusinessDayDate>2026-11-25</BusinessDayDate>
<EndDateTime>2026-11-25T10:15:00+01:00</EndDateTime><CurrencyCode>EUR</CurrencyCode>
<RetailTransaction>{items}<LineItem><SequenceNumber>{lines + 1}</SequenceNumber>
<Tender TenderType="Cash"><Amount>{lines}.00</Amount></Tender></LineItem>
<Total TotalType="TransactionGrandAmount">{lines}.00</Total>
</RetailTransaction></Transaction>""".encode()


class EdgeIntake:
    """The edge's intake in this process: HTTP app, ingestor and a real outbox on disk."""

    def __init__(self, workdir: Path, store: str) -> None:
        self.store = store
        self.loop = Loop()
        self.outbox = Outbox(workdir / "outbox.db")
        self._reader: sqlite3.Connection | None = None
        self.codec = AvroCodec(FileRegistry(SchemaSet()))
        # The live channels' plausibility window, as an edge service runs them by default.
        window = TimeWindow(DAY30, HOUR)
        self.ingestor = Ingestor(
            store, self.codec, self.outbox, window=window, limits=RecordLimits(DOOR_LIMIT)
        )
        self.unlimited = Ingestor(store, self.codec, self.outbox, window=window)
        """The same intake without the size check: what an event would weigh."""
        self.app = create_app(self.ingestor)
        self.loop.run(self.outbox.open())
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://edge", timeout=30
        )

    def post(self, path: str, content: Any, headers: dict[str, str] | None = None) -> Any:
        return self.loop.run(self.http.post(path, content=content, headers=headers))

    def stored(self) -> list[str]:
        """Event ids in the outbox, in acceptance order (nothing is ever sent here).

        Read by a connection of its own, ids only: examples call it twice each, and reading
        every stored event's value made a long hunt quadratic."""
        if self._reader is None:
            self._reader = sqlite3.connect(f"file:{self.outbox.path}?mode=ro", uri=True)
        rows = self._reader.execute(
            "SELECT event_id FROM events WHERE sent_at IS NULL AND quarantined_at IS NULL"
            " ORDER BY seq"
        ).fetchall()
        return [row[0] for row in rows]

    def records(self, event_ids: list[str]) -> list[dict[str, Any]]:
        """The stored events of ``event_ids``, decoded as a consumer decodes them."""
        wanted = set(event_ids)
        pending = self.loop.run(self.outbox.pending(1_000_000))
        return [self.codec.decode(p.value).record for p in pending if p.event_id in wanted]

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self.loop.run(self.http.aclose())
        self.loop.run(self.outbox.close())
        self.loop.close()
