"""Where mail for an address goes: accounts, aliases with several targets (local or
elsewhere), subaddresses (RFC 5233), catch-alls, alias domains and forwarding."""

from __future__ import annotations

from dataclasses import dataclass, field

from reference.directory.accounts import Account, Accounts
from reference.directory.schema import DirectoryError, normalize_domain, split_address

# Aliases of aliases are followed this deep: a longer chain is a loop or a mistake.
MAX_DEPTH = 8


@dataclass(frozen=True)
class Destinations:
    """Where mail for one address goes."""

    accounts: tuple[Account, ...] = ()  # mailboxes that file a copy
    remote: tuple[str, ...] = ()  # addresses elsewhere it is forwarded to
    # The account that reads mail for the address (its spam settings, quota and sender lists
    # apply), even when it forwards without keeping a copy; None for a purely remote alias.
    owner: Account | None = None
    lists: tuple[str, ...] = ()  # distribution lists it posts to (they send the copies)

    @property
    def exists(self) -> bool:
        return bool(self.accounts or self.remote or self.owner or self.lists)


@dataclass
class Walk:
    """An expansion under way: what was found, and the addresses already followed."""

    accounts: list[Account] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    owner: Account | None = None
    seen: set[str] = field(default_factory=set)
    lists: list[str] = field(default_factory=list)

    def result(self) -> Destinations:
        return Destinations(tuple(self.accounts), tuple(self.remote), self.owner, tuple(self.lists))


def _address(text: str) -> str:
    local, domain = split_address(text)
    return f"{local}@{domain}"


class Aliases(Accounts):
    """Accounts with their other addresses, catch-alls, alias domains and forwarding."""

    # -- aliases -------------------------------------------------------------------------

    def _alias_key(self, alias: str) -> str:
        """An alias address in one of our domains, or "@domain" for its catch-all."""
        if alias.strip().startswith("@"):
            return "@" + self.own_domain(alias.strip()[1:])
        local, domain = split_address(alias)
        self.own_domain(domain)
        address = f"{local}@{domain}"
        if self.lookup(address) is not None:
            raise DirectoryError("%(address)s is an account already", address=address)
        return address

    def _target(self, target: str) -> str:
        """A target: an address elsewhere, or one that receives mail here already."""
        address = _address(target)
        if self.is_local_domain(address.rpartition("@")[2]) and not self.expand(address).exists:
            raise DirectoryError("no such account: %(address)s", address=address)
        return address

    def add_alias(self, alias: str, *targets: str) -> tuple[str, list[str]]:
        """Deliver ``alias`` (in one of our domains; "@domain": its catch-all) to each of
        ``targets`` as well as to those it has: accounts, other aliases, or addresses
        elsewhere (forwarded)."""
        if not targets:
            raise DirectoryError("an alias needs at least one target")
        address = self._alias_key(alias)
        chosen = [self._target(t) for t in targets]
        with self._lock:
            have = {
                str(r[0])
                for r in self._db.execute(
                    "SELECT target FROM alias_targets WHERE address = ?", (address,)
                )
            }
            if have and set(chosen) <= have:
                raise DirectoryError(
                    "alias %(address)s exists already with these targets", address=address
                )
            self._db.executemany(
                "INSERT OR IGNORE INTO alias_targets(address, target) VALUES (?, ?)",
                [(address, t) for t in chosen],
            )
        return address, chosen

    def remove_alias(self, alias: str, target: str | None = None) -> bool:
        """Remove an alias (or only one of its targets); False if there was none."""
        text = alias.strip()
        address = "@" + normalize_domain(text[1:]) if text.startswith("@") else _address(text)
        query, args = "DELETE FROM alias_targets WHERE address = ?", [address]
        if target is not None:
            query += " AND target = ?"
            args.append(_address(target))
        with self._lock:
            cur = self._db.execute(query, args)
        return cur.rowcount > 0

    def aliases(
        self, domain: str | None = None, target: str | None = None
    ) -> list[tuple[str, str]]:
        """(alias, target) pairs, one per target, of one domain or one target if given."""
        q = "SELECT address, target FROM alias_targets"
        args: list[str] = []
        if domain:
            q += " WHERE address LIKE ?"
            args.append("%@" + normalize_domain(domain))
        elif target:
            q += " WHERE target = ?"
            args.append(_address(target))
        with self._lock:
            rows = self._db.execute(q + " ORDER BY address, target", args).fetchall()
        return [(str(a), str(t)) for a, t in rows]

    def _alias_targets(self, address: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT target FROM alias_targets WHERE address = ? ORDER BY rowid", (address,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    # -- alias domains -------------------------------------------------------------------

    def add_alias_domain(self, name: str, target: str) -> tuple[str, str]:
        """Deliver mail for every address of ``name`` as if it were sent to ``target``."""
        domain = normalize_domain(name)
        real = self.own_domain(target)
        with self._lock:
            if self._db.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone():
                raise DirectoryError("%(domain)s is one of our domains already", domain=domain)
            row = self._db.execute(
                "SELECT target FROM alias_domains WHERE name = ?", (domain,)
            ).fetchone()
            if row is not None:
                raise DirectoryError(
                    "%(domain)s is an alias of %(target)s already", domain=domain, target=row[0]
                )
            self._db.execute(
                "INSERT INTO alias_domains(name, target) VALUES (?, ?)", (domain, real)
            )
        return domain, real

    def alias_domains(self) -> list[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT name, target FROM alias_domains ORDER BY name")
            return [(str(n), str(t)) for n, t in rows]

    def _real_domain(self, domain: str) -> str:
        with self._lock:
            row = self._db.execute(
                "SELECT target FROM alias_domains WHERE name = ?", (domain,)
            ).fetchone()
        return str(row[0]) if row else domain

    def canonical_address(self, address: str) -> str:
        """``address`` as its mail is delivered: without its detail (RFC 5233), at the
        domain an alias domain delivers as; raises DirectoryError for no address."""
        local, domain = split_address(address)
        base = local.split(self.delimiter, 1)[0] if self.delimiter else local
        return f"{base or local}@{self._real_domain(domain)}"

    # -- forwarding ----------------------------------------------------------------------

    def set_forward(self, address: str, targets: list[str], *, keep: bool) -> list[str]:
        """Forward the account's mail to ``targets`` (``keep``: file a copy here too)."""
        account = self.lookup(address)
        if account is None:
            raise DirectoryError("no such account: %(address)s", address=address)
        if not targets:
            raise DirectoryError("forwarding needs at least one target")
        chosen = [self._target(t) for t in targets]
        if account.address in chosen:
            raise DirectoryError("%(address)s cannot forward to itself", address=account.address)
        with self.transaction() as db:
            db.execute("DELETE FROM forwards WHERE address = ?", (account.address,))
            db.executemany(
                "INSERT OR IGNORE INTO forwards(address, target, keep) VALUES (?, ?, ?)",
                [(account.address, t, int(keep)) for t in chosen],
            )
        return chosen

    def clear_forward(self, address: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM forwards WHERE address = ?", (_address(address),))
        return cur.rowcount > 0

    def forward_of(self, address: str) -> tuple[list[str], bool]:
        """The account's forwarding targets and whether it keeps a copy ([] if none)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT target, keep FROM forwards WHERE address = ? ORDER BY rowid",
                (address.lower(),),
            ).fetchall()
        return [str(t) for t, _ in rows], all(k for _, k in rows)

    # -- resolution ----------------------------------------------------------------------

    def expand(self, address: str) -> Destinations:
        """Every destination of mail for ``address`` (none: no such recipient here)."""
        walk = Walk()
        try:
            self._expand(address, walk, 0)
        except DirectoryError:
            return Destinations()
        if walk.owner is not None and not walk.accounts and not walk.remote and not walk.lists:
            # Accounts forwarding to each other without copies: the first keeps the mail.
            walk.accounts.append(walk.owner)
        return walk.result()

    def _expand(self, address: str, walk: Walk, depth: int) -> None:
        local, domain = split_address(address)
        if not self.is_local_domain(domain):
            if address not in walk.remote:
                walk.remote.append(address)
            return
        domain = self._real_domain(domain)
        if depth > MAX_DEPTH:
            raise DirectoryError(
                "aliases nested more than %(depth)s deep at %(address)s",
                depth=MAX_DEPTH,
                address=address,
            )
        base = local.split(self.delimiter, 1)[0] if self.delimiter else local
        # The full address first, then without its detail (RFC 5233), then the catch-all.
        candidates = [f"{local}@{domain}"]
        if base and base != local:
            candidates.append(f"{base}@{domain}")
        candidates.append(f"@{domain}")
        for candidate in candidates:
            if candidate in walk.seen:
                return  # a loop of aliases: each address is expanded once
            account = None if candidate.startswith("@") else self.lookup(candidate)
            if account is not None:
                walk.seen.add(candidate)
                self._account_destinations(account, walk, depth)
                return
            targets = self._alias_targets(candidate)
            if targets:
                walk.seen.add(candidate)
                for target in targets:
                    self._expand(target, walk, depth + 1)
                return
        if base == "postmaster" and depth == 0:
            # RFC 5321 4.5.1: postmaster is accepted; without a mailbox, the domain's admin.
            found = self.postmaster(domain)
            if found is not None:
                self._account_destinations(found, walk, depth)

    def _account_destinations(self, account: Account, walk: Walk, depth: int) -> None:
        if walk.owner is None:
            walk.owner = account
        targets, keep = self.forward_of(account.address)
        if (not targets or keep) and account not in walk.accounts:
            walk.accounts.append(account)
        for target in targets:
            self._expand(target, walk, depth + 1)

    def resolve(self, address: str) -> Account | None:
        """The account that reads mail for ``address``: its own, an alias's (first) target,
        a subaddress's or catch-all's account, or for postmaster without a mailbox the
        domain's administrator (RFC 5321 4.5.1)."""
        return self.expand(address).owner

    def addresses_of(self, user: str) -> tuple[list[str], list[str]]:
        """The aliases that deliver to the account ``user``: (its own: to it alone; group
        aliases: to others too, followed through nested aliases). An autoresponder treats
        the first as the user's (RFC 5230 4.5) and the second as a distribution."""
        me = user.lower()
        own: list[str] = []
        groups: list[str] = []
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT address FROM alias_targets").fetchall()
        for (alias,) in rows:
            if str(alias).startswith("@"):
                continue  # a catch-all is no address anyone writes to by name
            found = self.expand(str(alias))
            if me not in {a.address for a in found.accounts}:
                continue
            alone = len(found.accounts) == 1 and not found.remote
            (own if alone else groups).append(str(alias))
        return own, groups

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
                "SELECT 1 FROM alias_targets WHERE address = ? AND target = ?",
                (canonical, user.lower()),
            ).fetchone()
        return row is not None
