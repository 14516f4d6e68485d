"""Analytics: store sales, tenders, SKUs, low stock and payment reconciliation.

Run it with ``tillstream consume analytics`` (DuckDB file ``analytics.duckdb`` unless
``--db`` or ``TILLSTREAM_DB_URL`` says otherwise); see ``docs/analytics.md``.
"""

from consumers.analytics.reconcile import reconcile
from consumers.analytics.report import DailySummary, daily_summary
from consumers.analytics.service import Analytics

__all__ = ["Analytics", "DailySummary", "daily_summary", "reconcile"]
