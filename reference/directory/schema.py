"""The directory's tables and connection, and the checks every name passes before SQL."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from reference.sqlite import connect as connect_sqlite

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
-- Other addresses of an account: mail to an alias is delivered to its target, and the
-- target's user may send from it (MAIL FROM and From:).
CREATE TABLE IF NOT EXISTS aliases (
    address TEXT PRIMARY KEY,
    target TEXT NOT NULL REFERENCES accounts(address)
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
"""

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
# Local parts we create: dot-atom text (RFC 5322 3.2.3), which also keeps paths safe.
_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


class DirectoryError(ValueError):
    """A directory change was refused; the message says why."""


def normalize_domain(name: str) -> str:
    domain = name.strip().rstrip(".").lower()
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise DirectoryError(f"not a domain name: {name!r}") from None
    if not _DOMAIN.match(domain):
        raise DirectoryError(f"not a domain name: {name!r}")
    return domain


def split_address(address: str) -> tuple[str, str]:
    """'Alice@Example.TEST' -> ('alice', 'example.test'), validated."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local:
        raise DirectoryError(f"not an address: {address!r}")
    local = local.lower()
    if not _LOCAL.match(local) or len(local) > 64:
        raise DirectoryError(f"not a valid local part: {local!r}")
    return local, normalize_domain(domain)


class Database:
    """The directory's SQL connection and the lock every statement runs under."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = connect_sqlite(path)
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()
