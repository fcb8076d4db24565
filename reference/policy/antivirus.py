"""Virus scanning at DATA: a hit is refused during the dialogue, naming the virus."""

from __future__ import annotations

import base64
import logging

from reference.log import event
from reference.mail import replies
from reference.policy import CONTINUE, Check, CheckResult, Transaction, refuse
from reference.scan.clamd import ClamdClient

__all__ = ["Antivirus", "Unscanned"]

log = logging.getLogger("mailspec.antivirus")


class Antivirus(Check):
    """Inbound: ``554 5.7.1``; submission: ``550 5.7.1`` the user understands.

    A scanner that cannot answer makes the sender retry (``451 4.7.0``) unless
    ``fail_open``: mail is never accepted unscanned by surprise, nor lost.
    """

    name = "antivirus"

    def __init__(self, clamd: ClamdClient, *, fail_open: bool = False) -> None:
        self.clamd = clamd
        self.fail_open = fail_open

    def close(self) -> None:
        self.clamd.close()

    async def data(self, tx: Transaction) -> CheckResult:
        result = await self.clamd.scan(tx.msg.raw)
        if result.infected:
            event(log, "virus", peer=tx.peer, user=tx.user, sender=tx.sender, virus=result.name)
            refusal = replies.VIRUS_NOT_SENT if tx.role == "submission" else replies.VIRUS_REFUSED
            return refuse(refusal.format(virus=result.name), f"virus {result.name}")
        if result.status == "error":
            event(log, "scan.error", level=logging.WARNING, peer=tx.peer, reason=result.name)
            if not self.fail_open:
                return refuse(replies.SCANNER_UNAVAILABLE, result.name)
        return CONTINUE


# The EICAR test file as sent in a message: as is (7bit, or quoted-printable, which leaves
# it unchanged), or base64 (the file starts a part, so its encoding starts with these
# characters, before any line break).
_EICAR_MARKS = (
    b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE",
    base64.b64encode(b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR"),
)


class Unscanned(Check):
    """Stands where :class:`Antivirus` would when no scanner is configured.

    It scans nothing and refuses nothing: refusing the EICAR test file here would tell a
    tester that viruses are caught when every real one passes. What it does is say, in the
    log at WARNING with the queue id, that the EICAR test file someone sent went unscanned,
    so a 250 is not mistaken for a scanner's verdict.
    """

    name = "unscanned"

    async def data(self, tx: Transaction) -> CheckResult:
        if any(mark in tx.msg.raw for mark in _EICAR_MARKS):
            event(
                log,
                "virus.unscanned",
                level=logging.WARNING,
                qid=tx.qid,
                peer=tx.peer,
                sender=tx.sender,
                content="EICAR test file",
                # Later checks may still refuse it: say what this check did, not the outcome.
                detail="not refused as a virus: no scanner is configured (antivirus.clamd)",
            )
        return CONTINUE
