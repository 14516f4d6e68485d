"""Which database errors the runtime retries, with real errors of SQLite, PostgreSQL and
DuckDB: a consumer's own bad SQL is permanent (dead-lettered); a lock, a killed connection
or a write conflict is transient (retried)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tillstream_consumers.runtime.db import Database


def _error(db: Database, sql: str) -> Exception:
    """The engine's own exception for ``sql`` (each engine raises its own classes)."""
    try:
        db.execute(sql)
    except Exception as exc:
        return exc
    raise AssertionError(f"{sql!r} did not fail")


@pytest.fixture(params=["sqlite", "postgresql", "duckdb"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'errors.db'}")
    if request.param == "duckdb":
        return Database(f"duckdb:///{tmp_path / 'errors.duckdb'}")
    return Database(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT no_such_column FROM t",  # a consumer's bug: no such column
        "SELECT * FROM no_such_table",
        "SELEC 1",  # syntax error
        "INSERT INTO t (id, v) VALUES (1, 1)",  # duplicate primary key
        "INSERT INTO t (id, v) VALUES (2, NULL)",  # NOT NULL
    ],
)
def test_a_consumers_bad_sql_is_permanent(any_db: Database, sql: str) -> None:
    any_db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
    any_db.execute("INSERT INTO t (id, v) VALUES (1, 0)")
    exc = _error(any_db, sql)
    assert not any_db.is_transient(exc), f"{type(exc).__name__}: {exc}"
    any_db.close()


def test_a_locked_sqlite_database_is_transient(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    holder, waiter = Database(url), Database(url)
    holder.execute("CREATE TABLE t (v INTEGER)")
    waiter.execute("PRAGMA busy_timeout=50")
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        busy = _error(waiter, "BEGIN IMMEDIATE")
        assert "locked" in str(busy)
        assert waiter.is_transient(busy)
    finally:
        holder.execute("ROLLBACK")
    waiter.execute("BEGIN IMMEDIATE")  # and it was: the lock is free again
    waiter.execute("ROLLBACK")


def test_a_killed_postgresql_connection_is_transient(postgres_url: str) -> None:
    db, admin = Database(postgres_url), Database(postgres_url)
    row = db.fetchone("SELECT pg_backend_pid()")
    assert row is not None
    admin.execute("SELECT pg_terminate_backend(?)", (row[0],))
    lost = _error(db, "SELECT 1")
    assert db.is_transient(lost), f"{type(lost).__name__}: {lost}"
    db.connect()  # what the runtime does before it retries
    assert db.fetchone("SELECT 1") == (1,)


def test_a_postgresql_lock_timeout_is_transient(postgres_url: str) -> None:
    db, holder = Database(postgres_url), Database(postgres_url)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    db.execute("INSERT INTO t VALUES (1, 0), (2, 0)")
    db.execute("SET lock_timeout = '100ms'")
    with holder.transaction():
        holder.execute("UPDATE t SET v = 1 WHERE id = 1")
        timed_out = _error(db, "UPDATE t SET v = 2 WHERE id = 1")
    assert type(timed_out).__name__ == "LockNotAvailable"
    assert db.is_transient(timed_out)


def test_a_duckdb_write_conflict_is_transient(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'conflict.duckdb'}"
    first = Database(url)
    first.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    first.execute("INSERT INTO t VALUES (1, 0)")
    second = Database(url)  # same file, same process: DuckDB shares the database
    first.execute("BEGIN TRANSACTION")
    first.execute("UPDATE t SET v = 1 WHERE id = 1")
    second.execute("BEGIN TRANSACTION")
    conflict = _error(second, "UPDATE t SET v = 2 WHERE id = 1")
    assert type(conflict).__name__ == "TransactionException"
    assert second.is_transient(conflict)


def test_a_duckdb_file_held_by_another_process_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            "print('open', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"open"
        try:
            Database(f"duckdb:///{path}")
        except Exception as exc:
            held: Exception = exc
        else:
            raise AssertionError("a file held by another process opened")
        assert type(held).__name__ == "IOException"
        assert "lock" in str(held)
        assert Database("duckdb:///:memory:").is_transient(held)  # opening is retried
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # free again once the other process is gone
        try:
            Database(f"duckdb:///{path}").close()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
