"""Checks per SMTP stage: each returns a result; the chain stops at the first that decides."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from reference.auth.spf import SpfCheck
from reference.auth.srs import Srs, SrsError, is_srs
from reference.clock import Clock
from reference.directory import Directory, DirectoryError, split_address
from reference.mail import replies
from reference.mail.message import Message
from reference.mail.replies import Reply
from reference.metrics import Metrics, stopwatch
from reference.usage import UsageStore

__all__ = [
    "CONTINUE",
    "KEEP",
    "Action",
    "Check",
    "CheckResult",
    "Filing",
    "LocalRecipients",
    "Policy",
    "SenderOwnership",
    "Session",
    "SpfPair",
    "Transaction",
    "UsageCount",
    "refusal_owners",
    "refuse",
    "transaction",
]


class Action(Enum):
    CONTINUE = "continue"
    ACCEPT = "accept"
    TEMPFAIL = "tempfail"
    REJECT = "reject"


@dataclass(frozen=True)
class Filing:
    """Where the checks file an accepted message (DMARC's "disposition" is another thing)."""

    folder: str | None = None  # a mailbox folder other than INBOX (quarantine: "Junk")
    lane: str | None = None  # the queue lane (mass mail: "bulk")

    def then(self, later: Filing) -> Filing:
        """This disposition with what a later check decided on top."""
        return Filing(later.folder or self.folder, later.lane or self.lane)


KEEP = Filing()


@dataclass(frozen=True)
class CheckResult:
    action: Action
    reply: Reply | None = None
    reason: str = ""  # for the log line, never for the wire
    # What a DATA check asks of an accepted message: header fields to put on top (e.g.
    # Authentication-Results, DKIM-Signature), raw header fields to take out (e.g. a forged
    # Authentication-Results), and where the message goes (a folder, a lane).
    prepend_headers: bytes = b""
    remove_headers: tuple[bytes, ...] = ()
    filing: Filing = KEEP
    # The whole message rewritten (a disclaimer in the body, header rules): the checks
    # after this one see it (DKIM signs it), and the header edits apply on top of it.
    message: Message | None = None

    @property
    def refuses(self) -> bool:
        return self.action in (Action.TEMPFAIL, Action.REJECT)

    def after(self, earlier: CheckResult) -> CheckResult:
        """This result carrying the edits of an earlier check too (ours on top of theirs)."""
        if not (
            earlier.prepend_headers
            or earlier.remove_headers
            or earlier.filing != KEEP
            or earlier.message is not None
        ):
            return self
        return CheckResult(
            self.action,
            self.reply,
            self.reason,
            self.prepend_headers + earlier.prepend_headers,
            earlier.remove_headers + self.remove_headers,
            earlier.filing.then(self.filing),
            self.message if self.message is not None else earlier.message,
        )

    def edit(self, msg: Message | bytes) -> bytes:
        """The message (as rewritten, if it was) with the header edits applied."""
        edited = self.message if self.message is not None else Message.of(msg)
        return edited.edited(self.prepend_headers, self.remove_headers).raw


CONTINUE = CheckResult(Action.CONTINUE)


# The catalogue's name of each reply, for the reason a refusal is counted under; a reply
# filled in on the spot (a score, a wait) by the name its codes have, where only one does.
_CATALOGUE = [(k.lower(), v) for k, v in vars(replies).items() if isinstance(v, Reply)]
_REPLY_NAMES = {v: name for name, v in _CATALOGUE}
_CODES = Counter((v.code, v.enhanced) for _, v in _CATALOGUE)
_CODE_NAMES = {(v.code, v.enhanced): n for n, v in _CATALOGUE if _CODES[(v.code, v.enhanced)] == 1}


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


class SpfPair(NamedTuple):
    """SPF (RFC 7208) for both identities a client gives."""

    mail_from: SpfCheck
    helo: SpfCheck


@dataclass
class Transaction:
    """One mail transaction, from MAIL to the end of DATA (or RSET): what the checks see
    and what one check's results are for the others (greylisting reads SPF here)."""

    session: Session
    sender: str = ""
    recipients: list[str] = field(default_factory=list)
    # At DATA: the message as received, and the queue id it will have if accepted (what
    # checks log about it, refused or not, carries the id of the "queued" line).
    message: Message | None = None
    qid: str = ""
    # SPF (RFC 7208) for MAIL FROM and HELO, started at MAIL and awaited where needed.
    spf: asyncio.Task[SpfPair] | None = None
    # Recipients an administrator's access list accepts: greylisting spares them.
    accepted: set[str] = field(default_factory=set)
    # Where a check reports how long a mechanism within it took (SPF, DKIM, ARC, DMARC),
    # whenever it ends (SPF may end after the last stage): the node's check-duration metric.
    observe: Callable[[str, str, float], None] | None = None
    # RFC 1870: the size the client declared at MAIL (None: it declared none).
    size: int | None = None
    # Addresses split and normalised, once a transaction: several checks ask for each.
    _parts: dict[str, tuple[str, str]] = field(default_factory=dict, init=False, repr=False)

    def address(self, address: str) -> tuple[str, str]:
        """``split_address(address)``: (local part, domain), lower case and validated;
        DirectoryError for a bad address (asked again each time: only good ones are kept)."""
        parts = self._parts.get(address)
        if parts is None:
            parts = self._parts[address] = split_address(address)
        return parts

    @contextlib.contextmanager
    def timed(self, mechanism: str, stage: str) -> Iterator[None]:
        with stopwatch() as took:
            yield
        if self.observe is not None:
            self.observe(mechanism, stage, took())

    @property
    def role(self) -> str:
        return self.session.role

    @property
    def peer(self) -> str:
        return self.session.peer

    @property
    def helo(self) -> str:
        return self.session.helo

    @property
    def user(self) -> str | None:
        return self.session.user

    @property
    def msg(self) -> Message:
        """The message, at DATA (a check of an earlier stage has none)."""
        assert self.message is not None, "no message before DATA"
        return self.message

    async def spf_mail_from(self) -> SpfCheck | None:
        """The MAIL FROM SPF result, if an SPF check started one (None: it did not)."""
        if self.spf is None:
            return None
        try:
            mail_from, _ = await asyncio.shield(self.spf)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the session itself is cancelled (its client hung up): not ours to end
            return None  # the SPF task was stopped under us (the transaction ended)
        return mail_from

    def close(self) -> None:
        """The transaction is over: work started for it and not awaited stops."""
        if self.spf is not None and not self.spf.done():
            self.spf.cancel()


def transaction(
    session: Session,
    sender: str = "",
    recipients: Sequence[str] = (),
    message: Message | bytes | None = None,
    qid: str = "",
) -> Transaction:
    """A transaction as it stands at a stage (diagnostics commands judge one message so)."""
    msg = None if message is None else Message.of(message)
    return Transaction(session, sender, list(recipients), msg, qid)


class Check:
    """A check overrides the stages it cares about; the others say continue."""

    name = "check"

    def canonical_recipient(self, rcpt: str) -> str | None:
        """The address ``rcpt`` stands for, if this check knows better (None: no opinion)."""
        return None

    async def mail(self, tx: Transaction) -> CheckResult:
        return CONTINUE

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        return CONTINUE

    async def data(self, tx: Transaction) -> CheckResult:
        return CONTINUE

    def close(self) -> None:
        """The server stops: let go of connections kept between messages."""


class LocalRecipients(Check):
    """RCPT: our domains need an existing mailbox; other domains need an authenticated user;
    a bounce to a rewritten return path (SRS) needs our valid signature."""

    name = "recipients"

    def __init__(
        self,
        directory: Directory,
        hostname: str = "",
        *,
        srs: Srs | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.directory = directory
        self.hostname = hostname
        self.srs = srs
        self.clock = clock

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

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        try:
            _, domain = tx.address(rcpt)
        except DirectoryError:
            return refuse(replies.BAD_ADDRESS, f"bad recipient {rcpt!r}")
        srs, clock = self.srs, self.clock
        if srs is not None and clock is not None and domain == srs.domain and is_srs(rcpt):
            try:
                srs.reverse(rcpt, clock.now())
            except SrsError as e:
                reply = replies.SRS_EXPIRED if e.reason == "expired" else replies.SRS_FORGED
                return refuse(reply, f"SRS {rcpt}: {e}")
            return CONTINUE  # a bounce to mail we forwarded: delivery returns it
        if self.directory.is_local_domain(domain):
            # Aliases, subaddresses, catch-alls and alias domains stand for their
            # destinations; postmaster is always accepted (RFC 5321 4.5.1).
            found = self.directory.expand(rcpt)
            if not found.exists:
                return refuse(replies.NO_SUCH_USER, f"unknown user {rcpt}")
            # A disabled account gets no mail: its own address is refused, and so is an
            # alias none of whose accounts is enabled; a group alias still reaches the rest.
            owner = found.owner
            if (
                owner is not None
                and not owner.enabled
                and not any(a.enabled for a in found.accounts)
            ):
                return refuse(replies.MAILBOX_DISABLED, f"disabled {rcpt}")
            return CONTINUE
        if tx.user is None:
            # No open relay: only authenticated users may send to other domains.
            return refuse(replies.RELAY_DENIED, f"relay to {domain} from {tx.peer}")
        return CONTINUE


class SenderOwnership(Check):
    """Submission: MAIL FROM must be an address of the authenticated user, or an alias."""

    name = "sender-ownership"

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def mail(self, tx: Transaction) -> CheckResult:
        sender = tx.sender
        if tx.role != "submission" or tx.user is None:
            return CONTINUE
        if sender == "":
            return CONTINUE  # a user may send a bounce-like message with a null sender
        try:
            local, domain = tx.address(sender)
        except DirectoryError:
            return refuse(replies.BAD_ADDRESS, f"bad sender {sender!r}")
        if not self.directory.owns(tx.user, f"{local}@{domain}"):
            return refuse(replies.SENDER_NOT_OWNED, f"{tx.user} tried MAIL FROM {sender}")
        return CONTINUE


def refusal_owners(
    directory: Directory, tx: Transaction, rcpt: str | None
) -> list[tuple[str, str]]:
    """Whose usage a refusal counts in, as (domain, account): the sender's, for mail an
    authenticated user sends; else each named recipient's in our domains (the account that
    reads its mail; "" for an address that does not exist there)."""
    if tx.user is not None:
        return [(tx.user.rpartition("@")[2], tx.user)]
    owners = []
    for address in [rcpt] if rcpt is not None else tx.recipients:
        try:
            _, domain = tx.address(address)
        except DirectoryError:
            continue
        if not directory.is_local_domain(domain):
            continue
        owner = directory.expand(address).owner
        owners.append((owner.domain, owner.address) if owner else (domain, ""))
    return owners


@dataclass(frozen=True)
class UsageCount:
    """Where refusals are counted per account and day, and whom they concern."""

    store: UsageStore
    directory: Directory

    async def refused(self, tx: Transaction, rcpt: str | None, reason: str) -> None:
        def count() -> None:
            self.store.refused(reason, refusal_owners(self.directory, tx, rcpt))

        await asyncio.to_thread(count)  # another process may hold the store's write lock


class Policy:
    """An ordered chain of checks; configuration decides which checks are in it."""

    def __init__(
        self,
        checks: Sequence[Check],
        metrics: Metrics | None = None,
        usage: UsageCount | None = None,
    ) -> None:
        self.checks = list(checks)
        self.metrics = metrics
        self.usage = usage
        # Per stage, the checks that have something to do there (not the base class's
        # CONTINUE): the others are not asked, nor timed.
        self._asked = {
            stage: [c for c in self.checks if getattr(type(c), stage) is not getattr(Check, stage)]
            for stage in ("mail", "rcpt", "data")
        }

    async def _refused(
        self, check: Check, stage: str, r: CheckResult, tx: Transaction, rcpt: str | None = None
    ) -> CheckResult:
        """Count a refusal: by check, stage and the reply's catalogue name (or its codes, for
        a reply made on the spot), never by the free-text reason, which names addresses; and
        in the usage of whom it concerns."""
        reply = r.reply
        reason = ""
        if reply is not None:
            reason = _REPLY_NAMES.get(reply) or _CODE_NAMES.get(
                (reply.code, reply.enhanced), f"{reply.code} {reply.enhanced}".strip()
            )
        if self.metrics is not None:
            self.metrics.refused(check.name, stage, reason)
        if self.usage is not None:
            await self.usage.refused(tx, rcpt, reason)
        return r

    async def _ask(self, check: Check, stage: str, answer: Awaitable[CheckResult]) -> CheckResult:
        """A check's answer for one stage, with its time observed."""
        if self.metrics is None:
            return await answer
        with self.metrics.timed(check.name, stage):
            return await answer

    def canonical_recipient(self, rcpt: str) -> str:
        """The address a RCPT stands for (``Postmaster`` alone names a local postmaster)."""
        for c in self.checks:
            found = c.canonical_recipient(rcpt)
            if found is not None:
                return found
        return rcpt

    def begin(self, session: Session, sender: str, size: int | None = None) -> Transaction:
        """A new transaction for MAIL FROM:<sender> [SIZE=size]; close it when it ends."""
        tx = Transaction(session, sender, size=size)
        if self.metrics is not None:
            tx.observe = self.metrics.checked
        return tx

    async def mail(self, tx: Transaction) -> CheckResult:
        for c in self._asked["mail"]:
            r = await self._ask(c, "mail", c.mail(tx))
            if r.action is not Action.CONTINUE:
                return await self._refused(c, "mail", r, tx) if r.refuses else r
        return CONTINUE

    async def rcpt(self, tx: Transaction, rcpt: str) -> CheckResult:
        for c in self._asked["rcpt"]:
            r = await self._ask(c, "rcpt", c.rcpt(tx, rcpt))
            if r.action is not Action.CONTINUE:
                return await self._refused(c, "rcpt", r, tx, rcpt) if r.refuses else r
        return CONTINUE

    async def data(self, tx: Transaction) -> CheckResult:
        """The DATA checks over ``tx.message``; a check that rewrites the message hands
        the rewritten one to the checks after it (DKIM signing, last, signs what is sent)."""
        edits = CONTINUE
        for c in self._asked["data"]:
            r = await self._ask(c, "data", c.data(tx))
            if r.refuses:
                return await self._refused(c, "data", r, tx)
            if r.message is not None:
                tx.message = r.message
            edits = r.after(edits)
            if r.action is not Action.CONTINUE:
                return edits
        return edits
