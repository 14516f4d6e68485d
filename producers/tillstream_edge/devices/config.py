"""The devices file: which serial devices a store edge runs, validated before any port opens.

One TOML table per device under ``[devices.<name>]``, plus an optional ``[items]`` table that
maps GTINs to the retailer's SKUs: an override of the item master (the edge's copy of
``tillstream.items``), which maps every other scanned GTIN. The models are the core's
(``tillstream/core/devices.py``), shared with head office, which checks a device's table
with them before it publishes one (``tillstream fleet``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from tillstream.core.devices import (
    DeviceConfig,
    DevicesConfig,
    MtSicsConfig,
    Parity,
    ScaleConfig,
    ScannerConfig,
    Toledo8217Config,
    canonical_gtin,
    describe_error,
)
from tillstream_edge.tomlfile import read_toml

__all__ = [
    "DeviceConfig",
    "DeviceConfigError",
    "DevicesConfig",
    "MtSicsConfig",
    "Parity",
    "ScaleConfig",
    "ScannerConfig",
    "Toledo8217Config",
    "canonical_gtin",
    "load_devices",
]


class DeviceConfigError(ValueError):
    """The devices file is missing, not TOML, or names an impossible setup."""


def load_devices(path: Path) -> DevicesConfig:
    """Read and validate a devices file; every problem is reported with device and field."""
    raw = read_toml(path, "devices file", DeviceConfigError)
    try:
        return DevicesConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [describe_error(err) for err in exc.errors(include_url=False)]
        raise DeviceConfigError(f"{path}: " + "; ".join(lines)) from None
