"""The devices file: which serial devices a store edge runs, validated before any port opens.

One TOML table per device under ``[devices.<name>]``, plus an optional ``[items]`` table that
maps GTINs to the retailer's SKUs: an override of the item master (the edge's copy of
``tillstream.items``), which maps every other scanned GTIN. The models are the core's
(``tillstream/core/devices.py``), shared with head office, which checks a device's table
with them before it publishes one (``tillstream fleet``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    "as_table",
    "canonical_gtin",
    "devices_from",
    "load_devices",
]


class DeviceConfigError(ValueError):
    """The devices file is missing, not TOML, or names an impossible setup."""


def load_devices(path: Path) -> DevicesConfig:
    """Read and validate a devices file; every problem is reported with device and field."""
    return devices_from(read_toml(path, "devices file", DeviceConfigError), f"{path}: ")


def devices_from(raw: Any, where: str = "") -> DevicesConfig:
    """Validate devices as the file holds them (a table per device, and ``items``): the one
    check of the devices file and of head office's settings of a device."""
    try:
        return DevicesConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [describe_error(err) for err in exc.errors(include_url=False)]
        raise DeviceConfigError(where + "; ".join(lines)) from None


def as_table(config: DevicesConfig) -> dict[str, Any]:
    """The devices as the file holds them, to be validated again with a change."""
    return config.model_dump(mode="json", exclude_defaults=True)
