"""One settings object for every tillstream service, read from the environment.

Twelve-factor: every setting is an environment variable ``TILLSTREAM_<NAME>``; an optional
TOML file named by ``TILLSTREAM_CONFIG`` supplies defaults that the environment overrides.
Settings are validated once at start-up; a bad value raises :class:`SettingsError` naming
the variable.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tillstream.core.estate import opening_hours
from tillstream.core.identifiers import text_problem

ENV_PREFIX = "TILLSTREAM_"
CONFIG_FILE_VARIABLE = f"{ENV_PREFIX}CONFIG"
_STORE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


HTTP_READ_TIMEOUT_S = 10.0
HTTP_MAX_CONNECTIONS = 1000
MAX_WINDOW = timedelta(days=36500)
"""The widest plausibility window (TILLSTREAM_EDGE_MAX_EVENT_AGE, _MAX_FUTURE), set here or by
head office (estate_desired.edge)."""
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


class Settings(BaseSettings):
    """Runtime configuration. Each field is read from ``TILLSTREAM_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, frozen=True
    )

    # Kafka connection
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka listener protocol."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism, with the SASL_* protocols."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password.")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle that signs broker certs.")
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate (mTLS).")
    kafka_ssl_keyfile: Path | None = Field(None, description="Client private key (mTLS).")
    kafka_client_id: str = Field("tillstream", description="Client id reported to brokers.")

    # Topics
    topic_partitions: int = Field(12, ge=1, le=10_000, description="Partitions per topic.")
    topic_replication_factor: int = Field(1, ge=1, le=16, description="Replicas per partition.")
    topic_min_insync_replicas: int = Field(1, ge=1, le=16, description="min.insync.replicas.")

    # Schemas
    schema_registry_url: str | None = Field(
        None, description="Confluent-compatible schema registry URL; unset: committed schemas."
    )
    schema_registry_username: str | None = Field(None, description="Registry basic-auth user.")
    schema_registry_password: SecretStr | None = Field(None, description="Registry password.")
    schemas_dir: Path | None = Field(None, description="Schema directory (default: bundled).")

    # Edge service (one per store)
    store_id: str | None = Field(None, description="This store's id (edge services).")
    store_timezone: str = Field("UTC", description="IANA zone of store-local POSLog times.")
    # Issue #12 (POSLog transactions): one store, one currency, on every channel.
    store_currency: str = Field(
        "EUR",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of this store's currency: sales and payments in another "
        "are refused; POSLog documents that name none are in it.",
    )
    edge_listen: str = Field("0.0.0.0:8080", description="HOST:PORT of the edge HTTP API.")
    edge_outbox: Path = Field(Path("outbox.db"), description="SQLite outbox file.")
    edge_outbox_max_mb: int = Field(2048, ge=1, description="Outbox disk limit (MiB).")
    edge_devices: Path | None = Field(None, description="TOML file listing serial devices.")
    edge_poslog_dir: Path | None = Field(None, description="POSLog drop folder to watch.")
    edge_poslog_dialect: str | None = Field(
        None,
        description="POSLog vendor dialect forced on every document (names: docs/edge.md, "
        "'tillstream poslog check --help'); unset: detected per document.",
    )
    edge_tokens: Path | None = Field(
        None, description="TOML file of till ids and their bearer tokens; set: tokens required."
    )
    edge_tls_certfile: Path | None = Field(None, description="Edge HTTPS certificate (PEM).")
    edge_tls_keyfile: Path | None = Field(None, description="Edge HTTPS private key (PEM).")
    edge_tls_client_cafile: Path | None = Field(
        None, description="CA bundle that signs till client certificates; set: mTLS required."
    )
    # Edge plausibility window: live channels refuse events whose occurred_at is
    # further from now; 'tillstream edge import' (backfill) is exempt.
    edge_max_event_age: timedelta = Field(
        timedelta(days=30),
        gt=timedelta(0),
        le=MAX_WINDOW,
        description="Oldest occurred_at a live channel takes.",
    )
    edge_max_future: timedelta = Field(
        timedelta(hours=1),
        ge=timedelta(0),
        le=MAX_WINDOW,
        description="Furthest occurred_at ahead of now.",
    )

    # The store estate (issue 24): what the edge reports of itself, its tills and devices.
    edge_heartbeat_s: int = Field(
        30,
        ge=1,
        le=3600,
        description="Seconds between the edge's estate reports when nothing changes (a change "
        "is reported within about a second).",
    )

    # Master data (issue 15): the store's copy of the items and prices topics.
    edge_masterdata: Path | None = Field(
        None,
        description="SQLite file of the store's master-data copy (default: beside the outbox, "
        "<outbox>.masterdata.db).",
    )
    edge_masterdata_rebuild_after: timedelta = Field(
        timedelta(days=6),
        gt=timedelta(0),
        le=timedelta(days=365),
        description="A copy last caught up longer ago is rebuilt from the beginning of the "
        "topics (keep it below their delete.retention.ms, 7 days).",
    )

    @field_validator(
        "edge_max_event_age",
        "edge_max_future",
        "edge_masterdata_rebuild_after",
        "session_max_age",
        "fleet_outbox_max_age",
        "fleet_max_clock_skew",
        "fleet_device_down_after",
        "fleet_till_grace",
        "fleet_drift_after",
        mode="before",
    )
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        # Environment values are text: whole seconds ("3600") as well as ISO 8601 ("PT1H").
        text = value.strip() if isinstance(value, str) else ""
        if text.isascii() and text.isdigit() and len(text) <= 12:
            return int(text)
        return value

    # Nothing may block a store's stream: the door's size limit, delivery bound.
    kafka_max_request_bytes: int = Field(
        1_048_576,
        ge=16_384,
        le=100 * 1024 * 1024,
        description="Producer max_request_size: the largest record the edge sends (and takes).",
    )
    edge_delivery_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds a publish may wait for Kafka before Kafka is reported down.",
    )

    # Every service's HTTP server (tillstream.core.http_guard): floods of connections.
    http_read_timeout_s: float = Field(
        HTTP_READ_TIMEOUT_S,
        gt=0,
        le=3600,
        description="Seconds a client of a service's HTTP server gets to send a request's "
        "headers (from connecting, or from its previous answer), and the longest pause in a "
        "body; then the connection is closed.",
    )
    http_max_connections: int = Field(
        HTTP_MAX_CONNECTIONS,
        ge=16,
        le=1_000_000,
        description="Connections a service's HTTP server keeps open at most; beyond, the one "
        "waiting longest for a request is closed.",
    )

    # Head-office services
    db_url: str = Field("sqlite:///tillstream.db", description="Database URL of a consumer.")
    consumer_listen: str = Field(
        "0.0.0.0:9400", description="HOST:PORT of a consumer's /metrics, /healthz, /readyz."
    )
    consumer_batch_size: int = Field(500, ge=1, le=10_000, description="Records per batch.")
    # Optional bearer token of a consumer's read APIs (/v1/...); the CLI (report, stock) sends
    # it when it asks a running service.
    consumer_api_token: SecretStr | None = Field(
        None,
        description="Bearer token a consumer's read APIs require; unset: open (health and "
        "metrics are always open).",
    )

    audit_api_token: SecretStr | None = Field(
        None,
        description="A named API token of the sales audit (tillstream audit token create, "
        "with the ack scope), sent by 'tillstream audit --api' and 'tillstream audit ack --api'.",
    )

    # Sign-in to head-office pages (the auditor's page): OpenID Connect, the chain's single
    # sign-on (docs/audit.md, "Sign-in, roles and tokens").
    oidc_issuer: str | None = Field(
        None,
        description="The OpenID provider's issuer URL (its /.well-known/openid-configuration "
        "is read); unset: no sign-in.",
    )
    oidc_client_id: str | None = Field(None, description="This service's client id there.")
    oidc_client_secret: SecretStr | None = Field(None, description="Its client secret.")
    oidc_roles_claim: str = Field(
        "roles",
        description="The ID token or userinfo claim holding the user's roles (a dotted path "
        "reaches into objects: realm_access.roles).",
    )
    oidc_viewer_role: str = Field("viewer", description="The provider's role that may read.")
    oidc_auditor_role: str = Field(
        "auditor", description="The provider's role that may also acknowledge flags."
    )
    oidc_lead_role: str = Field(
        "lead", description="The provider's role that may also reopen acknowledgements."
    )
    oidc_fleet_role: str = Field(
        "fleet",
        description="The provider's role that may manage the store estate on the fleet "
        "page (suspend a till: publish head office's desired state).",
    )
    session_secret: SecretStr | None = Field(
        None, description="Key of the signed session cookie (required with sign-in)."
    )
    session_max_age: timedelta = Field(
        timedelta(hours=8), description="Seconds a signed-in session lasts (default 8 hours)."
    )
    public_url: str | None = Field(
        None,
        description="How browsers reach the service (https://audit.example.com), behind a "
        "proxy: the sign-in's return address, and an allowed host.",
    )
    allowed_hosts: str | None = Field(
        None,
        description="Host names the service answers to (comma-separated); unset: loopback "
        "names, the listen host and the public URL's host.",
    )
    insecure_dev: bool = Field(
        False,
        description="Serve acknowledgements on every interface with neither sign-in nor API "
        "tokens (development only).",
    )

    @field_validator(
        "oidc_issuer",
        "oidc_client_id",
        "oidc_client_secret",
        "session_secret",
        "public_url",
        "allowed_hosts",
        "audit_api_token",
        "fleet_api_token",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # compose's ${X:-}

    @field_validator("consumer_api_token", mode="before")
    @classmethod
    def _check_api_token(cls, value: object) -> object:
        if value == "":  # an empty variable (compose's ${X:-}) means unset
            return None
        if isinstance(value, str) and len(value) < 16:
            raise ValueError("must be at least 16 characters (e.g. openssl rand -hex 32)")
        return value

    erp_velocity_days: int = Field(
        28, ge=1, le=366, description="Days of sales behind velocity-based reorder points."
    )
    erp_safety_days: int = Field(
        2, ge=0, le=365, description="Days of cover added to lead time for reorder points."
    )
    erp_default_lead_time_days: int = Field(
        7, ge=0, le=365, description="Supplier lead time of SKUs the item master lacks."
    )
    crm_points_per_unit: Decimal = Field(
        Decimal(1), ge=0, description="Loyalty points per whole currency unit spent."
    )
    crm_max_visits_per_day: int = Field(
        25,
        ge=1,
        description="Visits in one business day beyond which a customer id is flagged as no one "
        "person (a programme's name or a shared card in the customer field).",
    )
    crm_max_stores_per_day: int = Field(
        4,
        ge=1,
        description="Stores visited in one business day beyond which a customer id is flagged "
        "as no one person.",
    )
    audit_api_url: str | None = Field(
        None,
        description="The sales audit's read API (http://HOST:PORT), where `tillstream report` "
        "reads a store-day's payment findings.",
    )
    audit_db_url: str | None = Field(
        None,
        description="The sales audit's database, where `tillstream report` reads a store-day's "
        "payment findings when no audit_api_url is set.",
    )
    audit_over_short_tolerance: Decimal = Field(
        Decimal("1.00"),
        ge=0,
        description="Over/short per till and tender the sales audit accepts without a flag.",
    )
    audit_silent_days: int = Field(
        7,
        ge=1,
        le=366,
        description="A store that traded in this many days before a business day is expected "
        "to trade on it (sales audit: silent stores).",
    )
    audit_close_grace_hours: int = Field(
        6,
        ge=0,
        le=168,
        description="Hours after a business day's local midnight before the sales audit flags "
        "a day or till that never closed.",
    )
    audit_drawer_attribution: Literal[
        "declaring", "per-cashier", "split-by-time", "split-by-sales"
    ] = Field(
        "declaring",
        description="Whose over/short a till's drawer is (sales audit): the cashier who "
        "declared it, each cashier their own drawer, or a drawer shared by its cashiers and "
        "split by time worked or by sales taken.",
    )
    # The store estate's fleet service (docs/fleet.md): when an edge, a till or a device
    # is flagged, and how long its history is kept.
    fleet_silent_heartbeats: float = Field(
        2.5,
        ge=1,
        le=1000,
        description="Heartbeat periods (each edge reports its own) without a report after "
        "which the fleet service calls an edge silent: 2.5 x 30 s sees a killed edge within "
        "75 s and bears one lost heartbeat however late the next.",
    )
    fleet_outbox_max_age: timedelta = Field(
        timedelta(minutes=10),
        gt=timedelta(0),
        description="An edge whose oldest unsent event is older than this (by its own "
        "clock, when it reported) has a growing outbox.",
    )
    fleet_outbox_rising_reports: int = Field(
        5,
        ge=2,
        le=1000,
        description="Reports in a row, each with a deeper outbox than the one before, that "
        "make an outbox growing.",
    )
    fleet_max_clock_skew: timedelta = Field(
        timedelta(seconds=30),
        gt=timedelta(0),
        description="How far an edge's clock may be from the broker's (its report's sent_at "
        "against the time the broker appended it).",
    )
    fleet_opening_hours: str = Field(
        "08:00-21:00",
        description="The stores' opening hours, store-local (HH:MM-HH:MM; 00:00-24:00: "
        "always): when a disconnected device is flagged, and when a till's trading day "
        "starts.",
    )
    fleet_device_down_after: timedelta = Field(
        timedelta(minutes=5),
        gt=timedelta(0),
        description="How long a serial device may be disconnected during opening hours "
        "before it is flagged.",
    )
    fleet_till_days: int = Field(
        7,
        ge=1,
        le=366,
        description="A till seen on any of this many days before today is expected to be "
        "seen today.",
    )
    fleet_till_grace: timedelta = Field(
        timedelta(hours=2),
        ge=timedelta(0),
        description="How long after opening a till expected today may go unseen before it "
        "is flagged.",
    )
    fleet_drift_after: timedelta = Field(
        timedelta(minutes=10),
        gt=timedelta(0),
        description="How long an edge may take to apply head office's desired state before "
        "the target is flagged as drifting (a refusal is flagged at once).",
    )
    fleet_history_days: int = Field(
        7,
        ge=1,
        le=366,
        description="Days of reports (and resolved flags) the fleet service keeps.",
    )
    fleet_api_token: SecretStr | None = Field(
        None,
        description="A named API token of the fleet service (tillstream fleet token create), "
        "sent by 'tillstream fleet --api'.",
    )

    @field_validator("fleet_opening_hours")
    @classmethod
    def _check_opening_hours(cls, value: str) -> str:
        opening_hours(value)  # raises ValueError saying what is wrong
        return value

    log_level: LogLevel = Field("INFO", description="Log level.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "tillstream", description="Where downloaded jars are cached."
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not _is_port(port) or int(port) == 0:
                raise ValueError(f"{server.strip()!r} is not host:port")
        return value

    @field_validator("store_id")
    @classmethod
    def _check_store_id(cls, value: str | None) -> str | None:
        if value is not None and not _STORE_ID.match(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-'")
        if value is not None and text_problem(value) is not None:  # on every event and key
            raise ValueError("looks like a card number (PAN); a store id may not be one")
        return value

    @field_validator("store_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        return value

    @field_validator("edge_listen", "consumer_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator(
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "edge_devices",
        "edge_tokens",
        "edge_tls_certfile",
        "edge_tls_keyfile",
        "edge_tls_client_cafile",
    )
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        try:
            found = value is None or value.is_file()
        except OSError as exc:  # e.g. a name too long for the file system: a bad value
            raise ValueError(f"not a usable file name: {exc.strerror}") from None
        if not found:
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_SASL_USERNAME and {ENV_PREFIX}KAFKA_SASL_PASSWORD are required "
                f"when {ENV_PREFIX}KAFKA_SECURITY_PROTOCOL is {self.kafka_security_protocol}"
            )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_SSL_CERTFILE and {ENV_PREFIX}KAFKA_SSL_KEYFILE go together"
            )
        return self

    @model_validator(mode="after")
    def _check_sign_in(self) -> Settings:
        if self.oidc_issuer is None:
            return self
        missing = [
            f"{ENV_PREFIX}{name}"
            for name, value in (
                ("OIDC_CLIENT_ID", self.oidc_client_id),
                ("OIDC_CLIENT_SECRET", self.oidc_client_secret),
                ("SESSION_SECRET", self.session_secret),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"{ENV_PREFIX}OIDC_ISSUER needs {', '.join(missing)}")
        secret = self.session_secret
        if secret is not None and len(secret.get_secret_value()) < 32:
            raise ValueError(
                f"{ENV_PREFIX}SESSION_SECRET must be at least 32 characters "
                "(e.g. openssl rand -hex 32)"
            )
        return self

    @model_validator(mode="after")
    def _check_edge_tls(self) -> Settings:
        if (self.edge_tls_certfile is None) != (self.edge_tls_keyfile is None):
            raise ValueError(
                f"{ENV_PREFIX}EDGE_TLS_CERTFILE and {ENV_PREFIX}EDGE_TLS_KEYFILE go together"
            )
        if self.edge_tls_client_cafile is not None and self.edge_tls_certfile is None:
            raise ValueError(
                f"{ENV_PREFIX}EDGE_TLS_CLIENT_CAFILE needs HTTPS: set "
                f"{ENV_PREFIX}EDGE_TLS_CERTFILE and {ENV_PREFIX}EDGE_TLS_KEYFILE"
            )
        return self

    @cached_property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",")]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_VARIABLE)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; explicit overrides (CLI options) win over the environment.

    Raises:
        SettingsError: naming every bad variable and what is wrong with it.
    """
    for name, value in os.environ.items():
        # Raw bytes in the environment arrive as lone surrogates, which pydantic cannot take
        # (UnicodeEncodeError, naming no variable): name the variable, never the value.
        if name.upper().startswith(ENV_PREFIX) and not _is_utf8(value):
            raise SettingsError(f"{name}: not valid UTF-8 text")
    config_file = os.environ.get(CONFIG_FILE_VARIABLE)
    if config_file:
        try:
            found = Path(config_file).is_file()
        except OSError as exc:  # e.g. a name too long for the file system
            raise SettingsError(
                f"{CONFIG_FILE_VARIABLE}: not a usable file name: {exc.strerror}"
            ) from None
        if not found:
            raise SettingsError(f"{CONFIG_FILE_VARIABLE}: no such file: {config_file}")
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    except ValueError as exc:  # a malformed TOML file
        raise SettingsError(f"{CONFIG_FILE_VARIABLE} ({config_file}): {exc}") from None


def split_host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 hosts in brackets) as a pair; ValueError if malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not _is_port(port):
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_port(text: str) -> bool:
    # isdigit() alone admits '²' (int() fails) and 5000-digit strings (int() refuses them).
    return text.isascii() and text.isdigit() and len(text) <= 5 and int(text) < 65536


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    return f"{ENV_PREFIX}{field.upper()}"


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "not a tillstream setting"
        name = env_name(field) if field else "settings"
        # Never echo the offending value: it may be a password.
        problems.append(f"{name}: {message}")
    return "invalid settings: " + "; ".join(problems)
