"""Classes of service at RCPT and DATA: an account whose class refuses external recipients
sends only inside our domains (550 5.7.1 at RCPT), and a message larger than the class of
its sender (submission) or of one of its local recipients allows is refused (552 5.3.4):
at MAIL for the sender's class and at RCPT for the recipient's when the client declared
its SIZE (RFC 1870 6.1), at the end of DATA when it did not. The class's quota and rate
limits are read where those are checked (the store, RateLimit)."""

from __future__ import annotations

from reference.directory import ClassOfService, Directory, DirectoryError, split_address
from reference.mail import replies
from reference.policy import CONTINUE, Check, CheckResult, Transaction, refuse

__all__ = ["ClassOfServiceCheck"]


class ClassOfServiceCheck(Check):
    name = "cos"

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def _local(self, address: str) -> bool:
        try:
            _, domain = split_address(address)
        except DirectoryError:
            return False
        return self.directory.is_local_domain(domain)

    async def mail(self, tx: Transaction) -> CheckResult:
        if tx.user is None or tx.size is None:
            return CONTINUE
        # RFC 1870 6.1: a declared size over the sender's own limit is refused at once.
        return self._too_big(tx.size, [tx.user])  # from memory: see AccessLists._rules

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        if self._local(rcpt):
            if tx.size is None:
                return CONTINUE
            # RFC 1870 6.1: over this recipient's limit: 552 for this recipient alone.
            return self._too_big(tx.size, self._owners([rcpt]))
        if tx.user is None:
            return CONTINUE
        cos, _ = self.directory.effective_cos(tx.user)  # from memory: see AccessLists._rules
        if cos is not None and not cos.external:
            return refuse(replies.COS_NO_EXTERNAL.format(cos=cos.name), f"{tx.user} -> {rcpt}")
        return CONTINUE

    def _owners(self, rcpts: list[str]) -> list[str]:
        """The accounts that read mail for the local ones of ``rcpts``."""
        who = []
        for rcpt in rcpts:
            if self._local(rcpt):
                owner = self.directory.resolve(rcpt)
                if owner is not None:
                    who.append(owner.address)
        return who

    def _too_big(self, size: int, who: list[str]) -> CheckResult:
        for address in who:
            cos, _ = self.directory.effective_cos(address)
            if _limit(cos) and size > _limit(cos):
                reply = replies.COS_TOO_BIG.format(limit=_limit(cos))
                return refuse(reply, f"{size} bytes > {_limit(cos)} ({address})")
        return CONTINUE

    def _whole(self, tx: Transaction) -> CheckResult:
        who = ([tx.user] if tx.user is not None else []) + self._owners(tx.recipients)
        return self._too_big(len(tx.msg.raw), who)

    async def data(self, tx: Transaction) -> CheckResult:
        if tx.size is not None and len(tx.msg.raw) <= tx.size:
            # RFC 1870 6.1: MAIL and RCPT held the declared size, no less than the message,
            # against the sender's class and each local recipient's: nothing left to check.
            return CONTINUE
        return self._whole(tx)  # directory answers from memory: see AccessLists._rules


def _limit(cos: ClassOfService | None) -> int:
    """The class's largest message in bytes (0: no limit of its own)."""
    return (cos.max_message_size or 0) if cos is not None else 0
