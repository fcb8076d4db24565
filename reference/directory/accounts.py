"""Domains and accounts: who receives mail, with which password, quota and state."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from reference.directory.passwords import DUMMY_HASH, hash_password, verify_password
from reference.directory.schema import Database, DirectoryError, normalize_domain, split_address
from reference.directory.sql import ConstraintError


@dataclass(frozen=True)
class Account:
    address: str
    domain: str
    enabled: bool


class Accounts(Database):
    """Domains and accounts. Thread-safe; async wrappers keep hashing off the event loop."""

    # -- domains
    def add_domain(self, name: str) -> str:
        domain = normalize_domain(name)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO domains(name) VALUES (?)", (domain,))
        return domain

    def own_domain(self, name: str) -> str:
        """``name`` normalised, if it is one of our domains (not an alias domain)."""
        domain = normalize_domain(name)
        with self._lock:
            row = self._db.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone()
        if row is None:
            raise DirectoryError(
                "domain %(domain)s is not ours: add it with 'mailspec domain add'", domain=domain
            )
        return domain

    def domains(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM domains ORDER BY name")]

    def is_local_domain(self, name: str) -> bool:
        """Whether mail for ``name`` is ours: one of our domains, or an alias domain."""
        try:
            domain = normalize_domain(name)
        except DirectoryError:
            return False
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM domains WHERE name = ? UNION ALL "
                "SELECT 1 FROM alias_domains WHERE name = ?",
                (domain, domain),
            ).fetchone()
        return row is not None

    # -- accounts
    def add_user(self, address: str, password: str) -> Account:
        local, domain = split_address(address)
        if not password:
            raise DirectoryError("a password must not be empty")
        self.own_domain(domain)
        canonical = f"{local}@{domain}"
        hashed = hash_password(password)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO accounts(address, domain, password) VALUES (?, ?, ?)",
                    (canonical, domain, hashed),
                )
            except ConstraintError:
                raise DirectoryError("%(address)s exists already", address=canonical) from None
        return Account(canonical, domain, True)

    def set_password(self, address: str, password: str) -> None:
        local, domain = split_address(address)
        with self._lock:
            cur = self._db.execute(
                "UPDATE accounts SET password = ? WHERE address = ?",
                (hash_password(password), f"{local}@{domain}"),
            )
        if cur.rowcount == 0:
            raise DirectoryError("no such account: %(address)s", address=address)

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
        ok = verify_password(password, stored or DUMMY_HASH)
        return canonical if ok and stored is not None else None

    def password_stamp(self, address: str) -> str | None:
        """A short digest of the account's stored password hash, None if it cannot log in:
        a browser session keeps it, so a password change (from anywhere) or disabling the
        account ends the sessions made before it."""
        with self._lock:
            row = self._db.execute(
                "SELECT password FROM accounts WHERE address = ? AND enabled = 1",
                (address.strip().lower(),),
            ).fetchone()
        return hashlib.sha256(row[0].encode()).hexdigest()[:32] if row else None

    async def authenticate(self, username: str, password: str, *, client: str = "") -> str | None:
        """The Authenticator protocol (``client`` unused here: the limits are the login
        paths' business): scrypt runs in a thread, not on the event loop."""
        return await asyncio.to_thread(self.check_password, username, password)

    def set_enabled(self, address: str, enabled: bool) -> str:
        """Disable an account (mail to it gets 550 5.2.1, its logins fail) or enable it."""
        account = self.lookup(address)
        if account is None:
            raise DirectoryError("no such account: %(address)s", address=address)
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
            raise DirectoryError("no such account: %(address)s", address=address)
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
