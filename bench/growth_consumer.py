"""The ERP inventory service reading the topic named by ``BENCH_GROWTH_TOPIC``, for the
``growth`` stage's consumer processes: ``python -m tillstream consume
bench.growth_consumer:TopicErpInventory --group G --db URL`` (the bench's records only,
on a broker whose ``tillstream.sales`` may hold history)."""

from __future__ import annotations

import os

from tillstream.core.topics import SALES
from tillstream_consumers.erp import ErpInventory


class TopicErpInventory(ErpInventory):
    # One topic instead of ErpInventory's two (sales, stock movements).
    topics = (os.environ.get("BENCH_GROWTH_TOPIC", SALES.name),)  # type: ignore[assignment]
