"""The consumer runtime against the real broker: exactly-once effects, dead letters, replay."""

from __future__ import annotations

import uuid
from pathlib import Path

from consumers.example import VisitCounter
from tests.consumer_support import publish, running, scalar, wait_until
from tillstream.codec import AvroCodec
from tillstream.samples import sample_sale
from tillstream.settings import Settings


def _group(consumer: type[VisitCounter]) -> type[VisitCounter]:
    """The example consumer under a fresh group id, so tests share the broker safely."""
    return type("Visits", (consumer,), {"name": f"visits-{uuid.uuid4().hex[:8]}"})


async def test_example_consumer_counts_each_visit_once(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    customer = f"C-{uuid.uuid4().hex[:6]}"
    sales = [sample_sale("S-RT1", customer=customer) for _ in range(20)]
    # A till resent two of them (same event ids): still 20 visits.
    await publish(kafka_topics, codec, [("sale", s) for s in sales + sales[:2]])
    url = f"sqlite:///{tmp_path / 'visits.db'}"
    count = "SELECT n FROM visits WHERE customer_id = ?"
    async with running(_group(VisitCounter)(kafka_topics), kafka_topics, url):
        await wait_until(lambda: scalar(url, count, (customer,)) == 20, what="20 visits")
