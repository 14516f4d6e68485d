"""The POSLog drop folder: tills (or their back-office software) write files, we pick them up.

A file is taken once it has stopped changing: unchanged for ``SETTLE_SECONDS`` by its
modification time, or, when that time is in the future (a till whose clock runs ahead, a
``cp -p`` from one), with the same size and time at two scans in a row.

Read files move to ``processed/`` with ``<name>.result.json`` beside them (events accepted,
every transaction skipped and why, every transaction set aside and why: those are kept in
the outbox to be re-run, see ``tillstream edge set-aside``); a file that cannot be parsed at
all moves to ``rejected/`` with ``<name>.reason.txt`` beside it and is counted, so nothing
is silently dropped and one bad file never blocks the rest. If the outbox is full the file
stays where it is and is tried again later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
from datetime import timedelta
from pathlib import Path

from tillstream.core.pan import mask_pans
from tillstream_edge import metrics
from tillstream_edge.ingest import Ingestor, count_refusal, refusal_reason
from tillstream_edge.outbox import OutboxFullError
from tillstream_edge.poslog import PoslogError
from tillstream_edge.poslog_intake import PoslogBatch, accept_poslog, set_aside_logged

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
        self._future: dict[str, tuple[int, int]] = {}
        """Files modified in the future at the last scan: their size and time then."""

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
        files = self._listing()
        future = {p.name: (st.st_size, st.st_mtime_ns) for p, st in files if st.st_mtime > now}
        for path, info in sorted(files, key=lambda f: (f[1].st_mtime, f[0].name)):
            if self._settled(path, info, now, future) and await self.process(path):
                handled += 1
        self._future = future
        return handled

    def _listing(self) -> list[tuple[Path, os.stat_result]]:
        """The folder's POSLog files, each with its size and modification time."""
        files = []
        for path in self.folder.iterdir():
            if path.suffix.lower() != ".xml":
                continue
            try:
                info = path.stat()
            except FileNotFoundError:  # moved away since the listing
                continue
            if stat.S_ISREG(info.st_mode):
                files.append((path, info))
        return files

    def _settled(
        self, path: Path, info: os.stat_result, now: float, future: dict[str, tuple[int, int]]
    ) -> bool:
        """Whether a file has stopped changing. One modified in the future cannot have been
        unchanged for SETTLE_SECONDS by its time: it is when size and time are those of the
        last scan (said once per file, and counted)."""
        if path.name not in future:
            return now - info.st_mtime >= SETTLE_SECONDS
        if path.name not in self._future:
            metrics.POSLOG_FUTURE_MTIME.inc()
            log.warning(
                "poslog file %s: modified in the future, %s ahead of this edge's clock (the "
                "writer's clock runs ahead?): taken once its size and time stop changing",
                path.name,
                timedelta(seconds=round(info.st_mtime - now)),
            )
        return self._future.get(path.name) == future[path.name]

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
            f" (tillstream edge set-aside): {set_aside_logged(kept)}" if kept else "",
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
        # The reason file may quote the document; the log line does not.
        logged = exc.logged if isinstance(exc, PoslogError) else reason
        log.error("poslog file %s rejected: %s", path.name, logged)


def _read(path: Path) -> bytes:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise PoslogError(f"file is larger than {MAX_FILE_BYTES} bytes")
    return path.read_bytes()
