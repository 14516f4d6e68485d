"""The store estate at head office (issue 24): every store edge's reports of itself, its tills
and devices, against head office's desired state; flags for edges gone silent, outboxes
growing, clocks off, devices down, tills not seen, drift and suspended tills still posting
(``tillstream consume fleet``)."""

from tillstream_consumers.fleet.service import FleetService

__all__ = ["FleetService"]
