"""Classes of service at RCPT and DATA: an account whose class refuses external recipients
sends only inside our domains (550 5.7.1 at RCPT), and a message larger than the class of
its sender (submission) or of one of its local recipients allows is refused (552 5.3.4).
The class's quota and rate limits are read where those are checked (the store, RateLimit)."""

from __future__ import annotations

from reference.directory import Directory, DirectoryError, split_address
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

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        if tx.user is None or self._local(rcpt):
            return CONTINUE
        cos, _ = self.directory.effective_cos(tx.user)  # from memory: see AccessLists._rules
        if cos is not None and not cos.external:
            return refuse(replies.COS_NO_EXTERNAL.format(cos=cos.name), f"{tx.user} -> {rcpt}")
        return CONTINUE

    def _too_big(self, tx: Transaction) -> CheckResult:
        size = len(tx.msg.raw)
        who = [tx.user] if tx.user is not None else []
        for rcpt in tx.recipients:
            if self._local(rcpt):
                owner = self.directory.resolve(rcpt)
                if owner is not None:
                    who.append(owner.address)
        for address in who:
            cos, _ = self.directory.effective_cos(address)
            if cos is not None and cos.max_message_size and size > cos.max_message_size:
                reply = replies.COS_TOO_BIG.format(limit=cos.max_message_size)
                return refuse(reply, f"{size} bytes > {cos.max_message_size} ({address})")
        return CONTINUE

    async def data(self, tx: Transaction) -> CheckResult:
        return self._too_big(tx)  # directory answers from memory: see AccessLists._rules
