"""Analytics: store sales, tenders, SKUs, low stock and payment reconciliation.

Run it with ``tillstream consume analytics`` (DuckDB file ``analytics.duckdb`` unless
``--db`` or ``TILLSTREAM_DB_URL`` says otherwise); see ``docs/analytics.md``.
"""

from tillstream_consumers.analytics.reconcile import reconcile
from tillstream_consumers.analytics.report import DailySummary, daily_summary
from tillstream_consumers.analytics.service import Analytics

__all__ = ["Analytics", "DailySummary", "daily_summary", "reconcile"]
