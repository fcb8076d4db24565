"""The directory's tables and connection, and the checks every name passes before SQL."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from reference.directory.sql import DirectoryUnavailable, Sql
from reference.directory.tables import tables
from reference.refusal import Refusal

# The schema version this code writes (SQLite: PRAGMA user_version; a server: the table
# directory_schema); older ones are migrated at open.
VERSION = 1

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
# Local parts we create: dot-atom text (RFC 5322 3.2.3), which also keeps paths safe.
_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


class DirectoryError(Refusal):
    """A directory change was refused; the message (a template with named values) says why."""


def normalize_domain(name: str) -> str:
    domain = name.strip().rstrip(".").lower()
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise DirectoryError("not a domain name: %(name)r", name=name) from None
    if not _DOMAIN.match(domain):
        raise DirectoryError("not a domain name: %(name)r", name=name)
    return domain


def split_address(address: str) -> tuple[str, str]:
    """'Alice@Example.TEST' -> ('alice', 'example.test'), validated."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local:
        raise DirectoryError("not an address: %(address)r", address=address)
    local = local.lower()
    if not _LOCAL.match(local) or len(local) > 64:
        raise DirectoryError("not a valid local part: %(local)r", local=local)
    return local, normalize_domain(domain)


class Database:
    """The directory's SQL connection and the lock every statement runs under.

    ``target``: an SQLite file's path, or a URL (``sqlite:///path``, ``mysql://user:pw@host/db``
    for MariaDB, ``postgresql://…``): the same statements run on each.
    """

    def __init__(self, target: Path | str, *, delimiter: str = "+") -> None:
        # RFC 5233: "user+detail" is delivered as "user" when no address "user+detail" exists
        # (``addresses.delimiter``; empty: no subaddressing).
        self.delimiter = delimiter
        self._lock = threading.Lock()
        self._db = Sql(target)
        try:
            self._db.create(tables(server=self._db.server))
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    @property
    def where(self) -> str:
        """The database, for messages (a URL without its password)."""
        return self._db.where

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Sql]:
        """The connection inside one write transaction (committed, or rolled back on error)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(DirectoryUnavailable):  # the connection broke
                    self._db.execute("ROLLBACK")
                raise

    def _version(self) -> int:
        if self._db.server:
            row = self._db.execute("SELECT version FROM directory_schema WHERE id = 1").fetchone()
            return int(row[0]) if row else 0
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        """Bring a database an older version wrote up to :data:`VERSION` (several processes
        may open it at once: the first to take the write lock does it, the others see it done)."""
        if self._version() >= VERSION:
            return
        with self.transaction() as db:
            if db.server:
                # The row, locked for this transaction: another node waits here.
                db.execute("INSERT OR IGNORE INTO directory_schema(id, version) VALUES (1, 0)")
                db.execute("UPDATE directory_schema SET version = version WHERE id = 1")
            version = self._version()
            if version < 1 and self._db.has_table("aliases"):
                # Schema 0 (SQLite only): one account per alias, a foreign key to accounts
                # (which a remote target cannot satisfy).
                db.execute(
                    "INSERT OR IGNORE INTO alias_targets(address, target) "
                    "SELECT address, target FROM aliases"
                )
                db.execute("DROP TABLE aliases")
            if db.server:
                db.execute("UPDATE directory_schema SET version = ? WHERE id = 1", (VERSION,))
            else:
                db.execute(f"PRAGMA user_version = {VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()
