"""Spam settings of a domain or an account, and each account's allowed and blocked senders."""

from __future__ import annotations

from dataclasses import dataclass

from reference.directory.accounts import Accounts
from reference.directory.schema import DirectoryError, normalize_domain, split_address


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


class SpamPreferences(Accounts):
    """Accounts with their spam thresholds and sender lists (read by the spam checks on every
    message)."""

    def _spam_scope(self, scope: str) -> str:
        """An existing account's address, or a local domain."""
        if "@" in scope:
            account = self.lookup(scope)
            if account is None:
                raise DirectoryError("no such account: %(address)s", address=scope)
            return account.address
        domain = normalize_domain(scope)
        if not self.is_local_domain(domain):
            raise DirectoryError("domain %(domain)s is not ours", domain=domain)
        return domain

    def set_spam_settings(
        self,
        scope: str,
        *,
        reject_score: float | None = None,
        junk_score: float | None = None,
        keep: bool = True,
    ) -> SpamSettings:
        """Set a domain's or an account's thresholds; a value not given is kept (or, without
        ``keep``, inherited again)."""
        for name, value in (("reject", reject_score), ("junk", junk_score)):
            if value is not None and not value > 0:
                raise DirectoryError("the %(name)s score must be more than 0", name=name)
        key = self._spam_scope(scope)
        with self.transaction() as db:
            row = db.execute(
                "SELECT reject_score, junk_score FROM spam_settings WHERE scope = ?", (key,)
            ).fetchone()
            old = row if row and keep else (None, None)
            reject = reject_score if reject_score is not None else old[0]
            junk = junk_score if junk_score is not None else old[1]
            if reject is not None and junk is not None and junk > reject:
                raise DirectoryError(
                    "the junk score (%(junk)g) must not be more than the reject score (%(reject)g)",
                    junk=junk,
                    reject=reject,
                )
            db.execute(
                "INSERT OR REPLACE INTO spam_settings(scope, reject_score, junk_score) "
                "VALUES (?, ?, ?)",
                (key, reject, junk),
            )
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
            raise DirectoryError("a sender list is allow or block, not %(kind)r", kind=kind)
        entry = normalize_sender_pattern(pattern)
        account = self.lookup(address)
        if account is None:
            raise DirectoryError("no such account: %(address)s", address=address)
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
