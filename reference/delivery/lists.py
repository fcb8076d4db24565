"""Distribution lists: a post becomes one queued copy per member, sent as list servers do.

Each copy carries the list's header fields (RFC 2369 List-Post and List-Unsubscribe, RFC
2919 List-Id, RFC 8058 List-Unsubscribe-Post with a one-click address for that member) and
leaves from the list's bounce address, so a member's refusal comes back to the list's owner,
never to the poster. A poster whose domain asks receivers to refuse or quarantine mail that
fails DMARC (p=reject or p=quarantine) would have their post refused at members' providers,
since the list's copy no longer passes SPF or DKIM for their domain: the From is rewritten to
the list's address ("Alice via Team"), the poster's address kept in Reply-To. A post that
went through the list before (its X-Loop) is bounced, never sent round again.

Each copy leaves DKIM-signed with the list domain's key (its d= aligned with a rewritten
From, and covering List-Unsubscribe and List-Unsubscribe-Post as RFC 8058 4 asks) and
ARC-sealed (RFC 8617) by the same sealer as forwarded mail, over the results found when the
post arrived, so members' providers can trust what the list changed.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
from collections.abc import Callable
from urllib.parse import urlencode

from reference.auth import Disposition, DmarcResult, Lookup
from reference.auth.dkim import DomainSigner
from reference.auth.dmarc import evaluate
from reference.auth.keys import KeyStoreError
from reference.clock import Clock
from reference.delivery.forward import ArcSealer
from reference.delivery.outcome import Outcome
from reference.directory import Directory, MailingList
from reference.log import event
from reference.mail.message import Message
from reference.spool import QueueEntry, Spool

log = logging.getLogger("mailspec.lists")

__all__ = ["ListDistributor", "munged_from", "unsubscribe_url"]

# The list server's own fields: a post's (from another list, or forged) are replaced.
LIST_FIELDS = frozenset(
    {
        "list-id",
        "list-post",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-help",
        "list-subscribe",
        "list-owner",
        "list-archive",
        "precedence",
    }
)
STRICT = (Disposition.REJECT, Disposition.QUARANTINE)


def unsubscribe_url(base: str, mailing_list: MailingList, member: str) -> str:
    """The member's one-click unsubscribe address (RFC 8058 3.1: HTTPS, opaque to others)."""
    query = urlencode(
        {
            "list": mailing_list.address,
            "member": member,
            "token": mailing_list.unsubscribe_token(member),
        }
    )
    return f"{base.rstrip('/')}/lists/unsubscribe?{query}"


def munged_from(value: str, mailing_list: MailingList) -> str:
    """ "Alice via Team" <team@…> for the From field ``value`` (the way Mailman does it)."""
    name, address = email.utils.parseaddr(value)
    who = name or address.partition("@")[0] or "someone"
    return email.utils.formataddr((f"{who} via {mailing_list.name}", mailing_list.address))


class ListDistributor:
    """Queues the members' copies of a post to a list."""

    def __init__(
        self,
        directory: Directory,
        spool: Spool,
        clock: Clock,
        lookup: Lookup | None,
        *,
        web_base: Callable[[], str],
        notify: Callable[[str], None] | None = None,
        signer: DomainSigner | None = None,
        sealer: ArcSealer | None = None,
    ) -> None:
        self.signer = signer  # the list domain's DKIM keys (None: copies leave unsigned)
        self.sealer = sealer  # forwarded mail's ARC sealer (None: copies leave unsealed)
        self.directory = directory
        self.spool = spool
        self.clock = clock
        self.lookup = lookup  # DMARC records of posters' domains (None: never rewrite From)
        # Where one-click unsubscribes go: the control plane (its port is known once bound).
        self.web_base = web_base
        self.notify = notify

    async def strict_dmarc(self, msg: Message) -> bool:
        """Whether a From domain of ``msg`` publishes p=reject or p=quarantine (a DNS
        failure counts as strict: the rewritten From is delivered either way)."""
        if self.lookup is None:
            return False
        for domain in msg.from_domains:
            found = await evaluate(self.lookup, domain, None, (), sample=lambda: 0.0)
            if found.result is DmarcResult.TEMPERROR or found.policy in STRICT:
                return True
        return False

    async def distribute(self, entry: QueueEntry, address: str, data: bytes) -> Outcome:
        found = await asyncio.to_thread(self.directory.mailing_list, address)
        if found is None:
            return Outcome("bounced", f"5.1.1 no such list {address}")
        closed = await asyncio.to_thread(self.directory.forbids, found.owner, "lists")
        if closed is not None:
            # Its owner's class lost its lists after the post was accepted: the poster hears.
            return Outcome(
                "bounced",
                f"5.7.1 list {found.address} is closed: class of service {closed.name} "
                "runs no lists",
            )
        msg = Message(data)
        if any(f.text().lower() == found.address for f in msg.get_all("X-Loop")):
            # The list's own mail came back to it (a list among its own members' members).
            return Outcome("bounced", f"5.4.6 mail loop: this went through list {found.address}")
        members = [
            m
            for m in await asyncio.to_thread(self.directory.members, found.address)
            if m not in (found.address, found.bounce_address)
        ]
        if not members:
            # Accepted for nobody would be dropped: the poster hears of it instead.
            return Outcome("bounced", f"5.1.1 list {found.address} has no members")
        remove = [f.raw for f in msg.fields if f.lname in LIST_FIELDS]
        common = [f"X-Loop: {found.address}", "Precedence: list"]
        rewritten = ""
        if await self.strict_dmarc(msg):
            originals = msg.get_all("From")
            remove += [f.raw for f in originals]
            rewritten = originals[0].text() if originals else entry.sender
            common.insert(0, f"From: {munged_from(rewritten, found)}")
            if not msg.has("Reply-To"):  # replies still reach the poster
                common.insert(1, f"Reply-To: {rewritten}")
        body = Message.of(msg.edited(remove=remove).raw)
        edited = body.edited(prepend="".join(f"{h}\r\n" for h in common).encode()).raw
        if self.sealer is not None:
            # Sealed once for every member: the seal's signature covers the body and the
            # fields every copy shares, not each member's own List-Unsubscribe.
            edited = await self.sealer.seal(edited)
        body = Message.of(edited)
        queued = []
        base = self.web_base()
        for member in members:
            header = [
                f"List-Id: {email.utils.formataddr((found.name, found.list_id))}",
                f"List-Post: <mailto:{found.address}>",
                f"List-Unsubscribe: <{unsubscribe_url(base, found, member)}>",
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            ]
            copy = body.edited(prepend="".join(f"{h}\r\n" for h in header).encode()).raw
            copy = await self._signed(copy, found)
            queued.append(await self._queue(entry, found, member, copy))
        event(
            log,
            "list.distributed",
            qid=entry.qid,
            list=found.address,
            members=len(members),
            from_rewritten=bool(rewritten),
        )
        return Outcome(
            "delivered",
            f"2.0.0 list {found.address} sent to {len(members)} members as {', '.join(queued)}",
        )

    async def _signed(self, copy: bytes, found: MailingList) -> bytes:
        """``copy`` with the list domain's DKIM signatures on top; as it was when signing
        failed (a missing signature is worth less than the post)."""
        if self.signer is None:
            return copy
        try:
            signatures = await asyncio.to_thread(
                self.signer.sign, copy, found.domain, now=self.clock.now()
            )
        except (KeyStoreError, OSError) as e:
            event(log, "list.sign-failed", level=logging.WARNING, list=found.address, error=e)
            return copy
        return signatures + copy

    async def _queue(self, entry: QueueEntry, found: MailingList, member: str, data: bytes) -> str:
        # The id follows from the post, the list and the member: a delivery repeated after a
        # crash finds the copy it queued before instead of sending a second one.
        key = f"{entry.qid}|{found.address}|{member}".encode()
        qid = hashlib.sha256(key).hexdigest()[:20].upper()
        if await asyncio.to_thread(self.spool.load, qid) is not None:
            return qid
        queued = await self.spool.enqueue(
            found.bounce_address,  # bounces come back to the list, not to the poster
            [member],
            data,
            qid=qid,
            lane=entry.lane,
            body=entry.body,
            smtputf8=entry.smtputf8,
            kind="list",
            about=entry.qid,
        )
        if self.notify is not None:
            self.notify(queued.qid)
        return queued.qid
