"""Backfill an archive of POSLog files (``tillstream edge import``): resumable and idempotent.

Each file's content hash is recorded in the outbox once its events are durable, so an
interrupted import resumes where it stopped and a second run skips what the first did.
Event ids come from the transactions themselves, so even a file renamed or copied and
imported again publishes nothing twice. Every transaction a file holds that is not
converted is reported: skipped (with its kind and reason) or set aside (kept in the outbox
with its reason, to be re-run after a fix: ``tillstream edge set-aside``). Only a file that
cannot be read or parsed at all fails, and is not marked done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tillstream.core.pan import mask_pans
from tillstream_edge.ingest import Ingestor, count_refusal, refusal_reason
from tillstream_edge.outbox import Outbox
from tillstream_edge.poslog import PoslogError, SetAside, Skipped
from tillstream_edge.poslog_intake import accept_poslog


@dataclass
class ImportReport:
    files: int = 0
    imported: int = 0
    already_done: int = 0
    events: int = 0
    duplicates: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, list[Skipped]] = field(default_factory=dict)
    """Transactions not converted by their nature, by file (files imported in this run)."""
    set_aside: dict[str, list[SetAside]] = field(default_factory=dict)
    """Transactions kept to be re-run after a fix, by file (files imported in this run)."""


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
                source = mask_pans(path.name)
                batch, accepted = await accept_poslog(ingestor, data, "import", source=source)
                await outbox.set_progress(marker, str(path))
                report.imported += 1
                report.events += len(batch.events)
                report.duplicates += accepted.duplicates
                if batch.skipped:
                    report.skipped[str(path)] = batch.skipped
                if batch.all_set_aside:
                    report.set_aside[str(path)] = batch.all_set_aside
        except (OSError, PoslogError) as exc:
            count_refusal("import", refusal_reason(exc, poslog=True))
            report.failed[str(path)] = str(exc)
        advance(path)
    return report
