"""Local delivery: a spooled message into the recipients' mailboxes (and their archive
accounts' copies), on to the addresses elsewhere they forward to, and to the lists they are."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace

from reference.clock import Clock
from reference.delivery.filters import Outgoing, SieveFilter
from reference.delivery.forward import MAX_HOPS, Forwarder, forwarding_loop, hops
from reference.delivery.lists import ListDistributor
from reference.delivery.outcome import Outcome
from reference.delivery.retire import archive_folder
from reference.directory import Account, Destinations, Directory, DirectoryError, split_address
from reference.log import event
from reference.mailbox import MailStore, NoSuchFolder, QuotaExceeded
from reference.sieve import Filing
from reference.spool import QueueEntry
from reference.usage import UsageStore

# How often an account's storage is read for its usage (seconds; days begin on the hour).
STORAGE_EVERY = 3600

log = logging.getLogger("mailspec.delivery")


def delivery_key(*parts: str) -> str:
    """The name of one delivery into a mailbox, from (queue id, recipient, account, ...).

    The store records it with the message in one transaction, so a delivery repeated after
    a crash (the spool not yet updated) finds it and stores nothing: local delivery is
    exactly once. What leaves this node (forwarded copies, Sieve's redirects and replies,
    the relay to remote MXs) stays at least once: SMTP has no way to ask a remote MX
    whether it took a message, so a crash after its 250 and before the spool is updated
    sends that message again.
    """
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


class LocalDelivery:
    """Into each destination's mailbox, with Return-Path and Delivered-To added; copies for
    addresses elsewhere (aliases, forwarding) through the forwarder."""

    def __init__(
        self,
        directory: Directory,
        store: MailStore,
        clock: Clock,
        *,
        after: Callable[[str, bytes], None] | None = None,
        forwarder: Forwarder | None = None,
        sieve: SieveFilter | None = None,
        lists: ListDistributor | None = None,
        usage: UsageStore | None = None,
    ) -> None:
        self.directory = directory
        self.store = store
        self.clock = clock
        # Called in the worker thread with (account, message) once it is in the mailbox,
        # e.g. to keep the DMARC aggregate reports that arrive; it must not raise.
        self.after = after
        self.forwarder = forwarder
        self.sieve = sieve  # each account's own Sieve script, if the node runs them
        self.lists = lists  # sends a list's copies to its members
        self.usage = usage  # each account's messages in, and what its mailboxes hold
        self._storage_seen: dict[str, int] = {}  # account -> the hour its storage was read

    def is_local(self, address: str) -> bool:
        if self.forwarder is not None and self.forwarder.returns(address):
            return True  # a bounce to a return path we rewrote: ours to send on
        try:
            _, domain = split_address(address)
        except DirectoryError:
            return False
        return self.directory.is_local_domain(domain)

    def _deliver_sync(
        self,
        entry: QueueEntry,
        rcpt: str,
        found: Destinations,
        data: bytes,
        outgoing: list[Outgoing],
    ) -> list[str]:
        # Each account once per queue entry: when one target of an alias fails (over quota)
        # the recipient is retried, and the targets that have their copy are skipped.
        done = next((r.filed for r in entry.recipients if r.address == rcpt), [])
        filed = []
        for account in found.accounts:
            if account.address in done:
                filed.append(f"{account.address}: filed at an earlier attempt")
                continue
            filed.append(self._file(entry, rcpt, account, data, outgoing))
            done.append(account.address)
        return filed

    def _archive(self, who: str, data: bytes, folder: str, key: str) -> None:
        """A copy for ``who``'s archive account, if it has one, in the archive's folder for
        it ("Archive/alice@example_test/INBOX" or ".../Sent"), as it was accepted; once per
        ``key`` (a delivery repeated after a crash makes no second copy)."""
        archive = self.directory.archive_of(who)
        if archive is None:
            return
        path = f"{archive_folder(who)}/{folder}"
        try:
            try:
                self.store.deliver(archive, data, path, key=key)
            except NoSuchFolder:
                self.store.create_folder(archive, path)
                self.store.deliver(archive, data, path, key=key)
        except (QuotaExceeded, OSError) as e:
            # The original delivery goes on untouched; the operator hears of the gap.
            event(log, "archive.failed", level=logging.ERROR, who=who, archive=archive, error=e)

    async def archive_sent(self, entry: QueueEntry, data: bytes) -> None:
        """Outbound: what a user here submitted, into their archive account's Sent copy."""
        if entry.role == "submission" and entry.user:
            key = delivery_key(entry.qid, entry.user, "archive Sent")
            await asyncio.to_thread(self._archive, entry.user, data, "Sent", key)

    def _file(
        self, entry: QueueEntry, rcpt: str, account: Account, data: bytes, outgoing: list[Outgoing]
    ) -> str:
        """Into the account's folders (its Sieve script decides which); what the script sends
        goes into ``outgoing``."""
        # RFC 5321 4.4: the final delivery adds Return-Path with the envelope sender.
        header = f"Return-Path: <{entry.sender}>\r\nDelivered-To: {account.address}\r\n"
        filed = header.encode() + data  # as every copy below is filed
        # Archive-all: the copy is made before the user's own filter can discard or move it.
        archived = delivery_key(entry.qid, rcpt, account.address, "archive")
        self._archive(account.address, filed, "INBOX", archived)
        # A check may file the message elsewhere (DMARC quarantine: Junk).
        filings = [Filing(entry.folder or "INBOX")]
        if self.sieve is not None:
            decision = self.sieve.decide(entry, rcpt, account.address, filed)
            filings = decision.filings
            outgoing.extend(decision.outgoing)
            # The user hears of their script's failure.
            for i, notice in enumerate(decision.notices):
                key = delivery_key(entry.qid, rcpt, account.address, f"notice {i}")
                self.store.deliver(account.address, notice, "INBOX", key=key)
            if decision.discarded:
                # The one case where mail is dropped: the user's own filter said so.
                self._received(account, data)
                return f"{account.address}: discarded by its own filter"
        # One key for every folder it is filed in: each folder's index keeps its own.
        key = delivery_key(entry.qid, rcpt, account.address)
        stored = []
        fresh = not filings  # filed nowhere (reject, redirect only): counted as handled
        for filing in filings:
            folder = filing.folder
            try:
                uid, new = self.store.deliver_once(
                    account.address, filed, folder, filing.flags, key=key
                )
            except NoSuchFolder:
                # A user's filter may name a folder not made yet: it is made (RFC 5490's
                # :create as the default); a name that cannot be a folder falls back to INBOX.
                try:
                    self.store.create_folder(account.address, folder)
                except (ValueError, OSError):
                    folder = "INBOX"
                uid, new = self.store.deliver_once(
                    account.address, filed, folder, filing.flags, key=key
                )
            fresh = fresh or new
            stored.append(f"{folder} uid {uid}")
        if fresh:  # a repeat after a crash was counted at its first delivery
            self._received(account, data)
        if self.after is not None:
            self.after(account.address, data)
        if not stored:  # reject, or redirect only: the message went on, not into a folder
            return f"{account.address}: handled by its own filter"
        return f"{account.address}/{', '.join(stored)}"

    def _received(self, account: Account, data: bytes) -> None:
        """Count the message in the account's usage; what its mailboxes hold is read at most
        once an hour per account (reading every folder's index costs milliseconds, more than
        the count itself), and always at its first delivery of a day."""
        if self.usage is None:
            return
        hour = int(self.clock.now() // STORAGE_EVERY)
        storage = None
        if self._storage_seen.get(account.address) != hour:
            if len(self._storage_seen) > 100_000:
                self._storage_seen.clear()
            self._storage_seen[account.address] = hour
            storage = self.store.usage(account.address).bytes
        self.usage.received(account.address, len(data), storage)

    async def deliver(self, entry: QueueEntry, rcpt: str, data: bytes) -> Outcome:
        if hops(data) > MAX_HOPS:
            # RFC 5321 6.3: a loop through other systems (our Delivered-To may be gone).
            return Outcome("bounced", f"5.4.6 mail loop: more than {MAX_HOPS} Received fields")
        if self.forwarder is not None and self.forwarder.returns(rcpt):
            return await self.forwarder.return_bounce(entry, rcpt, data)
        # On the loop: the node's directory answers from memory until it changes.
        found = self.directory.expand(rcpt)
        if not found.exists:
            # The address went away between RCPT and delivery.
            return Outcome("bounced", "5.1.1 no such user")
        live = tuple(a for a in found.accounts if a.enabled)
        if found.accounts and not live and not found.remote:
            # Disabled between RCPT and delivery (RCPT refuses it): bounced, not kept.
            return Outcome("bounced", "5.2.1 mailbox disabled")
        found = replace(found, accounts=live)  # a group alias skips its disabled accounts
        if found.remote:
            found, barred = await asyncio.to_thread(self._kept_home, rcpt, found)
            if barred is not None and not (found.accounts or found.lists):
                return barred  # nowhere here to keep it: the sender hears, nothing is dropped
        if found.remote and forwarding_loop(data, rcpt):
            # RFC 5321 6.3: forwarded from here before and back again: bounce, not again.
            return Outcome("bounced", f"5.4.6 mail forwarding loop for {rcpt}")
        if found.remote and self.forwarder is None:
            return Outcome("deferred", "4.3.5 forwarding is not set up on this node")
        if found.lists and self.lists is None:
            return Outcome("deferred", "4.3.5 lists are not set up on this node")
        if found.lists and not (found.accounts or found.remote):
            # Only lists (the common case): their outcome is the recipient's, a loop bounced.
            outcomes = [await self._distribute(entry, a, data) for a in found.lists]
            bounced = [o for o in outcomes if o.status == "bounced"]
            if bounced:
                return bounced[0]
            return Outcome("delivered", "; ".join(o.detail for o in outcomes))
        outgoing: list[Outgoing] = []
        try:
            filed = await asyncio.to_thread(self._deliver_sync, entry, rcpt, found, data, outgoing)
        finally:
            if outgoing and self.sieve is not None:
                # Sent once the message itself is filed (also when a later target failed):
                # a retried delivery skips that account, so it does not send twice.
                await self.sieve.send(entry, outgoing)
        if found.remote:
            assert self.forwarder is not None
            qid = await self.forwarder.forward(entry, rcpt, found.remote, data)
            filed.append(f"forwarded to {', '.join(found.remote)} as {qid}")
        for address in found.lists:  # an alias that includes lists as well
            filed.append((await self._distribute(entry, address, data)).detail)
        return Outcome("delivered", f"2.0.0 delivered to {'; '.join(filed)}")

    def _kept_home(self, rcpt: str, found: Destinations) -> tuple[Destinations, Outcome | None]:
        """``found`` without its addresses elsewhere when the class of service that applies
        forwards nowhere else (it changed since the forward or alias was set): the accounts
        keep the mail (the owner, if no account kept a copy); with none, a bounce."""
        scope = found.owner.address if found.owner is not None else rcpt
        cos = self.directory.forbids(scope, "forward_remote")
        if cos is None:
            return found, None
        event(log, "forward.barred", rcpt=rcpt, to=",".join(found.remote), cos=cos.name)
        owner = found.owner if found.owner is not None and found.owner.enabled else None
        accounts = found.accounts or ((owner,) if owner is not None else ())
        barred = Outcome(
            "bounced", f"5.7.1 class of service {cos.name} does not forward {rcpt} elsewhere"
        )
        return replace(found, remote=(), accounts=accounts), barred

    async def _distribute(self, entry: QueueEntry, address: str, data: bytes) -> Outcome:
        assert self.lists is not None
        return await self.lists.distribute(entry, address, data)
