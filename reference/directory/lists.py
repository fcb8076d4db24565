"""Distribution lists (who may post, who receives, where bounces go) and archive-all rules."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from reference.directory.aliases import Aliases, Walk
from reference.directory.schema import DirectoryError, normalize_domain, split_address
from reference.directory.sql import ConstraintError

__all__ = ["LIST_POLICIES", "ArchiveRule", "ListRole", "MailingList", "MailingLists"]

# public: anyone may post; members: only its members (by envelope sender); local: only
# users who authenticated here (submission).
LIST_POLICIES = ("public", "members", "local")
# Bounces to the list's mail come back to "<list local part>-bounces@<domain>".
BOUNCE_SUFFIX = "-bounces"


@dataclass(frozen=True)
class MailingList:
    address: str
    name: str  # its display name ("Team"): in List-Id and in rewritten From fields
    policy: str
    owner: str  # the account that receives its bounces
    secret: str  # keys the one-click unsubscribe tokens (RFC 8058)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def bounce_address(self) -> str:
        local, _, domain = self.address.rpartition("@")
        return f"{local}{BOUNCE_SUFFIX}@{domain}"

    @property
    def list_id(self) -> str:
        """RFC 2919 2: the list-id, "list-label.domain" (the local part's dots kept)."""
        local, _, domain = self.address.rpartition("@")
        return f"{local}.{domain}"

    def unsubscribe_token(self, member: str) -> str:
        """What proves a one-click unsubscribe (RFC 8058) came from the member's copy."""
        return hmac.new(self.secret.encode(), member.lower().encode(), hashlib.sha256).hexdigest()[
            :32
        ]


@dataclass(frozen=True)
class ListRole:
    """An address that is a list's: its posting address, or its bounce address."""

    mailing_list: MailingList
    bounces: bool


@dataclass(frozen=True)
class ArchiveRule:
    scope: str  # an address, or a domain (every address of it)
    archive: str  # the archive account


def _address(text: str) -> str:
    local, domain = split_address(text)
    return f"{local}@{domain}"


class MailingLists(Aliases):
    """Distribution lists and archive-all rules, in the directory database."""

    # -- lists ---------------------------------------------------------------------------

    def create_list(
        self, address: str, *, owner: str, name: str = "", policy: str = "public"
    ) -> MailingList:
        local, domain = split_address(address)
        self.own_domain(domain)
        canonical = f"{local}@{domain}"
        if policy not in LIST_POLICIES:
            raise DirectoryError(f"a list policy is one of {', '.join(LIST_POLICIES)}")
        if self.expand(canonical).exists or self.expand(f"{local}{BOUNCE_SUFFIX}@{domain}").exists:
            raise DirectoryError(f"{canonical} receives mail already (an account or an alias)")
        account = self.lookup(owner)
        if account is None:
            raise DirectoryError(f"no such account: {owner}")
        made = MailingList(
            canonical, name.strip() or local, policy, account.address, secrets.token_hex(16)
        )
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO lists(address, name, policy, owner, secret) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (made.address, made.name, made.policy, made.owner, made.secret),
                )
            except ConstraintError:
                raise DirectoryError(f"list {canonical} exists already") from None
        return made

    def delete_list(self, address: str) -> bool:
        with self.transaction() as db:
            canonical = _address(address)
            db.execute("DELETE FROM list_members WHERE list = ?", (canonical,))
            cur = db.execute("DELETE FROM lists WHERE address = ?", (canonical,))
        return cur.rowcount > 0

    def set_list_policy(self, address: str, policy: str) -> MailingList:
        if policy not in LIST_POLICIES:
            raise DirectoryError(f"a list policy is one of {', '.join(LIST_POLICIES)}")
        found = self._require_list(address)
        with self._lock:
            self._db.execute(
                "UPDATE lists SET policy = ? WHERE address = ?", (policy, found.address)
            )
        return self._require_list(found.address)

    def mailing_list(self, address: str) -> MailingList | None:
        try:
            canonical = _address(address)
        except DirectoryError:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT address, name, policy, owner, secret FROM lists WHERE address = ?",
                (canonical,),
            ).fetchone()
        return MailingList(*map(str, row)) if row else None

    def _require_list(self, address: str) -> MailingList:
        found = self.mailing_list(address)
        if found is None:
            raise DirectoryError(f"no such list: {address}")
        return found

    def mailing_lists(self, domain: str | None = None) -> list[MailingList]:
        q = "SELECT address, name, policy, owner, secret FROM lists"
        args: list[str] = []
        if domain:
            q += " WHERE address LIKE ?"
            args.append("%@" + normalize_domain(domain))
        with self._lock:
            rows = self._db.execute(q + " ORDER BY address", args).fetchall()
        return [MailingList(*map(str, r)) for r in rows]

    def list_role(self, address: str) -> ListRole | None:
        """The list ``address`` posts to, or whose bounces it receives (None: neither)."""
        found = self.mailing_list(address)
        if found is not None:
            return ListRole(found, bounces=False)
        local, _, domain = address.rpartition("@")
        if local.lower().endswith(BOUNCE_SUFFIX):
            found = self.mailing_list(f"{local[: -len(BOUNCE_SUFFIX)]}@{domain}")
            if found is not None:
                return ListRole(found, bounces=True)
        return None

    def add_members(self, address: str, *members: str) -> list[str]:
        """Add members: accounts, aliases or lists here, or addresses elsewhere."""
        found = self._require_list(address)
        if not members:
            raise DirectoryError("name at least one member")
        chosen = []
        for member in members:
            canonical = _address(member)
            if canonical in (found.address, found.bounce_address):
                raise DirectoryError(f"{found.address} cannot be a member of itself")
            local_domain = self.is_local_domain(canonical.rpartition("@")[2])
            if local_domain and not self.expand(canonical).exists:
                raise DirectoryError(f"no such account: {canonical}")
            chosen.append(canonical)
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO list_members(list, member) VALUES (?, ?)",
                [(found.address, m) for m in chosen],
            )
        return chosen

    def remove_member(self, address: str, member: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM list_members WHERE list = ? AND member = ?",
                (_address(address), _address(member)),
            )
        return cur.rowcount > 0

    def members(self, address: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT member FROM list_members WHERE list = ? ORDER BY member",
                (_address(address),),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def is_member(self, address: str, sender: str) -> bool:
        try:
            who = _address(sender)
        except DirectoryError:
            return False
        return who in self.members(address)

    # -- archive-all ---------------------------------------------------------------------

    def _archive_scope(self, scope: str) -> str:
        text = scope.strip().lstrip("@")
        if "@" in text:
            account = self.lookup(text)
            if account is None:
                raise DirectoryError(f"no such account: {text}")
            return account.address
        return self.own_domain(text)

    def set_archive(self, scope: str, archive: str) -> ArchiveRule:
        """Copy every message to and from ``scope`` (an account, or a domain's every
        account) into the account ``archive``."""
        key = self._archive_scope(scope)
        account = self.lookup(archive)
        if account is None:
            raise DirectoryError(f"no such account: {archive}")
        if account.address == key:
            raise DirectoryError(f"{key} cannot be its own archive")
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO archive_rules(scope, archive) VALUES (?, ?)",
                (key, account.address),
            )
        return ArchiveRule(key, account.address)

    def clear_archive(self, scope: str) -> bool:
        key = scope.strip().lstrip("@").lower()
        with self._lock:
            cur = self._db.execute("DELETE FROM archive_rules WHERE scope = ?", (key,))
        return cur.rowcount > 0

    def archive_rules(self) -> list[ArchiveRule]:
        with self._lock:
            rows = self._db.execute("SELECT scope, archive FROM archive_rules ORDER BY scope")
            return [ArchiveRule(str(s), str(a)) for s, a in rows]

    def archive_of(self, address: str) -> str | None:
        """The archive account for mail to or from ``address``: its own rule, else its
        domain's; never the archive itself (its own mail is not copied into itself)."""
        canonical = address.strip().lower()
        domain = canonical.rpartition("@")[2]
        with self._lock:
            rows = dict(
                self._db.execute(
                    "SELECT scope, archive FROM archive_rules WHERE scope IN (?, ?)",
                    (canonical, domain),
                ).fetchall()
            )
        archive = rows.get(canonical) or rows.get(domain)
        return None if archive is None or archive == canonical else str(archive)

    def is_archive(self, address: str) -> bool:
        """Whether ``address`` is an archive account (read-only for its owner)."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM archive_rules WHERE archive = ?", (address.strip().lower(),)
            ).fetchone()
        return row is not None

    # -- resolution ----------------------------------------------------------------------

    def _list_variant(self, address: str) -> bool:
        """Whether ``address`` is ours, no account's or alias's, and not as delivered."""
        if not self.is_local_domain(address.rpartition("@")[2]):
            return False
        given = _address(address)
        if self.lookup(given) is not None or self._alias_targets(given):
            return False
        return self.canonical_address(given) != given

    def _expand(self, address: str, walk: Walk, depth: int) -> None:
        # A list's address stands for the list (its members are reached when the list sends
        # its copies); its bounce address for the list's owner.
        role = self.list_role(address)
        if role is None and self._list_variant(address):
            # A subaddress of the list (team+tag@) or its address in an alias domain.
            role = self.list_role(self.canonical_address(address))
        if role is None:
            super()._expand(address, walk, depth)
        elif role.bounces:
            owner = self.lookup(role.mailing_list.owner)
            if owner is not None:
                self._account_destinations(owner, walk, depth)
        elif role.mailing_list.address not in walk.lists:
            walk.lists.append(role.mailing_list.address)
