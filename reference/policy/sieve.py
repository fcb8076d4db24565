"""DATA: the recipient's own Sieve script, where its verdict is known before the 250: a
message for one local account is refused in the dialogue when the script rejects it
(RFC 5429 2.1: 550 5.7.1 with the script's reason), instead of a rejection message later.

Only a transaction with a single recipient that is one account here qualifies (SMTP gives
one reply to DATA for every recipient). Delivery runs the script again for what it files,
redirects or replies (the run here has no side effects). A script that tests the spam
score (spamtest) is left to delivery, which sees the score this transaction adds.
"""

from __future__ import annotations

import asyncio

from reference.clock import Clock
from reference.directory import Directory, DirectoryError, split_address
from reference.mail import replies
from reference.policy import CONTINUE, Check, CheckResult, Transaction, refuse
from reference.sieve import Context, Limits, ScriptStore, SieveError, SieveRuntimeError, evaluate

__all__ = ["SieveVerdict"]

# RFC 5321 4.5.3.1.5: a reply line stays well inside 512 octets, and is ASCII.
MAX_REASON = 300


def reply_text(reason: str) -> str:
    """The script's reason as one printable ASCII line (RFC 5429 2.1.1)."""
    flat = " ".join(reason.split())
    text = "".join(c if " " <= c <= "~" else "?" for c in flat)[:MAX_REASON]
    return text or "Rejected by the recipient's filter"


class SieveVerdict(Check):
    """DATA, for one local recipient with a script: refuse what the script rejects."""

    name = "sieve"

    def __init__(
        self,
        directory: Directory,
        scripts: ScriptStore,
        clock: Clock,
        *,
        limits: Limits | None = None,
        subaddress_delimiter: str = "+",
    ) -> None:
        self.directory = directory
        self.scripts = scripts
        self.clock = clock
        self.limits = limits or Limits()
        self.subaddress_delimiter = subaddress_delimiter

    def _target(self, tx: Transaction) -> tuple[str, str] | None:
        """The one recipient and the account whose script may reject it at DATA, if any
        (on the loop: the node's directory answers from memory, and a user without an
        active script costs one failed open)."""
        if len(tx.recipients) != 1:
            return None
        (rcpt,) = tx.recipients
        try:
            _, domain = split_address(rcpt)
        except DirectoryError:
            return None
        if not self.directory.is_local_domain(domain):
            return None
        found = self.directory.expand(rcpt)
        if len(found.accounts) != 1 or found.remote:
            return None
        account = found.accounts[0].address
        try:
            if self.scripts.active_name(account) is None:
                return None
        except (SieveError, OSError):
            return None  # delivery keeps the message and tells the user
        return rcpt, account

    def _reason(self, tx: Transaction, rcpt: str, account: str) -> str | None:
        """The script's reject reason (None: no reject, or not known before the 250)."""
        try:
            script = self.scripts.active(account)
        except (SieveError, OSError):
            return None  # delivery keeps the message and tells the user
        if script is None or script.requires & {"spamtest", "spamtestplus"}:
            return None
        # As delivery will see it: with the Return-Path and Delivered-To it adds.
        head = f"Return-Path: <{tx.sender}>\r\nDelivered-To: {account}\r\n".encode()
        ctx = Context(
            message=head + tx.msg.raw,
            envelope_from=tx.sender,
            envelope_to=rcpt,
            user=account,
            now=self.clock.now(),
            subaddress_delimiter=self.subaddress_delimiter,
            limits=self.limits,
        )
        try:
            result = evaluate(script, ctx)
        except SieveRuntimeError:
            return None  # a failing script never refuses: delivery keeps the message
        return None if result.reject is None else result.reject.reason

    async def data(self, tx: Transaction) -> CheckResult:
        target = self._target(tx)
        if target is None:
            return CONTINUE
        reason = await asyncio.to_thread(self._reason, tx, *target)  # compiles, evaluates
        if reason is None:
            return CONTINUE
        # RFC 5429 2.1: refused at the protocol level, with the script's reason.
        return refuse(replies.SIEVE_REJECTED.format(reason=reply_text(reason)), "sieve reject")
