"""The directory: domains and accounts in SQL (SQLite under data_dir by default)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from reference.directory.access import AccessRules
from reference.directory.accounts import Account
from reference.directory.admins import PanelAdmins
from reference.directory.cos import ClassesOfService, ClassOfService
from reference.directory.lanes import BulkSenders
from reference.directory.lists import MailingList, MailingLists
from reference.directory.schema import DirectoryError, normalize_domain
from reference.directory.spam import SpamPreferences
from reference.directory.tokens import ApiTokens


class Directory(
    MailingLists,
    SpamPreferences,
    BulkSenders,
    ApiTokens,
    PanelAdmins,
    AccessRules,
    ClassesOfService,
):
    """Domains, accounts, aliases, distribution lists, archive rules, quotas, spam settings,
    sender lists, bulk senders, API tokens, panel administrators, access lists and classes of
    service, in one SQL database. Thread-safe; async wrappers keep hashing off the event loop."""

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
                "class of service %(cos)s does not forward elsewhere (%(targets)s)",
                cos=cos.name,
                targets=", ".join(elsewhere),
            )

    def set_forward(self, address: str, targets: list[str], *, keep: bool) -> list[str]:
        """Forwarding, if the account's class of service allows it to addresses elsewhere."""
        self._refuse_elsewhere(address, targets)
        return super().set_forward(address, targets, keep=keep)

    def check_deletable(self, address: str, leaving: Collection[str] = ()) -> None:
        """Raise what keeps the account ``address`` from being deleted (``leaving``: the
        accounts and domain deleted with it, whose archive it may be)."""
        owned = [m.address for m in self.mailing_lists() if m.owner == address]
        if owned:
            raise DirectoryError(
                "%(address)s owns the list %(lists)s: delete it first",
                address=address,
                lists=", ".join(owned),
            )
        archived = [r.scope for r in self.archive_rules() if r.archive == address]
        if any(scope not in leaving for scope in archived):
            raise DirectoryError(
                "%(address)s is the archive of %(accounts)s: clear that first",
                address=address,
                accounts=", ".join(archived),
            )

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
            raise DirectoryError(
                "class of service %(cos)s of %(owner)s runs no lists", cos=cos.name, owner=owner
            )
        return super().create_list(address, owner=owner, name=name, policy=policy)

    def delete_user(self, address: str) -> Account:
        """Remove an account and everything the directory keeps for it; its mail is the
        caller's business (``reference.delivery.retire`` removes or archives it)."""
        account = self.lookup(address)
        if account is None:
            raise DirectoryError("no such account: %(address)s", address=address)
        a = account.address
        self.check_deletable(a)
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

    def check_domain_deletable(self, domain: str) -> None:
        """Raise what keeps one of our domains from being deleted, its accounts aside: the
        alias domains delivering as it, and its lists."""
        aliases = [d for d, target in self.alias_domains() if target == domain]
        if aliases:
            raise DirectoryError(
                "%(aliases)s is an alias of %(domain)s: delete it first",
                aliases=", ".join(aliases),
                domain=domain,
            )
        if self.mailing_lists(domain):
            raise DirectoryError("%(domain)s still has lists: delete them first", domain=domain)

    def delete_domain(self, name: str) -> str:
        """Remove a domain without accounts (delete those first), or an alias domain."""
        domain = normalize_domain(name)
        with self._lock:
            cur = self._db.execute("DELETE FROM alias_domains WHERE name = ?", (domain,))
        if cur.rowcount:
            return domain
        self.own_domain(domain)
        self.check_domain_deletable(domain)
        if self.users(domain):
            raise DirectoryError("%(domain)s still has accounts: delete them first", domain=domain)
        with self.transaction() as db:
            db.execute("DELETE FROM alias_targets WHERE address LIKE ?", ("%@" + domain,))
            db.execute("DELETE FROM archive_rules WHERE scope = ?", (domain,))
            db.execute("DELETE FROM spam_settings WHERE scope = ?", (domain,))
            db.execute("DELETE FROM access_rules WHERE scope = ?", (domain,))
            db.execute("DELETE FROM cos_assignments WHERE scope = ?", (domain,))
            db.execute("DELETE FROM domains WHERE name = ?", (domain,))
        return domain
