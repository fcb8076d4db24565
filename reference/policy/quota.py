"""RCPT: a full mailbox is refused for now (452 4.2.2), before the message is sent at all."""

from __future__ import annotations

import asyncio

from reference.directory import Directory, DirectoryError
from reference.mail import replies
from reference.mailbox import MailStore, QuotaExceeded
from reference.policy import CONTINUE, Check, CheckResult, Transaction, refuse

__all__ = ["MailboxQuota"]

# RFC 3463 X.2.2 "mailbox full"; 452 because the user may make room (RFC 5321 4.2.2).


class MailboxQuota(Check):
    """Local recipients only; delivery checks again (a message may fill the box meanwhile)."""

    name = "quota"

    def __init__(self, directory: Directory, store: MailStore) -> None:
        self.directory = directory
        self.store = store

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        try:
            _, domain = tx.address(rcpt)
        except DirectoryError:
            return CONTINUE
        if not self.directory.is_local_domain(domain):
            return CONTINUE
        account = self.directory.resolve(rcpt)  # aliases fill their target's box
        if account is None or self.store.quota_for(account.address).unlimited:
            return CONTINUE
        try:
            # The index files are read off the event loop: one small query per folder. A
            # declared SIZE that would not fit is refused for this recipient (RFC 1870 6.1).
            await asyncio.to_thread(self.store.check_quota, account.address, tx.size or 0)
        except QuotaExceeded as e:
            return refuse(replies.MAILBOX_FULL, f"{account.address} over quota: {e}")
        return CONTINUE
