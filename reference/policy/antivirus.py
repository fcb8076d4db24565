"""Virus scanning at DATA: a hit is refused during the dialogue, naming the virus."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reference.log import event
from reference.policy import CONTINUE, Check, CheckResult, Session, refuse
from reference.scan.clamd import ClamdClient
from reference.smtp.replies import Reply

__all__ = ["Antivirus"]

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

    async def data(self, s: Session, sender: str, rcpts: Sequence[str], msg: bytes) -> CheckResult:
        result = await self.clamd.scan(msg)
        if result.infected:
            event(log, "virus", peer=s.peer, user=s.user, sender=sender, virus=result.name)
            if s.role == "submission":
                text = (
                    f"Your message was not sent: it contains a virus ({result.name}). "
                    "Remove the infected attachment and send it again."
                )
                return refuse(Reply(550, "5.7.1", text), f"virus {result.name}")
            return refuse(
                Reply(554, "5.7.1", f"Message refused: virus {result.name} found"),
                f"virus {result.name}",
            )
        if result.status == "error":
            event(log, "scan.error", level=logging.WARNING, peer=s.peer, reason=result.name)
            if not self.fail_open:
                return refuse(
                    Reply(451, "4.7.0", "Virus scanner unavailable, please try again later"),
                    result.name,
                )
        return CONTINUE
