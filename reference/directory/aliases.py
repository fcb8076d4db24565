"""Aliases: other addresses of an account, for delivery and for sending."""

from __future__ import annotations

import sqlite3

from reference.directory.accounts import Account, Accounts
from reference.directory.schema import DirectoryError, normalize_domain, split_address


class Aliases(Accounts):
    """Accounts with their other addresses: an alias receives for, and sends as, its target."""

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
