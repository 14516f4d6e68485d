"""ERP inventory: a stock ledger and stock on hand per store and SKU from sales and stock
movements, an item master, and reorder suggestions (``tillstream consume erp``)."""

from tillstream_consumers.erp.service import ErpInventory

__all__ = ["ErpInventory"]
