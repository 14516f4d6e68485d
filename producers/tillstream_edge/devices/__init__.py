"""Serial devices at the store edge: barcode scanners and scales feeding stock sessions.

Layers, each only using the one below: ``config`` (the devices file) → ``link`` (ports,
framing, reconnects, status, metrics) → protocols (``scanner``, ``mtsics``, ``toledo`` over
``scale``) → ``sessions`` (scans to stock movements) → ``service`` (runs them all).
"""

from tillstream_edge.devices.config import DeviceConfigError, DevicesConfig, load_devices
from tillstream_edge.devices.link import DeviceStatus
from tillstream_edge.devices.service import DeviceService
from tillstream_edge.devices.sessions import EmitFailed

__all__ = [
    "DeviceConfigError",
    "DeviceService",
    "DeviceStatus",
    "DevicesConfig",
    "EmitFailed",
    "load_devices",
]
