"""Analytics: store sales, tenders, SKUs and low stock, per store business day.

Run it with ``tillstream consume analytics`` (DuckDB file ``analytics.duckdb`` unless
``--db`` or ``TILLSTREAM_DB_URL`` says otherwise); see ``docs/analytics.md``. Whether
payments add up to their sales is the sales audit's finding (``tillstream_consumers.audit``).
"""

from tillstream_consumers.analytics.report import DailySummary, daily_summary
from tillstream_consumers.analytics.service import Analytics

__all__ = ["Analytics", "DailySummary", "daily_summary"]
