"""The directory's tables and connection, and the checks every name passes before SQL."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from reference.refusal import Refusal
from reference.sqlite import connect as connect_sqlite

# The schema version (PRAGMA user_version) this code writes; older ones are migrated at open.
VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS domains (
    name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name),
    password TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1
);
-- Spam thresholds of a domain or an account (NULL: inherited from the domain, then config).
CREATE TABLE IF NOT EXISTS spam_settings (
    scope TEXT PRIMARY KEY,
    reject_score REAL,
    junk_score REAL
);
-- An account's allowed and blocked senders: a full address or @domain, one kind each.
CREATE TABLE IF NOT EXISTS spam_lists (
    address TEXT NOT NULL REFERENCES accounts(address),
    kind TEXT NOT NULL CHECK (kind IN ('allow', 'block')),
    pattern TEXT NOT NULL,
    PRIMARY KEY (address, pattern)
);
-- Aliases, one row per target: mail to an alias goes to every target (accounts, other
-- aliases, or addresses elsewhere), and a local target's user may send from it (MAIL FROM
-- and From:). "@domain" is the domain's catch-all. (Schema 1; schema 0 had one account per
-- alias in a table "aliases", moved here when an old database is opened.)
CREATE TABLE IF NOT EXISTS alias_targets (
    address TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (address, target)
);
-- Alias domains: mail to any address of "name" is delivered as if sent to "target".
CREATE TABLE IF NOT EXISTS alias_domains (
    name TEXT PRIMARY KEY,
    target TEXT NOT NULL REFERENCES domains(name)
);
-- An account's forwarding: each row one target; keep = 1 also files a copy in its mailbox.
CREATE TABLE IF NOT EXISTS forwards (
    address TEXT NOT NULL REFERENCES accounts(address),
    target TEXT NOT NULL,
    keep INTEGER NOT NULL,
    PRIMARY KEY (address, target)
);
-- An account's own mailbox quota (NULL or absent: the platform's mailbox.quota_*).
CREATE TABLE IF NOT EXISTS quotas (
    address TEXT PRIMARY KEY REFERENCES accounts(address),
    bytes INTEGER,
    messages INTEGER
);
-- Accounts that send newsletters: all their mail takes the queue's bulk lane.
CREATE TABLE IF NOT EXISTS bulk_senders (
    address TEXT PRIMARY KEY REFERENCES accounts(address)
);
-- Access lists (Postfix access maps): scope '' is the platform's, else a domain's; kind is
-- sender, client, helo or recipient; action reject, accept or restrict, with its text.
CREATE TABLE IF NOT EXISTS access_rules (
    scope TEXT NOT NULL,
    kind TEXT NOT NULL,
    pattern TEXT NOT NULL,
    action TEXT NOT NULL,
    text TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (scope, kind, pattern)
);
-- Classes of service: NULL settings are the platform's; the flags allow (1) or refuse (0).
CREATE TABLE IF NOT EXISTS classes_of_service (
    name TEXT PRIMARY KEY,
    quota_bytes INTEGER,
    quota_messages INTEGER,
    rate_recipients TEXT,
    rate_messages TEXT,
    rate_bytes TEXT,
    max_message_size INTEGER,
    forward_remote INTEGER NOT NULL DEFAULT 1,
    lists INTEGER NOT NULL DEFAULT 1,
    external INTEGER NOT NULL DEFAULT 1
);
-- Which class an account (its address) or a domain (its name) has.
CREATE TABLE IF NOT EXISTS cos_assignments (
    scope TEXT PRIMARY KEY,
    cos TEXT NOT NULL REFERENCES classes_of_service(name)
);
"""

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
    """The directory's SQL connection and the lock every statement runs under."""

    def __init__(self, path: Path, *, delimiter: str = "+") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # RFC 5233: "user+detail" is delivered as "user" when no address "user+detail" exists
        # (``addresses.delimiter``; empty: no subaddressing).
        self.delimiter = delimiter
        self._lock = threading.Lock()
        self._db = connect_sqlite(path)
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._migrate()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction (committed, or rolled back on error)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        """Bring a database an older version wrote up to :data:`VERSION` (several processes
        may open it at once: the first to take the write lock does it, the others see it done)."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] >= VERSION:
            return
        with self.transaction() as db:
            if db.execute("PRAGMA user_version").fetchone()[0] < 1:
                old = db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aliases'"
                ).fetchone()
                if old:
                    # Schema 0: one account per alias, a foreign key to accounts (which a
                    # remote target cannot satisfy).
                    db.execute(
                        "INSERT OR IGNORE INTO alias_targets(address, target) "
                        "SELECT address, target FROM aliases"
                    )
                    db.execute("DROP TABLE aliases")
            db.execute(f"PRAGMA user_version = {VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()
