"""Completeness of a till's numbering: gaps (numbers that never arrived), breaks (a jump too
big to be missing receipts) and duplicates (one number used by different transactions, or
the same one sent twice under other ids).

A till's numbers are read as series: the text before the trailing digits, and the digits
(``01-000124``: series ``01-``, number 124). Each series is checked on its own, so a POS
that numbers receipts and control transactions apart makes no false gaps. Only ASCII digits
count (``0``-``9``: a number in other scripts' digits is a name, checked for duplicates
only), at most :data:`MAX_DIGITS` of them (a longer run is no till's counter). Two numbers
more than :data:`MAX_GAP` apart are not that many missing receipts but a break in the
numbering (a reset, a new roll, a till re-installed): one ``numbering_break`` flag, not a
gap. A post-void's own number is used like a receipt's; the receipt it voids keeps its
number, held by the sale, or by the post-void while the sale has not come (a number used,
not a gap).
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict

from tillstream_consumers.audit.facts import StoreDayFacts
from tillstream_consumers.audit.flags import (
    DUPLICATE_COPY,
    DUPLICATE_NUMBER,
    NUMBERING_BREAK,
    RECEIPT_GAP,
    Flag,
)
from tillstream_consumers.audit.reading import ReadMarks, read_past

MAX_DIGITS = 18
"""The longest run of trailing digits read as a number (a till's counter fits in 18)."""
MAX_GAP = 1000
"""The most numbers missing between two that arrived still read as missing receipts; a
bigger jump is a break in the numbering."""
_NUMBER = re.compile(r"(.*?)([0-9]+)")  # ASCII digits only: \d is any script's
_NUMBERED = ("sale", "till_event", "sale_void")
"""The topics whose events hold a till's numbers."""


def numbering_flags(facts: StoreDayFacts, read: ReadMarks | None) -> tuple[list[Flag], list[Flag]]:
    """Duplicates, gaps and breaks in each till's own numbering (one series per prefix); and
    the gaps and breaks held back, which events not read yet may fill (``reading.py``): most
    tills number receipts and till events with one counter, so a gap waits until both the
    store's sales and its till events were read past the number above it."""
    numbered: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    published: dict[str, int] = {}
    for t in facts.transactions:  # (till, number) -> (content, event id) of each holder
        numbered[(t.terminal_id, t.number)].append((t.content, t.event_id))
        if t.published_ms is not None:
            published[t.event_id] = t.published_ms
    for c in facts.controls:
        if c.number:
            numbered[(c.terminal_id, c.number)].append((c.content, c.event_id))
            if c.published_ms is not None:
                published[c.event_id] = c.published_ms
    named: dict[tuple[str, str], tuple[str, ...]] = {}
    """(till, number) -> post-voids naming the receipt they void, which has not come."""
    for v in facts.voids:
        if v.number:
            numbered[(v.terminal_id, v.number)].append((v.content, v.event_id))
        if v.voided_number and v.sale is None:
            where = (v.voided_terminal_id, v.voided_number)
            named[where] = (*named.get(where, ()), v.event_id)
        if v.published_ms is not None:
            published[v.event_id] = v.published_ms
    flags: list[Flag] = []
    held: list[Flag] = []
    series: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    holders: dict[tuple[str, str, int], tuple[str, ...]] = {}
    for (terminal, number), found in sorted(numbered.items()):
        ids = tuple(sorted(event_id for _, event_id in found))
        if len(found) > 1 and len({content for content, _ in found}) > 1:
            flags.append(
                Flag(
                    DUPLICATE_NUMBER,
                    terminal,
                    f"{terminal} {number}",
                    f"till {terminal}: number {number} was used by {len(ids)} different "
                    "transactions",
                    events=ids,
                )
            )
        elif len(ids) > 1:
            flags.append(
                Flag(
                    DUPLICATE_COPY,
                    terminal,
                    f"{terminal} {number}",
                    f"till {terminal}: number {number} arrived {len(ids)} times with the same "
                    "content under different event ids (a resend that other services count twice)",
                    events=ids,
                )
            )
        if (parsed := read_number(number)) is not None:
            prefix, n, width = parsed
            series[(terminal, prefix)][n] = width
            holders[(terminal, prefix, n)] = ids
    for (terminal, number), ids in sorted(named.items()):  # used, by a receipt not come yet
        parsed = read_number(number)
        if parsed is not None and (terminal, parsed[0], parsed[1]) not in holders:
            prefix, n, width = parsed
            series[(terminal, prefix)][n] = width
            holders[(terminal, prefix, n)] = tuple(sorted(ids))
    for (terminal, prefix), numbers in sorted(series.items()):
        ordered = sorted(numbers)
        for low, high in itertools.pairwise(ordered):
            if high - low <= 1:
                continue
            after = holders[(terminal, prefix, high)]
            newest = _at_least(max((published[i] for i in after if i in published), default=None))
            read_through = all(read_past(read, kind, newest) for kind in _NUMBERED)
            events = (*holders[(terminal, prefix, low)], *after)
            hole = _hole(terminal, prefix, low, high, numbers, events)
            (flags if read_through else held).append(hole)
    return flags, held


def read_number(number: str) -> tuple[str, int, int] | None:
    """``(series, number, width)`` of a till's number (``01-000124``: ``("01-", 124, 6)``),
    or None if it does not end in 1 to :data:`MAX_DIGITS` ASCII digits."""
    match = _NUMBER.fullmatch(number)
    if match is None or len(match[2]) > MAX_DIGITS:
        return None
    return match[1], int(match[2]), len(match[2])


def _hole(
    terminal: str,
    prefix: str,
    low: int,
    high: int,
    widths: dict[int, int],
    events: tuple[str, ...],
) -> Flag:
    """The flag of the numbers missing between ``low`` and ``high`` of a series: a gap, or a
    break in the numbering when more than :data:`MAX_GAP` are missing."""
    missing = high - low - 1
    if missing > MAX_GAP:
        before, after = f"{prefix}{low:0{widths[low]}d}", f"{prefix}{high:0{widths[high]}d}"
        return Flag(
            NUMBERING_BREAK,
            terminal,
            f"{terminal} {before}..{after}",
            f"till {terminal}: numbering jumps from {before} to {after}, more than {MAX_GAP} "
            "numbers: a break in the numbering (a reset, a new series), not missing receipts",
            events=events,
        )
    width = widths[low]
    first, last = f"{prefix}{low + 1:0{width}d}", f"{prefix}{high - 1:0{width}d}"
    span = first if missing == 1 else f"{first}..{last}"
    return Flag(
        RECEIPT_GAP,
        terminal,
        f"{terminal} {span}",
        f"till {terminal}: "
        + (
            f"number {first} never reached head office"
            if missing == 1
            else f"numbers {first} to {last} ({missing}) never reached head office"
        ),
        events=events,
        missing=missing,
    )


def _at_least(published_ms: int | None) -> int | None:
    """For :func:`read_past`: read up to and including ``published_ms``."""
    return None if published_ms is None else published_ms - 1
