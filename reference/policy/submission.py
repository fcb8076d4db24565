"""Submission checks at DATA: the From: header is the user's, header rules, the queue lane.

- :class:`FromOwnership` — every address in From: must be the authenticated user's own or
  one of its aliases (RFC 6409 6.3: ``550 5.7.1``), as MAIL FROM must be (``553 5.7.1``,
  :class:`~reference.policy.SenderOwnership`).
- :class:`HeaderRules` — header fields removed from (``X-Originating-IP``: the user's
  address is nobody's business) and added to submitted mail, before DKIM signs it.
- :class:`BulkLane` — mass mail goes to the queue's bulk lane, so that it never holds up
  person-to-person mail: many recipients, ``Precedence: bulk|list|junk``, list fields
  (``List-Unsubscribe``, ``List-Id``), or a user marked as a sender of newsletters.
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence

from reference.directory import Directory, DirectoryError, split_address
from reference.mail import replies
from reference.mail.message import Message
from reference.policy import (
    CONTINUE,
    Action,
    Check,
    CheckResult,
    Filing,
    Transaction,
    refuse,
)
from reference.values import FieldName, HeaderField

__all__ = ["BULK", "REGULAR", "BulkLane", "FromOwnership", "HeaderRules", "from_addresses"]

REGULAR = "regular"
BULK = "bulk"


def from_addresses(msg: Message) -> list[str] | None:
    """The addresses of every From: field (None: there is no From: field)."""
    fields = msg.get_all("from")
    if not fields:
        return None
    return [addr for f in fields for _, addr in email.utils.getaddresses([f.text()])]


class FromOwnership(Check):
    """Submission: each From: address must belong to the authenticated user."""

    name = "from-ownership"

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def data(self, tx: Transaction) -> CheckResult:
        s = tx.session
        if s.role != "submission" or s.user is None:
            return CONTINUE
        addresses = from_addresses(tx.msg)
        if addresses is None:
            return CONTINUE  # no From: at all is the MUA's problem, not a forgery
        if not addresses or not all(a for a in addresses):
            return refuse(replies.FROM_NOT_OWNED, f"{s.user}: From: names no address")
        for address in addresses:
            if not self.directory.owns(s.user, address):
                r = replies.FROM_NOT_OWNED
                return refuse(r.with_text(f"{r.text}: {address}"), f"{s.user} From: {address}")
        return CONTINUE


class HeaderRules(Check):
    """Submission: remove the configured header fields, add the configured ones on top.

    The message is rewritten (not merely annotated), so that DKIM, later in the chain,
    signs exactly what leaves.
    """

    name = "header-rules"

    def __init__(self, remove: Sequence[FieldName] = (), add: Sequence[HeaderField] = ()) -> None:
        self.remove = {name.lname for name in remove}
        self.add = b"".join(f.line for f in add)

    def rewrite(self, msg: Message) -> Message | None:
        kept = [f.raw for f in msg.fields if f.lname not in self.remove]
        new_header = self.add + b"".join(kept)
        if new_header == msg.header:
            return None
        return msg.with_header(new_header)

    async def data(self, tx: Transaction) -> CheckResult:
        if tx.role != "submission" or tx.user is None or not (self.remove or self.add):
            return CONTINUE
        new = self.rewrite(tx.msg)
        return CONTINUE if new is None else CheckResult(Action.CONTINUE, message=new)


_BULK_PRECEDENCE = ("bulk", "list", "junk")
_LIST_FIELDS = ("list-unsubscribe", "list-id")


def bulk_reason(msg: Message, rcpts: int, threshold: int) -> str | None:
    """Why a message is mass mail, from its header and recipient count (None: it is not)."""
    if threshold and rcpts >= threshold:
        return f"{rcpts} recipients"
    for f in msg.fields:
        if f.lname == "precedence" and f.text().lower() in _BULK_PRECEDENCE:
            return f"Precedence: {f.text().lower()}"
        if f.lname in _LIST_FIELDS:
            return f.name
    return None


class BulkLane(Check):
    """Every role: put mass mail in the bulk lane (spool meta ``lane``)."""

    name = "bulk-lane"

    def __init__(self, directory: Directory, *, recipients: int = 20) -> None:
        self.directory = directory
        self.recipients = recipients

    async def data(self, tx: Transaction) -> CheckResult:
        reason = bulk_reason(tx.msg, len(tx.recipients), self.recipients)
        if reason is None and tx.user is not None:
            try:
                local, domain = split_address(tx.user)
                if self.directory.is_bulk_sender(f"{local}@{domain}"):
                    reason = "newsletter sender"
            except DirectoryError:
                pass
        if reason is None:
            return CONTINUE
        return CheckResult(Action.CONTINUE, reason=reason, filing=Filing(lane=BULK))
