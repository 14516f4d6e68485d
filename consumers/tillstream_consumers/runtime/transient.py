"""Which failures are worth retrying, by the engine's own error code.

Transient: the database or broker is busy, locked, short of disk or memory, failing I/O, or
the connection is lost. Retrying later can succeed, so the runtime retries the same batch
and reports itself not ready meanwhile. Everything else (bad SQL, a violated constraint, a
value out of range) fails the same way every time: the record goes to the dead-letter
topic instead of holding the consumer up for ever.
"""

from __future__ import annotations

import sqlite3

from aiokafka import errors as kafka_errors

# SQLite primary result codes (https://sqlite.org/rescode.html; the low byte of an extended
# code). READONLY is here as a remount or a permission change, an operator's fix.
_SQLITE_TRANSIENT = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_READONLY,
    }
)

# PostgreSQL SQLSTATE classes and codes (Appendix A of its manual; psycopg.errors names them).
_PG_TRANSIENT_CLASSES = frozenset(
    {
        "08",  # connection exception
        "53",  # insufficient resources: disk full, out of memory, too many connections
        "58",  # system error: I/O error
    }
)
_PG_TRANSIENT_CODES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "40003",  # statement_completion_unknown
        "55P03",  # lock_not_available (lock_timeout)
        "55006",  # object_in_use
        "57014",  # query_canceled (statement_timeout)
        "57P01",  # admin_shutdown (pg_terminate_backend, a fast shutdown)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, recovering)
        "57P05",  # idle_session_timeout
        "25006",  # read_only_sql_transaction: connected to a standby after a failover
    }
)

# Sends the broker refuses for good: retrying the same record never helps.
KAFKA_TOO_LARGE: tuple[type[Exception], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
)
KAFKA_REFUSED: tuple[type[Exception], ...] = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.InvalidTopicError,
    kafka_errors.PolicyViolationError,
)


def database_transient(exc: BaseException) -> bool:
    """Whether retrying the statement later may succeed, for SQLite, PostgreSQL or DuckDB."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_TRANSIENT
    module = type(exc).__module__
    if module.startswith("psycopg"):
        return _postgres_transient(exc)
    if module.startswith(("duckdb", "_duckdb")):  # its classes live in the C module _duckdb
        return _duckdb_transient(exc)
    return isinstance(exc, OSError | TimeoutError)


def _postgres_transient(exc: BaseException) -> bool:
    import psycopg

    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate is None:
        # No answer from the server: connecting failed, the connection broke or was closed
        # (psycopg's own checks, e.g. a wrong number of parameters, are ProgrammingError).
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return sqlstate in _PG_TRANSIENT_CODES or sqlstate[:2] in _PG_TRANSIENT_CLASSES


def _duckdb_transient(exc: BaseException) -> bool:
    import duckdb

    # IOException also covers "Could not set lock on file" (another process has it open);
    # TransactionException is a write-write conflict; FatalException means the database
    # was invalidated (e.g. a failed WAL write) and must be reopened, which a retry does.
    return isinstance(
        exc,
        duckdb.IOException
        | duckdb.TransactionException
        | duckdb.ConnectionException
        | duckdb.OutOfMemoryException
        | duckdb.InterruptException
        | duckdb.FatalException,
    )


def kafka_transient(exc: BaseException) -> bool:
    """Whether a Kafka call may succeed later: anything but a refusal of the record itself
    (too large) or of this client (not authorized, invalid topic)."""
    return not isinstance(exc, KAFKA_TOO_LARGE + KAFKA_REFUSED)
