"""Access lists, platform-wide and per domain, as Postfix access maps: rules by sender
address or domain, client address or network, HELO name and recipient, each of which
rejects (with its own text), accepts (the client is spared greylisting) or restricts (a
recipient that only authenticated senders of this platform may reach)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from reference.directory.accounts import Accounts
from reference.directory.schema import DirectoryError, normalize_domain, split_address

__all__ = [
    "ACCESS_ACTIONS",
    "ACCESS_KINDS",
    "GLOBAL",
    "AccessRule",
    "AccessRules",
    "access_pattern",
]

ACCESS_KINDS = ("sender", "client", "helo", "recipient")
ACCESS_ACTIONS = ("reject", "accept", "restrict")
GLOBAL = ""  # the scope of the platform's own rules (a domain's rules have its name)
MAX_TEXT = 200  # a reply line stays well inside RFC 5321 4.5.3.1.5's 512 octets


@dataclass(frozen=True)
class AccessRule:
    scope: str  # GLOBAL, or the domain whose recipients the rule is for
    kind: str  # one of ACCESS_KINDS
    pattern: str  # "user@domain" or "domain"; an address or network; a host name
    action: str  # one of ACCESS_ACTIONS
    text: str = ""  # the refusal's text (empty: the platform's own)

    def specificity(self, value: str) -> int:
        """How closely the rule matches ``value`` (the larger the closer; -1: not at all).
        An address beats its domain, a domain its parent, a longer network a shorter one."""
        value = value.strip().lower()
        if self.kind == "client":
            try:
                ip = ipaddress.ip_address(value)
            except ValueError:
                return -1
            net = ipaddress.ip_network(self.pattern)
            return net.prefixlen if ip.version == net.version and ip in net else -1
        if self.kind in ("sender", "recipient"):
            if "@" in self.pattern:
                return 1000 if value == self.pattern else -1
            value = value.rpartition("@")[2]
        # A domain (or HELO name) matches itself and its subdomains, the closer the better.
        if value == self.pattern:
            return 500
        return self.pattern.count(".") if value.endswith("." + self.pattern) else -1


def access_pattern(kind: str, pattern: str) -> str:
    """``pattern`` in the one spelling the rules keep, or :class:`DirectoryError`."""
    text = pattern.strip()
    if kind == "client":
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise DirectoryError(f"not an address or network: {pattern!r}") from None
    if kind in ("sender", "recipient") and "@" in text.lstrip("@"):
        local, domain = split_address(text)
        return f"{local}@{domain}"
    if kind in ("sender", "recipient", "helo"):
        return normalize_domain(text.lstrip("@"))
    raise DirectoryError(f"an access rule is by {', '.join(ACCESS_KINDS)}, not {kind!r}")


class AccessRules(Accounts):
    """The rules, in the directory's database (table ``access_rules``)."""

    def _access_scope(self, scope: str) -> str:
        return GLOBAL if not scope.strip() else self.own_domain(scope)

    def add_access(
        self, scope: str, kind: str, pattern: str, action: str, text: str = ""
    ) -> AccessRule:
        """Add a rule, or replace the one with the same scope, kind and pattern."""
        if action not in ACCESS_ACTIONS:
            raise DirectoryError(f"an access rule's action is one of {', '.join(ACCESS_ACTIONS)}")
        if action == "restrict" and kind != "recipient":
            raise DirectoryError("restrict is for a recipient: who may write to it")
        text = text.strip()
        if "\r" in text or "\n" in text or len(text) > MAX_TEXT or not text.isprintable():
            raise DirectoryError(f"the text is one printable line of at most {MAX_TEXT} chars")
        where, what = self._access_scope(scope), access_pattern(kind, pattern)
        rule = AccessRule(where, kind, what, action, text)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO access_rules(scope, kind, pattern, action, text) "
                "VALUES (?, ?, ?, ?, ?)",
                (rule.scope, rule.kind, rule.pattern, rule.action, rule.text),
            )
        return rule

    def remove_access(self, scope: str, kind: str, pattern: str) -> bool:
        """Remove a rule; False if there was none."""
        key = (GLOBAL if not scope.strip() else normalize_domain(scope), kind)
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM access_rules WHERE scope = ? AND kind = ? AND pattern = ?",
                (*key, access_pattern(kind, pattern)),
            )
        return cur.rowcount > 0

    def access_rules(self, scope: str | None = None) -> list[AccessRule]:
        """Every rule, or one scope's (GLOBAL: the platform's)."""
        q = "SELECT scope, kind, pattern, action, text FROM access_rules"
        args: tuple[str, ...] = ()
        if scope is not None:
            q += " WHERE scope = ?"
            args = (GLOBAL if not scope.strip() else normalize_domain(scope),)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY scope, kind, pattern", args).fetchall()
        return [AccessRule(*(str(v) for v in row)) for row in rows]

    def access_decisions(self, scopes: tuple[str, ...], values: dict[str, str]) -> list[AccessRule]:
        """For each scope and kind, the closest rule matching ``values`` (kind -> the
        sender, client address, HELO name or recipient of the transaction)."""
        marks = ",".join("?" * len(scopes))
        with self._lock:
            rows = self._db.execute(
                "SELECT scope, kind, pattern, action, text FROM access_rules "
                f"WHERE scope IN ({marks})",
                scopes,
            ).fetchall()
        best: dict[tuple[str, str], tuple[int, AccessRule]] = {}
        for row in rows:
            rule = AccessRule(*(str(v) for v in row))
            value = values.get(rule.kind)
            if not value:
                continue
            score = rule.specificity(value)
            key = (rule.scope, rule.kind)
            if score >= 0 and (key not in best or score > best[key][0]):
                best[key] = (score, rule)
        # A domain's rules before the platform's, so its text is the one a refusal gives.
        return sorted((r for _, r in best.values()), key=lambda r: (r.scope == GLOBAL, r.kind))
