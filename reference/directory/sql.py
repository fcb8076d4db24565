"""The directory's one SQL connection, by URL: SQLite (embedded), MariaDB or PostgreSQL.

Statements are written once, in SQLite's spelling (``?`` marks, ``INSERT OR IGNORE``,
``INSERT OR REPLACE``, insertion order as ``rowid``, ``"quoted"`` names), and spelled for
the server's dialect once per statement. SQLAlchemy Core does what it does well here: it
reads the URL, loads the driver with the dialect's connect arguments, and spells the
tables (:mod:`reference.directory.tables`) for each database. The statements themselves
run on the driver's connection: a RCPT look-up is a handful of indexed SELECTs, and
SQLAlchemy's execution layer would add about 50 µs to each (measured: 17 µs a SELECT on
SQLite through the driver, 65 µs through ``Connection.execute``), several per message.

MariaDB is reached through PyMySQL: pure Python (no client library to build on every
machine), maintained, SQLAlchemy's ``mysql+pymysql`` dialect. It is synchronous, as the
directory's callers are: they call it from the event loop (a handful of indexed look-ups
per RCPT, under a millisecond on a LAN, as SQLite's file reads are) and from threads
(``asyncio.to_thread`` for password hashing and the delivery's expansion). An async driver
would turn every caller async for no gain on that path; the connect, read and write
timeouts below bound the stall when the server is gone.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateTable

from reference.clock import RealClock
from reference.credentials import TemporarilyUnavailable
from reference.sqlite import connect as connect_sqlite

__all__ = ["ConstraintError", "DirectoryUnavailable", "Sql", "database_url"]

# How long a server may take to accept a connection or answer, in seconds. A RCPT waits
# this long at most before it is told to try again later.
CONNECT_TIMEOUT = 2
READ_TIMEOUT = 5
# After a failed connect, calls fail at once for this long instead of each connecting.
RECONNECT_PAUSE = 0.5
# The drivers used where a URL names none: PyMySQL for MariaDB (see above), psycopg 3 for
# PostgreSQL (``pip install 'mailspec[postgresql]'``).
DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mysql+pymysql", "postgresql": "postgresql+psycopg"}
SCHEMES = ("sqlite", "mysql", "mariadb", "postgresql")

# Reconnect pauses are real time: the server's own clock may be a test's manual one.
_REAL = RealClock()
_UPSERT = re.compile(
    r"^INSERT OR (IGNORE|REPLACE) INTO (\w+)\s*\(([^)]*)\)(.*)$", re.DOTALL | re.IGNORECASE
)


class Cursor(Protocol):
    """What a statement gives back: the driver's cursor (sqlite3, PyMySQL, psycopg alike)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...

    def execute(self, sql: str, params: Any = ...) -> Any: ...

    def executemany(self, sql: str, rows: Any) -> Any: ...


class DirectoryUnavailable(TemporarilyUnavailable):
    """The directory's database cannot be reached now: the caller answers "try later"."""


class ConstraintError(Exception):
    """A statement broke a constraint (a key that exists already, a missing reference)."""


def database_url(target: Path | str) -> URL:
    """The URL of a directory: a path is an SQLite file; a URL names its database."""
    if isinstance(target, Path) or "://" not in target:
        return URL.create("sqlite", database=str(Path(target).absolute()))
    try:
        url = make_url(target)
    except sa.exc.ArgumentError:
        raise ValueError(f"not a database URL: {target!r}") from None
    backend = url.get_backend_name()
    if backend not in SCHEMES:
        raise ValueError(f"a directory URL is sqlite://, mysql:// or postgresql://, not {backend}")
    if url.drivername in DRIVERS:
        url = url.set(drivername=DRIVERS[url.drivername])
    return url


class Sql:
    """One connection (reopened after the server was gone) and the statements' spellings.

    Not locked: the directory runs each statement under its own lock.
    """

    def __init__(self, target: Path | str) -> None:
        self.url = database_url(target)
        self.dialect = self.url.get_backend_name()  # sqlite, mysql, postgresql
        self.server = self.dialect != "sqlite"
        self.where = self.url.render_as_string(hide_password=True)
        if self.server:
            self.engine = sa.create_engine(
                self.url,
                poolclass=NullPool,  # one connection, held; reopened here when it breaks
                isolation_level="AUTOCOMMIT",  # transactions are explicit BEGIN ... COMMIT
                connect_args=_timeouts(self.dialect),
            )
        else:
            path = Path(self.url.database or "directory.sqlite3")
            self.engine = sa.create_engine(
                "sqlite://", poolclass=NullPool, creator=lambda: connect_sqlite(path)
            )
        dbapi = self.engine.dialect.loaded_dbapi
        self._integrity: type[Exception] = dbapi.IntegrityError
        # A server gone (refused, reset, timed out) or a connection closed under us; on
        # SQLite the same errors mean a locked or broken file, kept as they are.
        self._gone: tuple[type[Exception], ...] = (
            (dbapi.OperationalError, dbapi.InterfaceError) if self.server else ()
        )
        # What a failed connect raises (the driver's errors, or SQLAlchemy's around them).
        self._refused = (*self._gone, sa.exc.OperationalError, sa.exc.InterfaceError)
        self._spelled: dict[str, str] = {}
        self._fairy: Any = None  # SQLAlchemy's wrapper of the driver connection
        self._conn: Any = None  # the driver's connection itself
        self._retry_after = 0.0
        self._closed = False
        self._in_transaction = False  # a BEGIN ran on the connection, not yet ended
        self._keys: dict[str, tuple[str, ...]] = {}
        self._connect()

    # -- connections ---------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        if self._closed:
            raise RuntimeError(f"directory database {self.where}: closed")
        if self.server and _REAL.monotonic() < self._retry_after:
            raise DirectoryUnavailable(f"directory database {self.where} unavailable (retrying)")
        try:
            self._fairy = self.engine.raw_connection()
        except self._refused as e:
            self._retry_after = _REAL.monotonic() + RECONNECT_PAUSE
            raise DirectoryUnavailable(
                f"directory database {self.where} unavailable: {_reason(e)}"
            ) from e
        self._conn = self._fairy.driver_connection
        if self.dialect == "sqlite":
            self._conn.execute("PRAGMA foreign_keys=ON")
        return self._conn

    def _drop(self) -> None:
        fairy, self._fairy, self._conn = self._fairy, None, None
        if fairy is not None:
            with contextlib.suppress(Exception):  # closing a socket the server reset already
                fairy.invalidate()

    def close(self) -> None:
        self._closed = True
        if self._fairy is not None:
            self._fairy.close()
        self._fairy = self._conn = None
        self.engine.dispose()

    # -- statements ----------------------------------------------------------------------

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement; the driver's cursor, with its rows and ``rowcount``."""
        return self._run(statement, params, many=False)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> Cursor:
        return self._run(statement, rows, many=True)

    def _run(self, statement: str, params: Any, *, many: bool) -> Cursor:
        if not self.server:  # the embedded default: straight to sqlite3, as it is written
            db = self._connect()
            try:
                done: Cursor = (db.executemany if many else db.execute)(statement, params)
            except self._integrity as e:
                raise ConstraintError(str(e)) from e
            return done
        sql = self._spelled.get(statement) or self._spell(statement)
        verb = statement.lstrip()[:8].upper()
        fresh = self._conn is None
        for attempt in (1, 2):
            cursor: Cursor = self._connect().cursor()
            try:
                if many:
                    cursor.executemany(sql, params)
                else:
                    cursor.execute(sql, tuple(params))
            except self._integrity as e:
                raise ConstraintError(str(e)) from e
            except self._gone as e:
                self._drop()
                inside, self._in_transaction = self._in_transaction, False
                # A connection the server closed since its last use (a restart, an idle
                # timeout): a read, or the start of a transaction, is asked again, once, on
                # a new one. A write may have been done before the connection broke, and
                # what a transaction did so far is gone with it: those are not repeated.
                again = verb.startswith(("SELECT", "BEGIN")) and not inside
                if attempt == 1 and not fresh and again:
                    fresh = True
                    continue
                raise DirectoryUnavailable(
                    f"directory database {self.where} unavailable: {_reason(e)}"
                ) from e
            if verb.startswith("BEGIN"):
                self._in_transaction = True
            elif verb.startswith(("COMMIT", "ROLLBACK")):
                self._in_transaction = False
            return cursor
        raise AssertionError("unreachable")  # pragma: no cover

    def _spell(self, statement: str) -> str:
        """``statement`` (SQLite's spelling) in the server's dialect."""
        sql = statement.strip()
        sql = re.sub(r"^BEGIN IMMEDIATE$", "BEGIN", sql)
        sql = re.sub(r"\browid\b", "seq", sql)  # servers keep insertion order in "seq"
        m = _UPSERT.match(sql)
        if m is not None:
            verb, table, columns, rest = m.groups()
            if self.dialect == "mysql":
                sql = f"{'INSERT IGNORE' if verb.upper() == 'IGNORE' else 'REPLACE'} INTO "
                sql += f"{table}({columns}){rest}"
            else:
                sql = f"INSERT INTO {table}({columns}){rest} ON CONFLICT "
                keys = self._keys[table]
                others = [c.strip() for c in columns.split(",") if c.strip() not in keys]
                if verb.upper() == "IGNORE" or not others:
                    sql += "DO NOTHING"
                else:
                    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in others)
                    sql += f"({', '.join(keys)}) DO UPDATE SET {updates}"
        if self.dialect == "mysql":
            sql = sql.replace('"', "`")  # names; values are always '...' or parameters
        sql = sql.replace("%", "%%").replace("?", "%s")
        self._spelled[statement] = sql
        return sql

    # -- schema --------------------------------------------------------------------------

    def create(self, metadata: sa.MetaData) -> None:
        """Create the tables that are missing (several processes may do it at once)."""
        for table in metadata.sorted_tables:
            key = table.primary_key.columns.keys()
            unique = [
                c for c in table.constraints if isinstance(c, sa.UniqueConstraint) and c.columns
            ]
            # The key an upsert replaces on: the natural one where "seq" is the primary key.
            self._keys[table.name] = tuple(unique[0].columns.keys() if unique else key)
            ddl = CreateTable(table, if_not_exists=True).compile(dialect=self.engine.dialect)
            cursor = self._connect().cursor()
            try:
                cursor.execute(str(ddl))  # spelled for this dialect already: run as it is
            except self._gone as e:
                self._drop()
                raise DirectoryUnavailable(f"directory database {self.where}: {_reason(e)}") from e

    def has_table(self, name: str) -> bool:
        if self.dialect == "sqlite":
            q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            schema = "DATABASE()" if self.dialect == "mysql" else "current_schema()"
            q = "SELECT 1 FROM information_schema.tables "
            q += f"WHERE table_schema = {schema} AND table_name = ?"
        return self.execute(q, (name,)).fetchone() is not None


def _timeouts(dialect: str) -> dict[str, Any]:
    if dialect == "mysql":
        return {
            "connect_timeout": CONNECT_TIMEOUT,
            "read_timeout": READ_TIMEOUT,
            "write_timeout": READ_TIMEOUT,
            "charset": "utf8mb4",
        }
    return {"connect_timeout": CONNECT_TIMEOUT, "options": f"-c statement_timeout={READ_TIMEOUT}s"}


def _reason(error: BaseException) -> str:
    """A driver's error as one short line (PyMySQL's are tuples of code and text)."""
    args = getattr(error, "orig", error).args
    text = " ".join(str(a) for a in args) if args else type(error).__name__
    return text.splitlines()[0][:200] if text else type(error).__name__
