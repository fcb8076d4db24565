"""Administrators' access lists at MAIL and RCPT: the platform's rules on the client, its
HELO name and the sender refuse at MAIL FROM; a domain's rules (which apply to its own
recipients only) and rules on the recipient refuse at RCPT TO.

How rules combine: for each scope (the recipient's domain, the platform) and kind, the
closest match counts (an address before its domain, a longer network before a shorter);
then a reject anywhere refuses, restrict refuses senders that are not our authenticated
users, and accept spares the recipient greylisting. A domain cannot loosen the platform's
rejects, only add its own. Authenticated users are past the client, HELO and sender rules
(Postfix's permit_sasl_authenticated before them); recipient rules apply to them too.
A subaddress is under its address's rules, and a recipient of an alias domain under the
rules of the domain it delivers as.
"""

from __future__ import annotations

from reference.directory import GLOBAL, AccessRule, Directory, DirectoryError
from reference.mail import replies
from reference.policy import CONTINUE, Check, CheckResult, Transaction, refuse

__all__ = ["AccessLists"]

# What Postfix names each kind in its refusal ("Client host rejected: …").
_WHAT = {
    "client": "Client host",
    "helo": "Helo command",
    "sender": "Sender address",
    "recipient": "Recipient address",
}
DENIED = "Access denied"
RESTRICTED = "only authenticated senders of this platform may write to this address"


class AccessLists(Check):
    """MAIL: the platform's rejects; RCPT: every applicable rule, and accept for greylisting."""

    name = "access"

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def _values(self, tx: Transaction, rcpt: str = "") -> dict[str, str]:
        values = {"recipient": rcpt}
        if tx.user is None:
            values |= {"client": tx.peer, "helo": tx.helo, "sender": tx.sender}
        return values

    async def _rules(self, scopes: tuple[str, ...], values: dict[str, str]) -> list[AccessRule]:
        # Asked on the loop, as the recipient check asks the directory: the node's directory
        # answers from memory until it changes (CachedDirectory), far below the cost of a
        # hop to a worker thread (about 85 us of CPU).
        return self.directory.access_decisions(scopes, values)

    @staticmethod
    def _reject(rules: list[AccessRule], values: dict[str, str]) -> CheckResult:
        for rule in rules:
            if rule.action == "reject":
                value = values[rule.kind]
                reply = replies.ACCESS_DENIED.format(
                    value=value, what=_WHAT[rule.kind], text=rule.text or DENIED
                )
                return refuse(reply, f"access {rule.scope or 'global'} {rule.kind} {rule.pattern}")
        return CONTINUE

    async def mail(self, tx: Transaction) -> CheckResult:
        values = self._values(tx)
        return self._reject(await self._rules((GLOBAL,), values), values)

    async def _recipient_rules(self, tx: Transaction, rcpt: str) -> list[AccessRule]:
        """The rules for ``rcpt`` as Postfix's check_recipient_access finds them with a
        recipient_delimiter: the address as given, then without its detail, then its
        domain; a recipient of an alias domain is under the rules of the domain it
        delivers as (an alias domain has none of its own), so no spelling escapes them."""
        given = "@".join(tx.address(rcpt))
        canonical = self.directory.canonical_address(given)  # from memory: see _rules
        domain = canonical.rpartition("@")[2]
        rules = await self._rules((domain, GLOBAL), self._values(tx, canonical))
        if canonical == given:
            return rules
        exact = [
            r
            for r in await self._rules((domain, GLOBAL), self._values(tx, given))
            if r.kind == "recipient" and r.pattern == given
        ]
        mine = {(r.scope, r.kind) for r in exact}
        return exact + [r for r in rules if (r.scope, r.kind) not in mine]

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        try:
            rules = await self._recipient_rules(tx, rcpt)
        except DirectoryError:
            return CONTINUE  # the recipient check says what is wrong with it
        values = self._values(tx, rcpt)  # what a refusal names: the address as given
        refused = self._reject(rules, values)
        if refused.refuses:
            return refused
        for rule in rules:
            if rule.action == "restrict" and tx.user is None:
                reply = replies.ACCESS_RESTRICTED.format(value=rcpt, text=rule.text or RESTRICTED)
                return refuse(reply, f"access {rule.scope or 'global'} restricted {rule.pattern}")
        if any(rule.action == "accept" for rule in rules):
            tx.accepted.add(rcpt)
        return CONTINUE
