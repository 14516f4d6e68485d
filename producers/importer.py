"""Backfill an archive of POSLog files (``tillstream edge import``): resumable and idempotent.

Each file's content hash is recorded in the outbox once its events are durable, so an
interrupted import resumes where it stopped and a second run skips what the first did.
Event ids come from the transactions themselves, so even a file renamed or copied and
imported again publishes nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from producers.ingest import IngestError, Ingestor, poslog_events
from producers.outbox import Outbox
from producers.poslog import PoslogError


@dataclass
class ImportReport:
    files: int = 0
    imported: int = 0
    already_done: int = 0
    events: int = 0
    duplicates: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def poslog_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The POSLog files named, directories searched recursively, in a stable order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".xml"
            )
        else:
            yield path


async def import_files(
    ingestor: Ingestor,
    outbox: Outbox,
    files: list[Path],
    *,
    advance: Callable[[Path], None] = lambda _p: None,
) -> ImportReport:
    report = ImportReport(files=len(files))
    for path in files:
        try:
            data = path.read_bytes()
            marker = "import:" + hashlib.sha256(data).hexdigest()
            if await outbox.get_progress(marker) is not None:
                report.already_done += 1
            else:
                events = await asyncio.to_thread(poslog_events, ingestor, data, "import")
                accepted = await ingestor.accept(events)
                await outbox.set_progress(marker, str(path))
                report.imported += 1
                report.events += len(events)
                report.duplicates += accepted.duplicates
        except (OSError, PoslogError, IngestError) as exc:
            report.failed[str(path)] = str(exc)
        advance(path)
    return report
