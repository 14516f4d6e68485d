"""Analytics: store sales, tenders, SKUs, low stock and payment reconciliation.

Run it with ``tillstream consume analytics --db duckdb:///analytics.duckdb``; see
``docs/analytics.md``.
"""

from consumers.analytics.reconcile import reconcile
from consumers.analytics.report import DailySummary, daily_summary
from consumers.analytics.service import Analytics

DEFAULT_DB_URL = "duckdb:///analytics.duckdb"
"""The embedded store; point scaled-out instances at one PostgreSQL database instead."""

__all__ = ["DEFAULT_DB_URL", "Analytics", "DailySummary", "daily_summary", "reconcile"]
