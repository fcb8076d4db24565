"""RCPT for distribution lists: a private list refuses posters its policy does not admit, and
classes of service without lists refuse their users' posts and their owners' lists."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

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
    dropped later. A list runs under its owner's class of service: one without lists closes
    it (550 5.7.1); a poster here (the signed-in user, or the account the envelope sender
    names) whose class has no lists may post to none."""

    name = "list-policy"

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        lists = self.directory.expand(rcpt).lists  # from memory: most recipients are no list
        if not lists:
            return CONTINUE
        return await asyncio.to_thread(self._rcpt, tx, lists)

    def _poster(self, tx: Transaction) -> str | None:
        """Whose class of service a post is sent under: a local account's, if any."""
        if tx.user is not None:
            return tx.user
        account = self.directory.lookup(tx.sender) if tx.sender else None
        return account.address if account is not None else None

    def _rcpt(self, tx: Transaction, lists: Sequence[str]) -> CheckResult:
        for address in lists:
            found = self.directory.mailing_list(address)
            if found is None:
                continue
            closed = self.directory.forbids(found.owner, "lists")
            if closed is not None:
                reply = replies.COS_LIST_CLOSED.format(address=found.address, cos=closed.name)
                return refuse(reply, f"list {found.address} owned by {found.owner}")
            poster = self._poster(tx)
            barred = self.directory.forbids(poster, "lists") if poster else None
            if barred is not None:
                reply = replies.COS_NO_LISTS.format(cos=barred.name)
                return refuse(reply, f"{poster} -> list {found.address}")
            if found.policy == "public":
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
