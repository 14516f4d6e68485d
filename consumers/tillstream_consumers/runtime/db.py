"""One small database interface over SQLite (embedded default), PostgreSQL (production) and
DuckDB (analytics): connect by URL, ``?`` placeholders everywhere, explicit transactions,
versioned migrations, and a verdict on which errors are worth retrying.

URLs: ``sqlite:///path/to.db`` (``sqlite:///:memory:``), ``postgresql://user:pw@host/db``,
``duckdb:///path/to.duckdb``.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from tillstream_consumers.runtime.transient import database_transient

Dialect = Literal["sqlite", "postgresql", "duckdb"]
Migration = str | dict[str, str]
"""Portable SQL, or ``{dialect: sql}`` where dialects differ."""

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component  TEXT NOT NULL,
    version    INTEGER NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (component, version)
)"""


_MIGRATION_LOCK = 0x7111_5743  # any constant: the advisory lock key of migrations


class DatabaseError(RuntimeError):
    """The database URL is wrong or the database cannot be opened."""


class Database:
    """A connection, with the dialect's quirks kept in here."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect: Dialect = _dialect(url)
        self._conn: Any = None
        self._in_tx = False
        self.connect()

    # -- connection -------------------------------------------------------------------

    def connect(self) -> None:
        """(Re)open the connection; after a transient failure the old one may be broken."""
        self.close()
        try:
            if self.dialect == "sqlite":
                path = self.url.removeprefix("sqlite:///") or ":memory:"
                if path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL is enough: effects and offsets commit together, and Kafka still holds
                # anything a power cut takes back, so it is simply applied again.
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=10000")
                self._conn = conn
            elif self.dialect == "postgresql":
                import psycopg

                pg = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
                # psycopg prepares a statement after its 5th run; PostgreSQL may then keep a
                # generic plan made while the tables were small (a sequential scan of
                # runtime_events for the IN list of seen_events), so every batch got slower
                # as history grew. Plan each execution with its values instead.
                pg.execute("SET plan_cache_mode = force_custom_plan")
                self._conn = pg
            else:
                import duckdb

                _skip_pandas_probe()
                path = self.url.removeprefix("duckdb:///") or ":memory:"
                if path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._conn = duckdb.connect(path)
        except Exception as exc:
            if self.is_transient(exc):
                raise
            raise DatabaseError(f"cannot open {redact_url(self.url)}: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            # Closing a broken connection may fail; it is gone either way.
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
            self._in_tx = False

    def _live(self) -> Any:
        """The connection, reopened if a failure closed it (raises while the database is away)."""
        if self._conn is None:
            self.connect()
        return self._conn

    # -- statements -------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._live().execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if not rows:
            return
        if self.dialect == "postgresql":
            with self._live().cursor() as cur:
                cur.executemany(self._sql(sql), rows)
        else:
            self._live().executemany(self._sql(sql), rows)

    def insert_many(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        conflict: str = "",
    ) -> None:
        """Insert ``rows`` in as few statements as the dialect allows, then ``conflict``
        (an optional ``ON CONFLICT ...`` clause). Rows must be unique by the conflict key."""
        if not rows:
            return
        names = ", ".join(columns)
        if self.dialect == "duckdb":
            # DuckDB binds Python parameters one at a time and slowly: one list per column.
            unnest = ", ".join(["unnest(?)"] * len(columns))
            self.execute(
                f"INSERT INTO {table} ({names}) SELECT {unnest} {conflict}",
                [list(column) for column in zip(*rows, strict=True)],
            )
            return
        row = f"({marks(columns)})"
        if self.dialect == "postgresql" and not conflict:
            # COPY streams the rows: no statement to build, and none for psycopg to parse
            # (it splits a long multi-row VALUES statement in Python on every call, which
            # cost more than the insert itself). Same transaction, same constraints.
            with (
                self._live().cursor() as cur,
                cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
            ):
                for r in rows:
                    copy.write_row(r)
            return
        if self.dialect == "postgresql":  # multi-row VALUES, within the 65535-parameter cap
            per_statement = max(1, 30_000 // len(columns))
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                self.execute(
                    f"INSERT INTO {table} ({names}) VALUES {', '.join([row] * len(chunk))} "
                    + conflict,
                    [value for r in chunk for value in r],
                )
            return
        self.executemany(f"INSERT INTO {table} ({names}) VALUES {row} {conflict}", rows)

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self.execute(sql, params).fetchone()
        return None if row is None else tuple(row)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.execute(sql, params).fetchall()]

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Everything inside commits together or not at all."""
        if self._in_tx:
            raise RuntimeError("transactions do not nest")
        if self.dialect == "postgresql":
            with self._live().transaction():
                self._in_tx = True
                try:
                    yield self
                finally:
                    self._in_tx = False
            return
        # SQLite: take the write lock up front, so two writers never deadlock mid-batch.
        self._live().execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN TRANSACTION")
        self._in_tx = True
        try:
            yield self
        except BaseException:
            self._in_tx = False
            self._conn.execute("ROLLBACK")
            raise
        self._in_tx = False
        self._conn.execute("COMMIT")

    def advisory_lock(self, space: int, key: str) -> None:
        """Hold a lock on ``key`` (in the namespace ``space``, a 32-bit constant of the
        caller's) until the transaction ends, across every connection to the database:
        PostgreSQL's advisory lock. Nothing on SQLite, which has one writer at a time anyway.
        Several at once: :meth:`advisory_locks`."""
        self.advisory_locks(space, (key,))

    def advisory_locks(self, space: int, keys: Iterable[str]) -> None:
        """:meth:`advisory_lock` on each of ``keys``, in one statement and in the order of
        their 32-bit digests (two keys of one digest are one lock), so two transactions
        taking several never wait on each other in a circle."""
        if self.dialect != "postgresql":
            return
        digests = sorted({zlib.crc32(key.encode()) - 2**31 for key in keys})  # signed 32-bit
        if digests:
            # A function scan of the array yields its elements in order: locked in that order.
            self.execute(
                "SELECT COUNT(pg_advisory_xact_lock(CAST(? AS INTEGER), k)) "
                "FROM unnest(CAST(? AS INTEGER[])) AS k",
                (space - 2**31, digests),
            )

    def lock_clause(self) -> str:
        """``FOR UPDATE`` where the dialect has row locks (fences zombie consumers)."""
        return " FOR UPDATE" if self.dialect == "postgresql" else ""

    # -- migrations -------------------------------------------------------------------

    def migrate(
        self, component: str, migrations: Sequence[Migration], *, formerly: str | None = None
    ) -> int:
        """Apply the migrations of ``component`` not applied yet; returns how many ran.

        ``formerly``: a name the component's migrations may have been recorded under before
        (a consumer run under another group recorded them under the group, until #11); its
        record is taken over if the component has none."""
        ran = 0
        with self.transaction():
            if self.dialect == "postgresql":
                # Instances of a scaled-out service start together: one migrates, the rest
                # wait and then find nothing to do. (SQLite's BEGIN IMMEDIATE does the same.)
                self.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            self.execute(_MIGRATIONS_TABLE)
            done = {v for (v,) in self.fetchall(
                "SELECT version FROM schema_migrations WHERE component = ?", (component,)
            )}  # fmt: skip
            if not done and formerly and formerly != component:
                self.execute(
                    "INSERT INTO schema_migrations (component, version, applied_at) "
                    "SELECT ?, version, applied_at FROM schema_migrations WHERE component = ?",
                    (component, formerly),
                )
                done = {v for (v,) in self.fetchall(
                    "SELECT version FROM schema_migrations WHERE component = ?", (component,)
                )}  # fmt: skip
            for version, migration in enumerate(migrations, start=1):
                if version in done:
                    continue
                sql = migration if isinstance(migration, str) else migration[self.dialect]
                for statement in _statements(sql):
                    self.execute(statement)
                self.execute(
                    "INSERT INTO schema_migrations (component, version, applied_at) "
                    "VALUES (?, ?, ?)",
                    (component, version, datetime.now(UTC).isoformat()),
                )
                ran += 1
        return ran

    # -- failures ---------------------------------------------------------------------

    def is_transient(self, exc: BaseException) -> bool:
        """Whether retrying later may succeed (busy, locked, I/O, connection lost), judged by
        the engine's error code: a consumer's own bad SQL is not (see ``transient.py``)."""
        return database_transient(exc)


def _skip_pandas_probe() -> None:
    """DuckDB's client tries ``import pandas`` for every parameter it binds; where pandas is
    not installed, make that failed import instant instead of a search of sys.path."""
    import importlib.util
    import sys

    if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
        sys.modules["pandas"] = None  # type: ignore[assignment]


CHUNK = 500
"""Most values bound in one ``IN (...)`` list (SQLite allows 32,766 variables, DuckDB and
psycopg bind slower the longer the list: a few hundred keeps every engine fast)."""

T = TypeVar("T")


def chunks(values: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size``: one ``IN (...)`` query per list."""
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def marks(values: Sized) -> str:
    """``?, ?, ?``: one placeholder per value, for an ``IN`` list or a ``VALUES`` row."""
    return ", ".join("?" * len(values))


def connect(url: str) -> Database:
    return Database(url)


def redact_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _dialect(url: str) -> Dialect:
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme == "duckdb":
        return "duckdb"
    raise DatabaseError(
        f"unsupported database URL {redact_url(url)!r}: use sqlite:///file.db, "
        "postgresql://user:password@host/db or duckdb:///file.duckdb"
    )


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]
