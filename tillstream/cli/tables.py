"""A command's tables and lines, for a person at a terminal and for cron mail and logs.

On a terminal: rich tables that fit its width by wrapping cells, never by cutting them, and
that keep the columns a reader must read whole (a status, a flag's kind) on one line. Piped
or redirected: plain lines as wide as their content, columns two spaces apart, no box
drawing and no wrapping, so ``grep`` and a mail reader see every word as written.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


class Output:
    """Where a command prints: rich on a terminal, plain lines anywhere else."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()

    @property
    def plain(self) -> bool:
        return not self.console.is_terminal

    def line(self, text: str = "") -> None:
        """One line as written: no markup read, no wrapping but the terminal's own."""
        if self.plain:
            click.echo(text, file=self.console.file)
        else:
            self.console.print(Text(text), soft_wrap=True)

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        title: str | None = None,
        whole: Collection[str] = (),
        words: Collection[str] = (),
    ) -> None:
        """A table; the columns named in ``whole`` are never wrapped or cut, those in
        ``words`` wrap between words only (a list of flag kinds)."""
        if self.plain:
            self._plain(headers, rows, title)
            return
        texts = [[str(c) for c in cells] for cells in rows]
        natural, least = [], []
        for n, header in enumerate(headers):
            column = [header, *(r[n] for r in texts)]
            natural.append(max(len(c) for c in column))
            if header in whole:
                least.append(natural[-1])
            else:  # wrapped, never narrower than a word of its header (or of its cells)
                kept = column if header in words else [header]
                least.append(max(len(w) for text in kept for w in text.split()))
        widths = _fit(natural, least, self.console.width - self._overhead(len(headers)))
        if widths is None:  # narrower than what must stay whole: the terminal wraps
            self._plain(headers, rows, title)
            return
        table = _table(title)
        for header, width in zip(headers, widths, strict=True):
            table.add_column(header, width=width, no_wrap=header in whole, overflow="fold")
        for cells in texts:
            table.add_row(*(Text(c) for c in cells))
        self.console.print(table)

    def _overhead(self, columns: int) -> int:
        """What a table's padding and rules take besides its columns' widths."""
        table = _table(None)
        for _ in range(columns):
            table.add_column(width=1)
        return self.console.measure(table).maximum - columns

    def _plain(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None
    ) -> None:
        """Columns two spaces apart, each as wide as its widest cell."""
        if title:
            self.line(title)
        columns = zip(headers, *rows, strict=True)
        widths = [max(len(str(c)) for c in column) for column in columns]
        for cells in (headers, *rows):
            padded = [str(c).ljust(w) for c, w in zip(cells, widths, strict=True)]
            self.line("  ".join(padded).rstrip())


def _table(title: str | None) -> Table:
    return Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
    )


def _fit(natural: list[int], least: list[int], room: int) -> list[int] | None:
    """Column widths within ``room``: each column as wide as its content, the one with the
    most to spare narrowed first, none below its least; None if they cannot fit."""
    widths = list(natural)
    spare = sum(widths) - room
    while spare > 0:
        n = max(range(len(widths)), key=lambda i: widths[i] - least[i])
        if widths[n] <= least[n]:
            return None
        widths[n] -= 1
        spare -= 1
    return widths
