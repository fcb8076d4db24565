"""RCPT for distribution lists: a private list refuses posters its policy does not admit."""

from __future__ import annotations

from reference.directory import Directory
from reference.mail import replies
from reference.policy import CONTINUE, Check, CheckResult, Transaction, refuse

__all__ = ["ListPosting"]

# What each private policy admits, in the words the refusal uses.
_ADMITS = {
    "members": "its members",
    "local": "users signed in here",
}


class ListPosting(Check):
    """A list with policy "members" takes posts only from a member's address (the envelope
    sender, or the signed-in user); one with "local" only from users who authenticated here.
    Others get 550 5.7.1 naming the list's policy, in the dialogue: nothing is accepted and
    dropped later."""

    name = "list-policy"

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        for address in self.directory.expand(rcpt).lists:
            found = self.directory.mailing_list(address)
            if found is None or found.policy == "public":
                continue
            if found.policy == "local" and tx.user is not None:
                continue
            if found.policy == "members" and any(
                who and self.directory.is_member(found.address, who) for who in (tx.sender, tx.user)
            ):
                continue
            reply = replies.LIST_POLICY.format(address=found.address, who=_ADMITS[found.policy])
            return refuse(reply, f"list {found.address} ({found.policy}) from {tx.sender or '<>'}")
        return CONTINUE
