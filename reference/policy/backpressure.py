"""MAIL: past a spool backlog, new mail waits at the sender (451 4.3.2) instead of piling up."""

from __future__ import annotations

from reference.mail import replies
from reference.policy import CONTINUE, Check, CheckResult, Transaction, refuse
from reference.spool import Spool

__all__ = ["Backpressure"]

# RFC 3463 X.3.2 "system not accepting network messages": a busy system, try later.


class Backpressure(Check):
    """Refuse new transactions while the spool holds ``max_backlog`` messages or more.

    Senders keep the mail and retry (RFC 5321 4.5.4.1); accepted mail is never dropped.
    """

    name = "backpressure"

    def __init__(self, spool: Spool, max_backlog: int) -> None:
        self.spool = spool
        self.max_backlog = max_backlog

    async def mail(self, tx: Transaction) -> CheckResult:
        backlog = self.spool.backlog
        if self.max_backlog and backlog >= self.max_backlog:
            return refuse(replies.QUEUE_FULL, f"spool backlog {backlog} >= {self.max_backlog}")
        return CONTINUE
