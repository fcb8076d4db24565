"""Local delivery: a spooled message into the recipients' mailboxes, and on to the addresses
elsewhere they forward to."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from reference.clock import Clock
from reference.delivery.filters import Outgoing, SieveFilter
from reference.delivery.forward import Forwarder, forwarding_loop
from reference.delivery.outcome import Outcome
from reference.directory import Account, Destinations, Directory, DirectoryError, split_address
from reference.mailbox import MailStore, NoSuchFolder
from reference.sieve import Filing
from reference.spool import QueueEntry


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
    ) -> None:
        self.directory = directory
        self.store = store
        self.clock = clock
        # Called in the worker thread with (account, message) once it is in the mailbox,
        # e.g. to keep the DMARC aggregate reports that arrive; it must not raise.
        self.after = after
        self.forwarder = forwarder
        self.sieve = sieve  # each account's own Sieve script, if the node runs them

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

    def _file(
        self, entry: QueueEntry, rcpt: str, account: Account, data: bytes, outgoing: list[Outgoing]
    ) -> str:
        """Into the account's folders (its Sieve script decides which); what the script sends
        goes into ``outgoing``."""
        # RFC 5321 4.4: the final delivery adds Return-Path with the envelope sender.
        header = f"Return-Path: <{entry.sender}>\r\nDelivered-To: {account.address}\r\n"
        # A check may file the message elsewhere (DMARC quarantine: Junk).
        filings = [Filing(entry.folder or "INBOX")]
        if self.sieve is not None:
            decision = self.sieve.decide(entry, rcpt, account.address, header.encode() + data)
            filings = decision.filings
            outgoing.extend(decision.outgoing)
            for notice in decision.notices:  # the user hears of their script's failure
                self.store.deliver(account.address, notice, "INBOX")
            if decision.discarded:
                # The one case where mail is dropped: the user's own filter said so.
                return f"{account.address}: discarded by its own filter"
        stored = []
        for filing in filings:
            folder = filing.folder
            try:
                uid = self.store.deliver(
                    account.address, header.encode() + data, folder, filing.flags
                )
            except NoSuchFolder:
                # A user's filter may name a folder not made yet: it is made (RFC 5490's
                # :create as the default); a name that cannot be a folder falls back to INBOX.
                try:
                    self.store.create_folder(account.address, folder)
                except (ValueError, OSError):
                    folder = "INBOX"
                uid = self.store.deliver(
                    account.address, header.encode() + data, folder, filing.flags
                )
            stored.append(f"{folder} uid {uid}")
        if self.after is not None:
            self.after(account.address, data)
        if not stored:  # reject, or redirect only: the message went on, not into a folder
            return f"{account.address}: handled by its own filter"
        return f"{account.address}/{', '.join(stored)}"

    async def deliver(self, entry: QueueEntry, rcpt: str, data: bytes) -> Outcome:
        if self.forwarder is not None and self.forwarder.returns(rcpt):
            return await self.forwarder.return_bounce(entry, rcpt, data)
        found = await asyncio.to_thread(self.directory.expand, rcpt)
        if not found.exists:
            # The address went away between RCPT and delivery.
            return Outcome("bounced", "5.1.1 no such user")
        live = tuple(a for a in found.accounts if a.enabled)
        if found.accounts and not live and not found.remote:
            # Disabled between RCPT and delivery (RCPT refuses it): bounced, not kept.
            return Outcome("bounced", "5.2.1 mailbox disabled")
        found = replace(found, accounts=live)  # a group alias skips its disabled accounts
        if found.remote and forwarding_loop(data, rcpt):
            # RFC 5321 6.3: forwarded from here before and back again: bounce, not again.
            return Outcome("bounced", f"5.4.6 mail forwarding loop for {rcpt}")
        if found.remote and self.forwarder is None:
            return Outcome("deferred", "4.3.5 forwarding is not set up on this node")
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
        return Outcome("delivered", f"2.0.0 delivered to {'; '.join(filed)}")
