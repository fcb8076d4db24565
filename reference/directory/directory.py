"""The directory: domains and accounts in SQL (SQLite under data_dir by default)."""

from __future__ import annotations

from reference.directory.accounts import Account
from reference.directory.lanes import BulkSenders
from reference.directory.lists import MailingLists
from reference.directory.schema import DirectoryError, normalize_domain
from reference.directory.spam import SpamPreferences
from reference.directory.tokens import ApiTokens


class Directory(MailingLists, SpamPreferences, BulkSenders, ApiTokens):
    """Domains, accounts, aliases, distribution lists, archive rules, quotas, spam settings,
    sender lists, bulk senders and API tokens, in one SQL database. Thread-safe; async
    wrappers keep hashing off the event loop."""

    def delete_user(self, address: str) -> Account:
        """Remove an account and everything the directory keeps for it; its mail is the
        caller's business (``reference.delivery.retire`` removes or archives it)."""
        account = self.lookup(address)
        if account is None:
            raise DirectoryError(f"no such account: {address}")
        a = account.address
        owned = [m.address for m in self.mailing_lists() if m.owner == a]
        if owned:
            raise DirectoryError(f"{a} owns the list {', '.join(owned)}: delete it first")
        archived = [r.scope for r in self.archive_rules() if r.archive == a]
        if archived:
            raise DirectoryError(f"{a} is the archive of {', '.join(archived)}: clear that first")
        with self.transaction() as db:
            for table, column in (
                ("list_members", "member"),
                ("archive_rules", "scope"),
                ("forwards", "address"),
                ("alias_targets", "target"),
                ("quotas", "address"),
                ("spam_lists", "address"),
                ("spam_settings", "scope"),
                ("bulk_senders", "address"),
                ("accounts", "address"),
            ):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (a,))
        return account

    def delete_domain(self, name: str) -> str:
        """Remove a domain without accounts (delete those first), or an alias domain."""
        domain = normalize_domain(name)
        with self._lock:
            cur = self._db.execute("DELETE FROM alias_domains WHERE name = ?", (domain,))
        if cur.rowcount:
            return domain
        self.own_domain(domain)
        aliases = [d for d, target in self.alias_domains() if target == domain]
        if aliases:
            raise DirectoryError(f"{', '.join(aliases)} is an alias of {domain}: delete it first")
        if self.users(domain):
            raise DirectoryError(f"{domain} still has accounts: delete them first")
        if self.mailing_lists(domain):
            raise DirectoryError(f"{domain} still has lists: delete them first")
        with self.transaction() as db:
            db.execute("DELETE FROM alias_targets WHERE address LIKE ?", ("%@" + domain,))
            db.execute("DELETE FROM archive_rules WHERE scope = ?", (domain,))
            db.execute("DELETE FROM spam_settings WHERE scope = ?", (domain,))
            db.execute("DELETE FROM domains WHERE name = ?", (domain,))
        return domain
