"""Completeness of a till's numbering: gaps (numbers that never arrived) and duplicates (one
number used by different transactions, or the same one sent twice under other ids).

A till's numbers are read as series: the text before the trailing digits, and the digits
(``01-000124``: series ``01-``, number 124). Each series is checked on its own, so a POS
that numbers receipts and control transactions apart makes no false gaps. A post-void's own
number is used like a receipt's; the receipt it voids keeps its number, held by the sale,
or by the post-void while the sale has not come (a number used, not a gap).
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict

from tillstream_consumers.audit.facts import StoreDayFacts
from tillstream_consumers.audit.flags import DUPLICATE_COPY, DUPLICATE_NUMBER, RECEIPT_GAP, Flag
from tillstream_consumers.audit.reading import ReadMarks, read_past

_NUMBER = re.compile(r"(.*?)(\d+)")
_NUMBERED = ("sale", "till_event", "sale_void")
"""The topics whose events hold a till's numbers."""


def numbering_flags(facts: StoreDayFacts, read: ReadMarks | None) -> tuple[list[Flag], list[Flag]]:
    """Duplicates and gaps in each till's own numbering (one series per prefix); and the gaps
    held back, which events not read yet may fill (``reading.py``): most tills number
    receipts and till events with one counter, so a gap waits until both the store's sales
    and its till events were read past the number above it."""
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
        match = _NUMBER.fullmatch(number)
        if match is not None:
            series[(terminal, match[1])][int(match[2])] = len(match[2])
            holders[(terminal, match[1], int(match[2]))] = ids
    for (terminal, number), ids in sorted(named.items()):  # used, by a receipt not come yet
        match = _NUMBER.fullmatch(number)
        if match is not None and (terminal, match[1], int(match[2])) not in holders:
            series[(terminal, match[1])][int(match[2])] = len(match[2])
            holders[(terminal, match[1], int(match[2]))] = tuple(sorted(ids))
    for (terminal, prefix), numbers in sorted(series.items()):
        ordered = sorted(numbers)
        for low, high in itertools.pairwise(ordered):
            if high - low <= 1:
                continue
            width = numbers[low]
            first, last = f"{prefix}{low + 1:0{width}d}", f"{prefix}{high - 1:0{width}d}"
            missing = high - low - 1
            span = first if missing == 1 else f"{first}..{last}"
            after = holders[(terminal, prefix, high)]
            newest = _at_least(max((published[i] for i in after if i in published), default=None))
            read_through = all(read_past(read, kind, newest) for kind in _NUMBERED)
            (flags if read_through else held).append(
                Flag(
                    RECEIPT_GAP,
                    terminal,
                    f"{terminal} {span}",
                    f"till {terminal}: "
                    + (
                        f"number {first} never reached head office"
                        if missing == 1
                        else f"numbers {first} to {last} ({missing}) never reached head office"
                    ),
                    events=(*holders[(terminal, prefix, low)], *holders[(terminal, prefix, high)]),
                    missing=missing,
                )
            )
    return flags, held


def _at_least(published_ms: int | None) -> int | None:
    """For :func:`read_past`: read up to and including ``published_ms``."""
    return None if published_ms is None else published_ms - 1
