"""Sales audit: per store, business day and till, whether the day is complete and balances
(receipt-number gaps and duplicates, unsettled tills, over/short per till and cashier, late
events, silent stores), with auditors' acknowledgements (``tillstream consume audit``)."""

from tillstream_consumers.audit.service import SalesAudit

__all__ = ["SalesAudit"]
