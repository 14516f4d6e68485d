"""Reading a master-data CSV file: a header row naming the columns, then one record a row.

Columns come in any order; columns the file kind does not know are ignored. A cell of a
known column never holds a control character (``tillstream.core.identifiers``: NUL, ESC, a
tab or a line break, anywhere in it, spaces around it being stripped). Every problem names
its row (the header is row 1, blank rows count) and column, and never quotes the value: a
cell may hold a card number or personal data. Up to :data:`MAX_PROBLEMS` are collected, so
one run shows the file's mistakes, not only its first.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tillstream.core.identifiers import control_problem

MAX_PROBLEMS = 100
"""Problems listed before reading stops."""
PROGRESS_EVERY = 10_000
"""Rows between two progress lines."""

Progress = Callable[[str], None]
"""Where progress lines go (the command line: standard error)."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    """What is wrong in one cell (``column``) or row (``column`` None) of a file."""

    row: int
    """The header is row 1; 0: the file as a whole."""
    column: str | None
    message: str

    def __str__(self) -> str:
        if not self.row:
            return self.message
        where = f"row {self.row}" + (f", column {self.column!r}" if self.column else "")
        return f"{where}: {self.message}"


class MasterFileError(ValueError):
    """A file that cannot be published; :attr:`problems` says where and why."""

    def __init__(self, path: Path, problems: Sequence[RowProblem], complete: bool = True) -> None:
        self.path = path
        self.problems = list(problems)
        self.complete = complete
        more = "" if complete else f" (stopped after the first {len(self.problems)})"
        listed = "\n".join(f"  {path.name}, {p}" for p in self.problems)
        super().__init__(f"{path}: {len(self.problems)} problem(s){more}:\n{listed}")


@dataclass
class Problems:
    """The problems of one file, collected while it is read."""

    path: Path
    found: list[RowProblem] = field(default_factory=list)

    def add(self, row: int, column: str | None, message: str) -> None:
        self.found.append(RowProblem(row, column, message))
        if len(self.found) >= MAX_PROBLEMS:
            raise MasterFileError(self.path, self.found, complete=False)

    def raise_any(self) -> None:
        if self.found:
            raise MasterFileError(self.path, self.found)


@dataclass(frozen=True, slots=True)
class Row:
    number: int
    """Row in the file: the header is row 1."""
    cells: dict[str, str]
    """The known columns' cells, stripped of surrounding spaces."""
    refused: frozenset[str] = frozenset()
    """Columns whose cell was refused as it was read (its problem is already added)."""


def read_rows(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str],
    problems: Problems,
    progress: Progress | None = None,
) -> Iterator[Row]:
    """The file's rows with the cells of ``required`` and (when the header has them)
    ``optional`` columns; a header or a row that cannot be read is a problem. A header
    without every required column stops the file there."""
    number = 1
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            try:
                header = next(reader, None)
                positions = _positions(header, required, optional, problems)
                for number, cells in enumerate(reader, start=2):
                    if progress is not None and number % PROGRESS_EVERY == 0:
                        progress(f"{path.name}: {number} rows read")
                    if not any(c.strip() for c in cells):
                        continue
                    if len(cells) != len(header or ()):
                        problems.add(
                            number, None, f"{len(cells)} values for {len(header or ())} columns"
                        )
                        continue
                    yield _row(number, cells, positions, problems)
            except csv.Error as exc:
                problems.add(number + 1, None, f"malformed CSV ({exc})")
    except UnicodeDecodeError as exc:
        problems.add(number + 1, None, f"not UTF-8 text ({exc.reason})")
    except OSError as exc:
        raise MasterFileError(
            path, [RowProblem(0, None, f"cannot read: {exc.strerror or exc}")]
        ) from None


def _row(number: int, cells: list[str], positions: dict[str, int], problems: Problems) -> Row:
    refused = set()
    for name, i in positions.items():
        # Checked before stripping: a tab or line break around a value is in the file too.
        if (problem := control_problem(cells[i])) is not None:
            problems.add(number, name, problem.message)
            refused.add(name)
    return Row(number, {n: cells[i].strip() for n, i in positions.items()}, frozenset(refused))


def _positions(
    header: list[str] | None, required: Sequence[str], optional: Sequence[str], problems: Problems
) -> dict[str, int]:
    """Column name -> position of the columns read; every header problem at once."""
    if header is None:
        problems.add(1, None, "empty file: expected a header row naming the columns")
        problems.raise_any()
    names = [h.strip().lower() for h in header or ()]
    positions: dict[str, int] = {}
    for i, name in enumerate(names):
        if name not in (*required, *optional):
            continue  # more columns may follow: ignored
        if name in positions:
            problems.add(1, name, "column appears twice")
        positions[name] = i
    for name in required:
        if name not in positions:
            problems.add(
                1, name, f"the header has no {name} column (needed: {', '.join(required)})"
            )
    problems.raise_any()
    return positions
