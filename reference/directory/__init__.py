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

from reference.sqlite import connect as connect_sqlite

__all__ = [
    "Account",
    "Directory",
    "DirectoryError",
    "SpamSettings",
    "hash_password",
    "normalize_sender_pattern",
    "verify_password",
]

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
class SpamSettings:
    """A domain's or an account's spam thresholds; None: inherited."""

    scope: str
    reject_score: float | None = None
    junk_score: float | None = None


def normalize_sender_pattern(pattern: str) -> str:
    """A sender list entry: a full address (``spam@bad.example``) or ``@domain``."""
    text = pattern.strip()
    if text.startswith("@"):
        return "@" + normalize_domain(text[1:])
    local, domain = split_address(text)
    return f"{local}@{domain}"


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
        self._db = connect_sqlite(path)
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

    # -- spam settings and sender lists (read by the spam checks on every message)
    def _spam_scope(self, scope: str) -> str:
        """An existing account's address, or a local domain."""
        if "@" in scope:
            account = self.lookup(scope)
            if account is None:
                raise DirectoryError(f"no such account: {scope}")
            return account.address
        domain = normalize_domain(scope)
        if not self.is_local_domain(domain):
            raise DirectoryError(f"domain {domain} is not ours")
        return domain

    def set_spam_settings(
        self, scope: str, *, reject_score: float | None = None, junk_score: float | None = None
    ) -> SpamSettings:
        """Set a domain's or an account's thresholds; a value not given is kept."""
        for name, value in (("reject", reject_score), ("junk", junk_score)):
            if value is not None and not value > 0:
                raise DirectoryError(f"the {name} score must be more than 0")
        key = self._spam_scope(scope)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT reject_score, junk_score FROM spam_settings WHERE scope = ?", (key,)
                ).fetchone()
                reject = reject_score if reject_score is not None else (row[0] if row else None)
                junk = junk_score if junk_score is not None else (row[1] if row else None)
                if reject is not None and junk is not None and junk > reject:
                    raise DirectoryError(
                        f"the junk score ({junk:g}) must not be more than the reject score "
                        f"({reject:g})"
                    )
                self._db.execute(
                    "INSERT OR REPLACE INTO spam_settings(scope, reject_score, junk_score) "
                    "VALUES (?, ?, ?)",
                    (key, reject, junk),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return SpamSettings(key, reject, junk)

    def clear_spam_settings(self, scope: str) -> None:
        key = self._spam_scope(scope)
        with self._lock:
            self._db.execute("DELETE FROM spam_settings WHERE scope = ?", (key,))

    def spam_settings(self, *scopes: str) -> dict[str, SpamSettings]:
        """The settings rows of these scopes (addresses or domains) that have one."""
        keys = [s.strip().lower() for s in scopes if s]
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        with self._lock:
            rows = self._db.execute(
                f"SELECT scope, reject_score, junk_score FROM spam_settings "
                f"WHERE scope IN ({marks})",
                keys,
            ).fetchall()
        return {r[0]: SpamSettings(r[0], r[1], r[2]) for r in rows}

    def set_sender_list(self, address: str, kind: str, pattern: str) -> str:
        """Put ``pattern`` on ``address``'s allow or block list (off the other one)."""
        if kind not in ("allow", "block"):
            raise DirectoryError(f"a sender list is allow or block, not {kind!r}")
        entry = normalize_sender_pattern(pattern)
        account = self.lookup(address)
        if account is None:
            raise DirectoryError(f"no such account: {address}")
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO spam_lists(address, kind, pattern) VALUES (?, ?, ?)",
                (account.address, kind, entry),
            )
        return entry

    def remove_sender_list(self, address: str, pattern: str) -> bool:
        """Take ``pattern`` off ``address``'s lists; False if it was on none."""
        entry = normalize_sender_pattern(pattern)
        local, domain = split_address(address)
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM spam_lists WHERE address = ? AND pattern = ?",
                (f"{local}@{domain}", entry),
            )
        return cur.rowcount > 0

    def sender_lists(self, address: str) -> list[tuple[str, str]]:
        """(kind, pattern) entries of ``address``, allow first."""
        try:
            local, domain = split_address(address)
        except DirectoryError:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, pattern FROM spam_lists WHERE address = ? ORDER BY kind, pattern",
                (f"{local}@{domain}",),
            ).fetchall()
        return [(str(k), str(p)) for k, p in rows]

    def sender_listed(self, address: str, senders: list[str]) -> tuple[str, str] | None:
        """How ``address`` lists any of ``senders``: (kind, pattern) of the most specific
        entry (a full address before @domain; block before allow at the same level)."""
        candidates: list[str] = []
        for sender in senders:
            try:
                local, domain = split_address(sender)
            except DirectoryError:
                continue
            candidates += [f"{local}@{domain}", f"@{domain}"]
        if not candidates:
            return None
        marks = ",".join("?" * len(candidates))
        with self._lock:
            rows = self._db.execute(
                f"SELECT kind, pattern FROM spam_lists WHERE address = ? AND pattern IN ({marks})",
                [address, *candidates],
            ).fetchall()
        if not rows:
            return None
        # Most specific first: a full address, then @domain; at one level, block wins.
        kind, pattern = min(
            ((str(k), str(p)) for k, p in rows),
            key=lambda e: (e[1].startswith("@"), e[0] != "block"),
        )
        return kind, pattern

    # -- aliases (other addresses of an account) and bulk senders
    def add_alias(self, alias: str, target: str) -> tuple[str, str]:
        """Make ``alias`` (in a local domain) another address of the account ``target``."""
        local, domain = split_address(alias)
        address = f"{local}@{domain}"
        if not self.is_local_domain(domain):
            raise DirectoryError(f"domain {domain} is not ours: add it with 'mailspec domain add'")
        if self.lookup(address) is not None:
            raise DirectoryError(f"{address} is an account already")
        account = self.lookup(target)
        if account is None:
            raise DirectoryError(f"no such account: {target}")
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO aliases(address, target) VALUES (?, ?)",
                    (address, account.address),
                )
            except sqlite3.IntegrityError:
                raise DirectoryError(f"alias {address} exists already") from None
        return address, account.address

    def remove_alias(self, alias: str) -> bool:
        """Remove an alias; False if there was none."""
        local, domain = split_address(alias)
        with self._lock:
            cur = self._db.execute("DELETE FROM aliases WHERE address = ?", (f"{local}@{domain}",))
        return cur.rowcount > 0

    def aliases(
        self, domain: str | None = None, target: str | None = None
    ) -> list[tuple[str, str]]:
        """(alias, target) pairs, of one domain or one account if given."""
        q = "SELECT address, target FROM aliases"
        args: list[str] = []
        if domain:
            q += " WHERE address LIKE ?"
            args.append("%@" + normalize_domain(domain))
        elif target:
            local, dom = split_address(target)
            q += " WHERE target = ?"
            args.append(f"{local}@{dom}")
        with self._lock:
            rows = self._db.execute(q + " ORDER BY address", args).fetchall()
        return [(str(a), str(t)) for a, t in rows]

    def resolve(self, address: str) -> Account | None:
        """The account that receives mail for ``address``: its own, an alias's target, or
        for postmaster without a mailbox the domain's administrator (RFC 5321 4.5.1)."""
        account = self.lookup(address)
        if account is not None:
            return account
        try:
            local, domain = split_address(address)
        except DirectoryError:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT target FROM aliases WHERE address = ?", (f"{local}@{domain}",)
            ).fetchone()
        if row:
            return self.lookup(str(row[0]))
        return self.postmaster(domain) if local == "postmaster" else None

    def owns(self, user: str, address: str) -> bool:
        """Whether the account ``user`` may send as ``address`` (its own, or an alias)."""
        try:
            local, domain = split_address(address)
        except DirectoryError:
            return False
        canonical = f"{local}@{domain}"
        if canonical == user.lower():
            return True
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM aliases WHERE address = ? AND target = ?",
                (canonical, user.lower()),
            ).fetchone()
        return row is not None

    def set_enabled(self, address: str, enabled: bool) -> str:
        """Disable an account (mail to it gets 550 5.2.1, its logins fail) or enable it."""
        account = self.lookup(address)
        if account is None:
            raise DirectoryError(f"no such account: {address}")
        with self._lock:
            self._db.execute(
                "UPDATE accounts SET enabled = ? WHERE address = ?",
                (1 if enabled else 0, account.address),
            )
        return account.address

    def set_quota(
        self, address: str, *, bytes: int | None = None, messages: int | None = None
    ) -> str:
        """An account's own quota (None: the platform default; 0: unlimited)."""
        account = self.lookup(address)
        if account is None:
            raise DirectoryError(f"no such account: {address}")
        for value in (bytes, messages):
            if value is not None and value < 0:
                raise DirectoryError("a quota is a number of bytes or messages, 0 or more")
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO quotas(address, bytes, messages) VALUES (?, ?, ?)",
                (account.address, bytes, messages),
            )
        return account.address

    def quota(self, address: str) -> tuple[int | None, int | None]:
        """(bytes, messages) set for the account; None where the default applies."""
        with self._lock:
            row = self._db.execute(
                "SELECT bytes, messages FROM quotas WHERE address = ?", (address.lower(),)
            ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def set_bulk_sender(self, address: str, bulk: bool = True) -> str:
        """Mark an account as a sender of newsletters (its mail takes the bulk lane)."""
        account = self.lookup(address)
        if account is None:
            raise DirectoryError(f"no such account: {address}")
        with self._lock:
            if bulk:
                self._db.execute(
                    "INSERT OR IGNORE INTO bulk_senders(address) VALUES (?)", (account.address,)
                )
            else:
                self._db.execute("DELETE FROM bulk_senders WHERE address = ?", (account.address,))
        return account.address

    def is_bulk_sender(self, address: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM bulk_senders WHERE address = ?", (address.lower(),)
            ).fetchone()
        return row is not None
