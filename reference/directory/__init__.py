"""The directory: domains and accounts in SQL (SQLite under data_dir by default)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Account", "Directory", "DirectoryError", "hash_password", "verify_password"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS domains (
    name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name),
    password TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1
);
"""

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
# Local parts we create: dot-atom text (RFC 5322 3.2.3), which also keeps paths safe.
_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")

# scrypt parameters: n=2**14, r=8, p=1 (about 16 MiB and ~50 ms per hash on this class of
# machine), the interactive-login figures recommended in RFC 7914's own examples.
_N, _R, _P = 2**14, 8, 1


class DirectoryError(ValueError):
    """A directory change was refused; the message says why."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=2**26,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# Hashing a password that does not exist keeps a wrong user as slow as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_hex(8))


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


@dataclass(frozen=True)
class Account:
    address: str
    domain: str
    enabled: bool


class Directory:
    """Domains and accounts. Thread-safe; async wrappers keep hashing off the event loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- domains
    def add_domain(self, name: str) -> str:
        domain = normalize_domain(name)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO domains(name) VALUES (?)", (domain,))
        return domain

    def domains(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM domains ORDER BY name")]

    def is_local_domain(self, name: str) -> bool:
        try:
            domain = normalize_domain(name)
        except DirectoryError:
            return False
        with self._lock:
            row = self._db.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone()
        return row is not None

    # -- accounts
    def add_user(self, address: str, password: str) -> Account:
        local, domain = split_address(address)
        if not password:
            raise DirectoryError("a password must not be empty")
        if not self.is_local_domain(domain):
            raise DirectoryError(f"domain {domain} is not ours: add it with 'mailspec domain add'")
        canonical = f"{local}@{domain}"
        hashed = hash_password(password)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO accounts(address, domain, password) VALUES (?, ?, ?)",
                    (canonical, domain, hashed),
                )
            except sqlite3.IntegrityError:
                raise DirectoryError(f"{canonical} exists already") from None
        return Account(canonical, domain, True)

    def set_password(self, address: str, password: str) -> None:
        local, domain = split_address(address)
        with self._lock:
            cur = self._db.execute(
                "UPDATE accounts SET password = ? WHERE address = ?",
                (hash_password(password), f"{local}@{domain}"),
            )
        if cur.rowcount == 0:
            raise DirectoryError(f"no such account: {address}")

    def users(self, domain: str | None = None) -> list[Account]:
        q = "SELECT address, domain, enabled FROM accounts"
        args: tuple[str, ...] = ()
        if domain:
            q += " WHERE domain = ?"
            args = (normalize_domain(domain),)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY domain, address", args).fetchall()
        return [Account(a, d, bool(e)) for a, d, e in rows]

    def lookup(self, address: str) -> Account | None:
        """The account that receives mail for ``address``, if any."""
        try:
            local, domain = split_address(address)
        except DirectoryError:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT address, domain, enabled FROM accounts WHERE address = ?",
                (f"{local}@{domain}",),
            ).fetchone()
        return Account(row[0], row[1], bool(row[2])) if row else None

    def postmaster(self, domain: str) -> Account | None:
        """Who reads postmaster@domain: that account, else the domain's first account.

        RFC 5321 4.5.1 requires postmaster to be accepted; hosting platforms route it to
        the domain's administrator (its first account) when no such mailbox exists.
        """
        d = normalize_domain(domain)
        found = self.lookup(f"postmaster@{d}")
        if found:
            return found
        with self._lock:
            row = self._db.execute(
                "SELECT address, domain, enabled FROM accounts WHERE domain = ? ORDER BY rowid",
                (d,),
            ).fetchone()
        return Account(row[0], row[1], bool(row[2])) if row else None

    def check_password(self, username: str, password: str) -> str | None:
        """The canonical address if ``password`` is right for an enabled account."""
        stored: str | None = None
        canonical: str | None = None
        try:
            local, domain = split_address(username)
            canonical = f"{local}@{domain}"
            with self._lock:
                row = self._db.execute(
                    "SELECT password FROM accounts WHERE address = ? AND enabled = 1",
                    (canonical,),
                ).fetchone()
            stored = row[0] if row else None
        except DirectoryError:
            pass
        ok = verify_password(password, stored or _DUMMY_HASH)
        return canonical if ok and stored is not None else None

    async def authenticate(self, username: str, password: str) -> str | None:
        """The Authenticator protocol: scrypt runs in a thread, not on the event loop."""
        return await asyncio.to_thread(self.check_password, username, password)
