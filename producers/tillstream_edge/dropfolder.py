"""The POSLog drop folder: tills (or their back-office software) write files, we pick them up.

A file is taken once it has stopped changing. Read files move to ``processed/`` with
``<name>.result.json`` beside them (events accepted, every transaction skipped and why,
every transaction set aside and why: those are kept in the outbox to be re-run, see
``tillstream edge set-aside``); a file that cannot be parsed at all moves to ``rejected/``
with ``<name>.reason.txt`` beside it and is counted, so nothing is silently dropped and one
bad file never blocks the rest.
If the outbox is full the file stays where it is and is tried again later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

from tillstream.core.pan import mask_pans
from tillstream_edge import metrics
from tillstream_edge.ingest import Ingestor, count_refusal, refusal_reason
from tillstream_edge.outbox import OutboxFullError
from tillstream_edge.poslog import PoslogError
from tillstream_edge.poslog_intake import PoslogBatch, accept_poslog

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 50 * 1024 * 1024
SETTLE_SECONDS = 1.0
"""A file unchanged for this long is complete (writers that rename into place are instant)."""


class DropFolder:
    def __init__(self, ingestor: Ingestor, folder: Path, *, poll_interval: float = 1.0) -> None:
        self.ingestor = ingestor
        self.folder = folder
        self.processed = folder / "processed"
        self.rejected = folder / "rejected"
        self.poll_interval = poll_interval

    async def run(self) -> None:
        for sub in (self.folder, self.processed, self.rejected):
            sub.mkdir(parents=True, exist_ok=True)
        while True:
            await self.scan_once()
            await asyncio.sleep(self.poll_interval)

    async def scan_once(self) -> int:
        """Process every settled file; returns how many were handled."""
        handled = 0
        now = time.time()
        candidates = sorted(
            (p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() == ".xml"),
            key=lambda p: (p.stat().st_mtime, p.name),
        )
        for path in candidates:
            if now - path.stat().st_mtime < SETTLE_SECONDS:
                continue
            if await self.process(path):
                handled += 1
        return handled

    async def process(self, path: Path) -> bool:
        try:
            data = await asyncio.to_thread(_read, path)  # the folder's own limit, not HTTP's
            batch, accepted = await accept_poslog(
                self.ingestor,
                data,
                "dropfolder",
                source=mask_pans(path.name),
                max_bytes=MAX_FILE_BYTES,
            )
        except OutboxFullError:
            log.warning("outbox full: leaving %s for later", path.name)
            return False
        except (PoslogError, OSError) as exc:
            self._reject(path, exc)
            return True
        await asyncio.to_thread(self._processed, path, batch, accepted.duplicates)
        kept = batch.all_set_aside
        log.log(
            logging.WARNING if kept else logging.INFO,
            "poslog file %s: %d events accepted, %d transactions skipped, %d set aside%s",
            path.name,
            len(batch.events),
            len(batch.skipped),
            len(kept),
            # The cause only: a reason may quote the document ('tillstream edge set-aside').
            "".join(f"; transaction {k.label} ({k.cause})" for k in kept[:5]),
        )
        return True

    def _processed(self, path: Path, batch: PoslogBatch, duplicates: int) -> None:
        """Move the file to processed/ with its record: what was published, what skipped.
        The record is written first: a crash between the two leaves the file to be taken
        again (its events are already known, so nothing is published twice)."""
        record = {
            "file": mask_pans(path.name),  # a till may name a file anything
            "accepted": len(batch.events),
            "duplicates": duplicates,
            "event_ids": [e.event_id for e in batch.events],
            **batch.report(),
        }
        result = self.processed / f"{path.name}.result.json"
        result.write_text(json.dumps(record, indent=1) + "\n")
        path.replace(self.processed / path.name)

    def _reject(self, path: Path, exc: Exception) -> None:
        metrics.POSLOG_FILES.labels("failed").inc()
        count_refusal("dropfolder", refusal_reason(exc, poslog=True))
        reason = str(exc)
        target = self.rejected / path.name
        path.replace(target)
        (self.rejected / f"{path.name}.reason.txt").write_text(reason + "\n")
        log.error("poslog file %s rejected: %s", path.name, reason)


def _read(path: Path) -> bytes:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise PoslogError(f"file is larger than {MAX_FILE_BYTES} bytes")
    return path.read_bytes()
