"""Forwarding: copies for addresses elsewhere go out through the queue, with SRS return paths.

A forwarded copy is a new queue entry (kind "forward") on the outbound lanes, so it is
retried, bounced and reported like any relayed mail: never dropped. Its return path is
rewritten (SRS0=…@srs.domain) so that the destination's SPF check sees our domain, and it
is ARC-sealed (RFC 8617) with the platform's key over the results we found on arrival; a
remote refusal, ours or the destination's, then comes back to that address, and a bounce
to it is reversed and sent on to the original sender.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence

from reference.auth import arc
from reference.auth.keys import SigningKey
from reference.auth.srs import Srs, SrsError, is_srs
from reference.clock import Clock
from reference.delivery.outcome import Outcome
from reference.log import event
from reference.mail.message import header_fields, split_message, unfold
from reference.spool import QueueEntry, Spool

log = logging.getLogger("mailspec.forward")

__all__ = ["MAX_HOPS", "ArcSealer", "Forwarder", "forwarding_loop", "hops"]

# RFC 5321 6.3: a loop counted in Received fields needs a large threshold, "normally at
# least 100" (Postfix's hopcount_limit is 50, below what the RFC asks).
MAX_HOPS = 100


def forwarding_loop(data: bytes, rcpt: str) -> bool:
    """Whether ``data`` was forwarded from ``rcpt`` before: it carries our Delivered-To for
    it (RFC 5321 6.3: a loop is detected and bounced, never forwarded again)."""
    wanted = rcpt.strip().lower().encode()
    return any(
        f.lname == "delivered-to" and unfold(f.value).strip().lower() == wanted
        for f in header_fields(split_message(data)[0])
    )


def hops(data: bytes) -> int:
    """How many Received fields ``data``'s header has (each MTA on its way adds one)."""
    return sum(f.lname == "received" for f in header_fields(split_message(data)[0]))


class ArcSealer:
    """Seals forwarded copies (RFC 8617) with the platform's own RSA key, so a receiver that
    honours ARC can still pass DMARC for mail whose SPF and DKIM forwarding broke."""

    def __init__(self, key: SigningKey, authserv_id: str, clock: Clock) -> None:
        self.key = key
        self.authserv_id = authserv_id  # whose Authentication-Results the seal vouches for
        self.clock = clock

    async def seal(self, data: bytes) -> bytes:
        """``data`` with our ARC set on top; unchanged when there is nothing to seal (no
        results of ours on it) or sealing failed: a seal is never worth losing mail."""
        try:
            arc_set = await arc.seal(data, self.key, self.authserv_id, now=self.clock.now())
        except Exception as e:  # dkimpy raises its own and plain errors alike
            event(log, "arc.seal-failed", level=logging.WARNING, error=repr(e))
            return data
        return arc_set + data


class Forwarder:
    """Queues forwarded copies and returns bounces that reach a rewritten return path."""

    def __init__(
        self,
        spool: Spool,
        clock: Clock,
        srs: Srs,
        *,
        is_local: Callable[[str], bool],
        notify: Callable[[str], None] | None = None,
        sealer: ArcSealer | None = None,
    ) -> None:
        self.sealer = sealer
        self.spool = spool
        self.clock = clock
        self.srs = srs
        self.is_local = is_local  # whether a domain is ours: its senders need no rewriting
        self.notify = notify  # the queue runner's: start a new entry at once

    def return_path(self, sender: str) -> str:
        """The envelope sender of a forwarded copy: ours as it was, others rewritten."""
        domain = sender.rpartition("@")[2]
        if not sender or self.is_local(domain):
            return sender
        return self.srs.forward(sender, self.clock.now())

    def returns(self, rcpt: str) -> bool:
        """Whether ``rcpt`` is a rewritten return path of ours (a bounce coming back)."""
        return rcpt.rpartition("@")[2].lower() == self.srs.domain and is_srs(rcpt)

    async def forward(
        self,
        entry: QueueEntry,
        rcpt: str,
        targets: Sequence[str],
        data: bytes,
        *,
        sender: str | None = None,
    ) -> str:
        """Queue ``data`` for ``targets`` on behalf of ``rcpt``; returns its queue id.

        The queue id follows from the entry and the recipient, so a delivery repeated after
        a crash finds the copy it queued before instead of forwarding a second one.
        """
        digest = hashlib.sha256(rcpt.lower().encode()).hexdigest()[:6].upper()
        qid = f"{entry.qid}F{digest}"
        if self.spool.load(qid) is not None:
            return qid
        return_path = self.return_path(entry.sender) if sender is None else sender
        if sender is None:  # forwarded mail (a returned bounce is passed on as it came)
            # As Postfix does: the address it was forwarded for, so that a copy coming back
            # to it is seen as a loop (see :func:`forwarding_loop`).
            data = f"Delivered-To: {rcpt}\r\n".encode() + data
            if self.sealer is not None:
                data = await self.sealer.seal(data)
        queued = await self.spool.enqueue(
            return_path,
            list(targets),
            data,
            qid=qid,
            lane=entry.lane,
            body=entry.body,
            smtputf8=entry.smtputf8,
            kind="forward",
            about=entry.qid,
        )
        event(
            log,
            "forward.queued",
            qid=queued.qid,
            about=entry.qid,
            rcpt=rcpt,
            to=",".join(targets),
            sender=return_path or "<>",
        )
        if self.notify is not None:
            self.notify(queued.qid)
        return queued.qid

    async def return_bounce(self, entry: QueueEntry, rcpt: str, data: bytes) -> Outcome:
        """A bounce to a rewritten return path: on to the original sender, checked again
        (the address was valid at RCPT; it may have expired in the queue since)."""
        try:
            original = self.srs.reverse(rcpt, self.clock.now())
        except SrsError as e:
            return Outcome("bounced", f"5.1.1 bounce address {rcpt} not valid: {e}")
        qid = await self.forward(entry, rcpt, [original], data, sender=entry.sender)
        return Outcome("delivered", f"2.0.0 returned to {original} as {qid}")
