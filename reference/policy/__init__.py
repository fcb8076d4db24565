"""Checks per SMTP stage: each returns a result; the chain stops at the first that decides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from reference.directory import Directory, DirectoryError, split_address
from reference.mail import replies
from reference.mail.replies import Reply

__all__ = [
    "Action",
    "Check",
    "CheckResult",
    "LocalRecipients",
    "Policy",
    "SenderOwnership",
    "Session",
]


class Action(Enum):
    CONTINUE = "continue"
    ACCEPT = "accept"
    TEMPFAIL = "tempfail"
    REJECT = "reject"


@dataclass(frozen=True)
class CheckResult:
    action: Action
    reply: Reply | None = None
    reason: str = ""  # for the log line, never for the wire
    # What a DATA check asks of an accepted message: header fields to put on top (e.g.
    # Authentication-Results, DKIM-Signature), raw header fields to take out (e.g. a forged
    # Authentication-Results), and spool meta to set (e.g. {"folder": "Junk"}).
    prepend_headers: bytes = b""
    remove_headers: tuple[bytes, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    # The whole message rewritten (a disclaimer in the body, header rules): the checks
    # after this one see it (DKIM signs it), and the header edits apply on top of it.
    message: bytes | None = None

    @property
    def refuses(self) -> bool:
        return self.action in (Action.TEMPFAIL, Action.REJECT)

    def after(self, earlier: CheckResult) -> CheckResult:
        """This result carrying the edits of an earlier check too (ours on top of theirs)."""
        if not (
            earlier.prepend_headers
            or earlier.remove_headers
            or earlier.meta
            or earlier.message is not None
        ):
            return self
        return CheckResult(
            self.action,
            self.reply,
            self.reason,
            self.prepend_headers + earlier.prepend_headers,
            earlier.remove_headers + self.remove_headers,
            {**earlier.meta, **self.meta},
            self.message if self.message is not None else earlier.message,
        )

    def edit(self, raw: bytes) -> bytes:
        """The message (as rewritten, if it was) with the header edits applied."""
        if self.message is not None:
            raw = self.message
        if not (self.prepend_headers or self.remove_headers):
            return raw
        end = 0 if raw.startswith(b"\r\n") else raw.find(b"\r\n\r\n") + 2
        if end == 1:  # no blank line: all of it is header
            end = len(raw)
        header, body = raw[:end], raw[end:]
        for f in self.remove_headers:
            at = header.find(f)
            while at > 0 and header[at - 1 : at] != b"\n":
                at = header.find(f, at + 1)
            if at >= 0:
                header = header[:at] + header[at + len(f) :]
        return self.prepend_headers + header + body


CONTINUE = CheckResult(Action.CONTINUE)


def refuse(reply: Reply, reason: str = "") -> CheckResult:
    return CheckResult(Action.TEMPFAIL if reply.transient else Action.REJECT, reply, reason)


@dataclass(frozen=True)
class Session:
    """What a check may know about the SMTP session."""

    role: str  # "mx" or "submission"
    peer: str  # the client's IP address (after PROXY protocol, the real one)
    helo: str = ""
    tls: bool = False
    user: str | None = None  # the authenticated address
    # At DATA: the queue id the message will have if accepted, so that what checks log
    # about it (the spam rules that fired) can be found with the "queued" line.
    qid: str = ""


class Check:
    """A check overrides the stages it cares about; the others say continue."""

    name = "check"

    def canonical_recipient(self, rcpt: str) -> str | None:
        """The address ``rcpt`` stands for, if this check knows better (None: no opinion)."""
        return None

    async def mail(self, s: Session, sender: str) -> CheckResult:
        return CONTINUE

    async def rcpt(self, s: Session, sender: str, rcpt: str) -> CheckResult:
        return CONTINUE

    async def data(self, s: Session, sender: str, rcpts: Sequence[str], msg: bytes) -> CheckResult:
        return CONTINUE


class LocalRecipients(Check):
    """RCPT: our domains need an existing mailbox; other domains need an authenticated user."""

    name = "recipients"

    def __init__(self, directory: Directory, hostname: str = "") -> None:
        self.directory = directory
        self.hostname = hostname

    def canonical_recipient(self, rcpt: str) -> str | None:
        # RFC 5321 4.5.1: "RCPT TO:<Postmaster>", with no domain, MUST be accepted: it is
        # the postmaster of the domain this host serves (the one its name is in, if any).
        if "@" in rcpt or rcpt.lower() != "postmaster":
            return None
        domains = self.directory.domains()
        if not domains:
            return None
        host = self.hostname.lower()
        own = [d for d in domains if host and (host == d or host.endswith("." + d))]
        return f"postmaster@{(own or domains)[0]}"

    async def rcpt(self, s: Session, sender: str, rcpt: str) -> CheckResult:
        try:
            _, domain = split_address(rcpt)
        except DirectoryError:
            return refuse(replies.BAD_ADDRESS, f"bad recipient {rcpt!r}")
        if self.directory.is_local_domain(domain):
            # An alias stands for its account; postmaster is always accepted (RFC 5321 4.5.1).
            account = self.directory.resolve(rcpt)
            if account is None:
                return refuse(replies.NO_SUCH_USER, f"unknown user {rcpt}")
            if not account.enabled:
                return refuse(replies.MAILBOX_DISABLED, f"disabled {rcpt}")
            return CONTINUE
        if s.user is None:
            # No open relay: only authenticated users may send to other domains.
            return refuse(replies.RELAY_DENIED, f"relay to {domain} from {s.peer}")
        return CONTINUE


class SenderOwnership(Check):
    """Submission: MAIL FROM must be an address of the authenticated user, or an alias."""

    name = "sender-ownership"

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def mail(self, s: Session, sender: str) -> CheckResult:
        if s.role != "submission" or s.user is None:
            return CONTINUE
        if sender == "":
            return CONTINUE  # a user may send a bounce-like message with a null sender
        try:
            local, domain = split_address(sender)
        except DirectoryError:
            return refuse(replies.BAD_ADDRESS, f"bad sender {sender!r}")
        if not self.directory.owns(s.user, f"{local}@{domain}"):
            return refuse(replies.SENDER_NOT_OWNED, f"{s.user} tried MAIL FROM {sender}")
        return CONTINUE


class Policy:
    """An ordered chain of checks; configuration decides which checks are in it."""

    def __init__(self, checks: Sequence[Check]) -> None:
        self.checks = list(checks)

    def canonical_recipient(self, rcpt: str) -> str:
        """The address a RCPT stands for (``Postmaster`` alone names a local postmaster)."""
        for c in self.checks:
            found = c.canonical_recipient(rcpt)
            if found is not None:
                return found
        return rcpt

    async def mail(self, s: Session, sender: str) -> CheckResult:
        for c in self.checks:
            r = await c.mail(s, sender)
            if r.action is not Action.CONTINUE:
                return r
        return CONTINUE

    async def rcpt(self, s: Session, sender: str, rcpt: str) -> CheckResult:
        for c in self.checks:
            r = await c.rcpt(s, sender, rcpt)
            if r.action is not Action.CONTINUE:
                return r
        return CONTINUE

    async def data(self, s: Session, sender: str, rcpts: Sequence[str], msg: bytes) -> CheckResult:
        # Checks that continue may still ask for header edits and meta: they accumulate.
        edits = CONTINUE
        for c in self.checks:
            r = await c.data(s, sender, rcpts, msg)
            if r.refuses:
                return r
            if r.message is not None:
                msg = r.message  # later checks (DKIM signing) see the rewritten message
            edits = r.after(edits)
            if r.action is not Action.CONTINUE:
                return edits
        return edits
