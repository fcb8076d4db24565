"""The directory: domains and accounts in SQL (SQLite under data_dir by default)."""

from __future__ import annotations

from collections.abc import Sequence

from reference.directory.access import AccessRules
from reference.directory.accounts import Account
from reference.directory.cos import ClassesOfService, ClassOfService
from reference.directory.lanes import BulkSenders
from reference.directory.lists import MailingList, MailingLists
from reference.directory.schema import DirectoryError, normalize_domain
from reference.directory.spam import SpamPreferences
from reference.directory.tokens import ApiTokens


class Directory(
    MailingLists, SpamPreferences, BulkSenders, ApiTokens, AccessRules, ClassesOfService
):
    """Domains, accounts, aliases, distribution lists, archive rules, quotas, spam settings,
    sender lists, bulk senders, API tokens, access lists and classes of service, in one SQL
    database. Thread-safe; async wrappers keep hashing off the event loop."""

    def forbids(self, address: str, permission: str) -> ClassOfService | None:
        """The class of service that applies to ``address`` (an account, or an address or
        "@domain" of one of our domains: its domain's class), if it forbids ``permission``
        ("forward_remote", "lists" or "external"); None when it is allowed."""
        cos, _ = self.effective_cos(address)
        return cos if cos is not None and not getattr(cos, permission) else None

    def _refuse_elsewhere(self, scope: str, targets: Sequence[str]) -> None:
        elsewhere = [t for t in targets if not self.is_local_domain(t.rpartition("@")[2])]
        cos = self.forbids(scope, "forward_remote") if elsewhere else None
        if cos is not None:
            raise DirectoryError(
                f"class of service {cos.name} does not forward elsewhere ({', '.join(elsewhere)})"
            )

    def set_forward(self, address: str, targets: list[str], *, keep: bool) -> list[str]:
        """Forwarding, if the account's class of service allows it to addresses elsewhere."""
        self._refuse_elsewhere(address, targets)
        return super().set_forward(address, targets, keep=keep)

    def add_alias(self, alias: str, *targets: str) -> tuple[str, list[str]]:
        """An alias (or catch-all) with targets elsewhere only if its domain's class of
        service forwards elsewhere."""
        self._refuse_elsewhere(alias.strip(), targets)
        return super().add_alias(alias, *targets)

    def create_list(
        self, address: str, *, owner: str, name: str = "", policy: str = "public"
    ) -> MailingList:
        """A list runs under its owner's class of service, which must allow lists."""
        cos = self.forbids(owner, "lists")
        if cos is not None:
            raise DirectoryError(f"class of service {cos.name} of {owner} runs no lists")
        return super().create_list(address, owner=owner, name=name, policy=policy)

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
                ("cos_assignments", "scope"),
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
            db.execute("DELETE FROM access_rules WHERE scope = ?", (domain,))
            db.execute("DELETE FROM cos_assignments WHERE scope = ?", (domain,))
            db.execute("DELETE FROM domains WHERE name = ?", (domain,))
        return domain
