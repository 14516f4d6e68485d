"""The devices file: which serial devices a store edge runs, validated before any port opens.

One TOML table per device under ``[devices.<name>]``, plus an optional ``[items]`` table that
maps GTINs to the retailer's SKUs: an override of the item master (the edge's copy of
``tillstream.items``), which maps every other scanned GTIN. Line settings default per
protocol (MT-SICS 9600 8N1, Toledo 8217 9600 7E1, scanners 9600 8N1) because that is what
the devices ship with; a mistake names the device and field, since the file is edited by
hand in the store.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from biip import ParseError
from biip.gtin import Gtin
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tillstream.core.identifiers import sku_problem
from tillstream_edge.tomlfile import read_toml

Parity = Literal["N", "E", "O", "M", "S"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_TERMINATORS = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n"}


class DeviceConfigError(ValueError):
    """The devices file is missing, not TOML, or names an impossible setup."""


class _Device(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    port: str = Field(min_length=1, description="Serial device path, e.g. /dev/serial/by-id/...")
    baudrate: int = Field(9600, gt=0)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Parity = "N"
    stopbits: float = 1
    reconnect_initial: float = Field(0.5, gt=0, description="First retry delay, seconds.")
    reconnect_max: float = Field(30.0, gt=0, description="Cap of the doubling retry delay.")
    max_frame: int = Field(512, ge=16, le=65536, description="Longest frame kept, bytes.")

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, value: float) -> float:
        if value not in (1, 1.5, 2):
            raise ValueError("stop bits must be 1, 1.5 or 2")
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> _Device:
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be >= reconnect_initial")
        return self


class ScannerConfig(_Device):
    """A barcode scanner in serial (not keyboard) mode."""

    protocol: Literal["scanner"]
    mode: Literal["receive", "count"] = "receive"
    terminator: Literal["CR", "LF", "CRLF"] = "CR"
    prefix: str = Field("", description="Fixed prefix the scanner adds before each code.")
    scale: str | None = Field(None, description="Name of the scale that weighs scanned goods.")
    end_barcode: str | None = Field(None, description="Control code that closes a session.")
    idle_timeout: float = Field(300.0, gt=0, description="Seconds without scans that close it.")

    @field_validator("terminator", mode="before")
    @classmethod
    def _spelling(cls, value: Any) -> Any:
        return value.replace(" ", "").upper() if isinstance(value, str) else value

    @property
    def terminator_bytes(self) -> bytes:
        return _TERMINATORS[self.terminator]

    @property
    def end_code(self) -> str:
        return self.end_barcode or ("COUNT-END" if self.mode == "count" else "RECEIVE-END")


class _ScaleDevice(_Device):
    reply_timeout: float = Field(2.0, gt=0, description="Seconds to wait for one reply.")
    stable_timeout: float = Field(5.0, gt=0, description="Seconds to wait for a stable weight.")
    poll_interval: float = Field(
        10.0, ge=0, description="Idle health check period in seconds; 0 disables it."
    )


class MtSicsConfig(_ScaleDevice):
    """A Mettler Toledo scale speaking MT-SICS level 0."""

    protocol: Literal["mt-sics"]
    command: Literal["S", "SI"] = Field("SI", description="SI polls; S lets the scale wait.")


class Toledo8217Config(_ScaleDevice):
    """A scale speaking the Toledo 8217 (weight only) protocol."""

    protocol: Literal["toledo-8217"]
    bytesize: Literal[5, 6, 7, 8] = 7
    parity: Parity = "E"
    unit: Literal["kg", "g"] = Field("kg", description="Unit the scale is set up to send.")


DeviceConfig = Annotated[
    ScannerConfig | MtSicsConfig | Toledo8217Config, Field(discriminator="protocol")
]
ScaleConfig = MtSicsConfig | Toledo8217Config


class DevicesConfig(BaseModel):
    """Every serial device of one store edge, and the GTIN→SKU table scans are mapped with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: dict[str, DeviceConfig] = Field(default_factory=dict)
    items: dict[str, str] = Field(default_factory=dict)

    @field_validator("items")
    @classmethod
    def _normalise_gtins(cls, items: dict[str, str]) -> dict[str, str]:
        """Keys become canonical GTINs so a GTIN-14 scan finds its GTIN-13 entry."""
        out: dict[str, str] = {}
        for key, sku in items.items():
            try:
                gtin = canonical_gtin(Gtin.parse(key))
            except ParseError as exc:
                raise ValueError(f"item {key!r}: {exc}") from None
            if (problem := sku_problem(sku)) is not None:  # the SKU rule of every channel
                raise ValueError(f"item {key!r}: SKU {problem.message}")
            out[gtin] = sku
        return out

    @model_validator(mode="after")
    def _consistent(self) -> DevicesConfig:
        ports: dict[str, str] = {}
        for name, device in self.devices.items():
            if not _NAME.match(name):
                raise ValueError(f"device {name!r}: name must match {_NAME.pattern}")
            if device.port in ports:
                raise ValueError(
                    f"device {name!r}: port {device.port} is already used by {ports[device.port]!r}"
                )
            ports[device.port] = name
            if isinstance(device, ScannerConfig) and device.scale is not None:
                paired = self.devices.get(device.scale)
                if paired is None or isinstance(paired, ScannerConfig):
                    raise ValueError(
                        f"device {name!r}: field 'scale': {device.scale!r} is not a scale device"
                    )
        return self

    def scales(self) -> dict[str, ScaleConfig]:
        return {n: d for n, d in self.devices.items() if not isinstance(d, ScannerConfig)}

    def scanners(self) -> dict[str, ScannerConfig]:
        return {n: d for n, d in self.devices.items() if isinstance(d, ScannerConfig)}


def canonical_gtin(gtin: Gtin) -> str:
    """The GTIN in its own format (GTIN-8/12/13/14), without padding zeros."""
    return gtin.value[-gtin.format.length :]


def load_devices(path: Path) -> DevicesConfig:
    """Read and validate a devices file; every problem is reported with device and field."""
    return devices_from(read_toml(path, "devices file", DeviceConfigError), f"{path}: ")


def devices_from(raw: Any, where: str = "") -> DevicesConfig:
    """Validate devices as the file holds them (a table per device, and ``items``): the one
    check of the devices file and of head office's settings of a device."""
    try:
        return DevicesConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(err) for err in exc.errors(include_url=False)]
        raise DeviceConfigError(where + "; ".join(lines)) from None


def as_table(config: DevicesConfig) -> dict[str, Any]:
    """The devices as the file holds them, to be validated again with a change."""
    return config.model_dump(mode="json", exclude_defaults=True)


def _describe(err: Any) -> str:
    loc = [str(p) for p in err["loc"]]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if len(loc) >= 2 and loc[0] == "devices":
        name, rest = loc[1], loc[2:]
        if rest and rest[0] in ("scanner", "mt-sics", "toledo-8217"):
            rest = rest[1:]  # the discriminator tag pydantic inserts
        if err["type"] == "union_tag_invalid":
            return f"device {name!r}: field 'protocol': {msg}"
        if err["type"] == "union_tag_not_found":
            return f"device {name!r}: field 'protocol': missing (scanner, mt-sics, toledo-8217)"
        if rest:
            return f"device {name!r}: field {'.'.join(rest)!r}: {msg}"
        return f"device {name!r}: {msg}"
    if loc:
        return f"{'.'.join(loc)}: {msg}"
    return msg
