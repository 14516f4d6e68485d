"""The example consumer of ``docs/consumers.md``: visits per loyalty customer.

Run it with ``tillstream consume tillstream_consumers.example:VisitCounter --db sqlite:///visits.db``.
"""

from tillstream_consumers.runtime import Consumer, Context, Record


class VisitCounter(Consumer):
    name = "visit-counter"  # the consumer group id
    topics = ("tillstream.sales",)
    migrations = ("CREATE TABLE visits (customer_id TEXT PRIMARY KEY, n BIGINT NOT NULL)",)

    def apply(self, ctx: Context, records: list[Record]) -> None:
        for r in records:
            sale = r.sale()  # a typed Sale: an editor completes its fields
            if sale["customer_id"]:
                ctx.db.execute(
                    "INSERT INTO visits VALUES (?, 1) "
                    "ON CONFLICT (customer_id) DO UPDATE SET n = visits.n + 1",
                    (sale["customer_id"],),
                )
