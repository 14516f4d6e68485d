"""``tillstream poslog check``: what the edge would make of a POSLog document, offline.

For an integrator onboarding a new till vendor before the first store goes live: per
transaction, the events it would become (passed through the edge's own rules, card-number
guard and Avro encoding, as ``Ingestor.encode`` does) or why it would be skipped or set
aside; and the elements of the document nothing read, so what tillstream ignores is seen
before it matters. No Kafka, no edge, no outbox is touched.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

from tillstream.core.codec import AvroCodec
from tillstream_edge.ingest import IngestError, Ingestor
from tillstream_edge.outbox import Outbox
from tillstream_edge.poslog import PoslogResult, parse_poslog
from tillstream_edge.poslog_xml import local, reading, stop_reading


@dataclass
class CheckedTransaction:
    index: int
    sequence_number: str | None
    outcome: str
    """``converted``, ``skipped`` or ``set_aside``."""
    kind: str = ""
    reason: str = ""
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "transaction": self.index,
            "sequence_number": self.sequence_number,
            "outcome": self.outcome,
        }
        if self.outcome == "converted":
            found["events"] = [{"type": t, **record} for t, record in self.events]
        else:
            found |= {"kind": self.kind, "reason": self.reason}
        return found


@dataclass
class CheckedDocument:
    dialect: str
    envelope: str | None
    transactions: list[CheckedTransaction]
    not_read: list[tuple[str, int]]
    """Elements nothing read (the outermost ones), by path below ``Transaction``, counted."""

    def counts(self) -> Counter[str]:
        return Counter(t.outcome for t in self.transactions)


class Checker:
    """Checks documents as the edge of each store they name would take them."""

    def __init__(
        self, codec: AvroCodec, *, currency: str, timezone: tzinfo, dialect: str | None = None
    ) -> None:
        self.codec = codec
        self.currency = currency
        self.timezone = timezone
        self.dialect = dialect
        self._scratch = tempfile.TemporaryDirectory(prefix="tillstream-check-")
        self._ingestors: dict[str, Ingestor] = {}

    def close(self) -> None:
        self._scratch.cleanup()

    def check(self, data: bytes) -> CheckedDocument:
        """Raises ``PoslogError`` when the document cannot be parsed at all."""
        read, token = reading()
        try:
            result = parse_poslog(
                data,
                default_currency=self.currency,
                default_timezone=self.timezone,
                dialect=self.dialect,
            )
        finally:
            stop_reading(token)
        transactions = self._outcomes(result)
        not_read = _not_read(result.document.transactions, read)
        return CheckedDocument(
            result.dialect.name, result.document.envelope, transactions, not_read
        )

    def _outcomes(self, result: PoslogResult) -> list[CheckedTransaction]:
        found = [
            CheckedTransaction(s.index, s.sequence_number, "skipped", s.kind, s.reason)
            for s in result.skipped
        ]
        found += [
            CheckedTransaction(s.index, s.sequence_number, "set_aside", s.kind, s.reason)
            for s in result.set_aside
        ]
        for unit in result.converted:
            try:
                for event_type, record in unit.events:
                    self._ingestor(record["store_id"]).encode(event_type, record, "check")
            except IngestError as exc:
                found.append(
                    CheckedTransaction(
                        unit.index, unit.sequence_number, "set_aside", exc.reason, str(exc)
                    )
                )
                continue
            found.append(
                CheckedTransaction(
                    unit.index, unit.sequence_number, "converted", events=unit.events
                )
            )
        return sorted(found, key=lambda t: t.index)

    def _ingestor(self, store_id: str) -> Ingestor:
        """An edge's rules for ``store_id`` (its outbox is never opened)."""
        if store_id not in self._ingestors:
            outbox = Outbox(Path(self._scratch.name) / "unused.db")
            self._ingestors[store_id] = Ingestor(
                store_id, self.codec, outbox, timezone=self.timezone, currency=self.currency
            )
        return self._ingestors[store_id]


def _not_read(transactions: list[Element], read: set[int]) -> list[tuple[str, int]]:
    paths: Counter[str] = Counter()

    def visit(element: Element, path: str) -> None:
        for child in element:
            if not isinstance(child.tag, str):
                continue  # a comment or processing instruction
            where = f"{path}/{local(child.tag)}"
            if id(child) in read:
                visit(child, where)
            else:
                paths[where] += 1

    for tx in transactions:
        visit(tx, "Transaction")
    return sorted(paths.items())
