"""Schema registries: where schema ids come from.

Two implementations of one small interface:

* :class:`FileRegistry` serves the committed schemas with their pinned ids. It needs no
  network, so a store keeps publishing while head office is unreachable (the default).
* :class:`ConfluentRegistry` speaks the Confluent Schema Registry REST API (also served by
  Apicurio, Karapace and Redpanda) and caches what it learns, so each id costs one request.

Both are synchronous: lookups happen once per schema id, then come from memory.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

import fastavro
import httpx

from tillstream.core.schemas import SchemaSet
from tillstream.core.settings import Settings


class RegistryError(RuntimeError):
    """The registry does not know a schema or id, or cannot be reached."""


class SchemaRegistry(Protocol):
    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """The id of ``schema`` under ``subject``, registering it if the registry allows."""
        ...

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        """The writer schema with this id."""
        ...


def _canonical(schema: dict[str, Any]) -> str:
    return str(fastavro.schema.to_parsing_canonical_form(schema))


class FileRegistry:
    """The committed schemas with their pinned ids; read-only."""

    def __init__(self, schemas: SchemaSet) -> None:
        self._by_id = {v.schema_id: v for v in schemas.all_versions() if v.schema_id is not None}
        self._by_canonical = {v.canonical: v.schema_id for v in self._by_id.values()}

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        schema_id = self._by_canonical.get(_canonical(schema))
        if schema_id is None:
            raise RegistryError(
                f"schema for {subject} is not a committed, pinned version under schemas/"
            )
        return schema_id

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        try:
            return self._by_id[schema_id].definition
        except KeyError:
            raise RegistryError(f"unknown schema id {schema_id}") from None


class ConfluentRegistry:
    """Client of the Confluent Schema Registry REST API, with a local cache."""

    _CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            auth=auth,
            timeout=timeout,
            headers={"Accept": self._CONTENT_TYPE, "Content-Type": self._CONTENT_TYPE},
            transport=transport or httpx.HTTPTransport(retries=3),
        )
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        key = (subject, _canonical(schema))
        with self._lock:
            if key in self._ids:
                return self._ids[key]
            body = self._request(
                "POST", f"/subjects/{subject}/versions", {"schema": json.dumps(schema)}
            )
            schema_id = int(body["id"])
            self._ids[key] = schema_id
            self._schemas.setdefault(schema_id, schema)
            return schema_id

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        with self._lock:
            if schema_id not in self._schemas:
                body = self._request("GET", f"/schemas/ids/{schema_id}")
                if body.get("schemaType", "AVRO") != "AVRO":
                    raise RegistryError(f"schema id {schema_id} is {body['schemaType']}, not Avro")
                self._schemas[schema_id] = json.loads(body["schema"])
            return self._schemas[schema_id]

    def is_compatible(self, subject: str, schema: dict[str, Any]) -> bool:
        """Whether the registry's compatibility rule for ``subject`` accepts ``schema``."""
        body = self._request(
            "POST",
            f"/compatibility/subjects/{subject}/versions/latest",
            {"schema": json.dumps(schema)},
            missing_ok=True,
        )
        return bool(body.get("is_compatible", True))

    def close(self) -> None:
        self._http.close()

    def _request(
        self, method: str, path: str, payload: Any = None, *, missing_ok: bool = False
    ) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, json=payload)
        except httpx.HTTPError as exc:
            raise RegistryError(f"schema registry unreachable ({method} {path}): {exc}") from exc
        if response.status_code == 404 and missing_ok:
            return {}
        if response.status_code >= 400:
            try:
                detail = response.json().get("message", response.text)
            except ValueError:
                detail = response.text
            raise RegistryError(
                f"schema registry refused {method} {path}: HTTP {response.status_code}: {detail}"
            )
        result: dict[str, Any] = response.json()
        return result


def registry_from_settings(settings: Settings) -> SchemaRegistry:
    """The registry the settings name: a Confluent-compatible URL, or the committed schemas."""
    if settings.schema_registry_url:
        auth = None
        if settings.schema_registry_username and settings.schema_registry_password:
            auth = (
                settings.schema_registry_username,
                settings.schema_registry_password.get_secret_value(),
            )
        return ConfluentRegistry(settings.schema_registry_url, auth=auth)
    return FileRegistry(SchemaSet(settings.schemas_dir))
