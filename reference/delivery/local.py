"""Local delivery: a spooled message into the recipient's mailbox."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from reference.clock import Clock
from reference.delivery.filters import Outgoing, SieveFilter
from reference.delivery.outcome import Outcome
from reference.directory import Directory, DirectoryError, split_address
from reference.mailbox import MailStore, NoSuchFolder
from reference.sieve import Filing
from reference.spool import QueueEntry


class LocalDelivery:
    """Into the recipient's mailbox, with Return-Path and Delivered-To added."""

    def __init__(
        self,
        directory: Directory,
        store: MailStore,
        clock: Clock,
        *,
        after: Callable[[str, bytes], None] | None = None,
        sieve: SieveFilter | None = None,
    ) -> None:
        self.directory = directory
        self.store = store
        self.clock = clock
        # Called in the worker thread with (account, message) once it is in the mailbox,
        # e.g. to keep the DMARC aggregate reports that arrive; it must not raise.
        self.after = after
        self.sieve = sieve  # the user's own Sieve script, if the node runs them

    def is_local(self, address: str) -> bool:
        try:
            _, domain = split_address(address)
        except DirectoryError:
            return False
        return self.directory.is_local_domain(domain)

    def _deliver_sync(
        self, entry: QueueEntry, rcpt: str, data: bytes, outgoing: list[Outgoing] | None = None
    ) -> Outcome:
        account = self.directory.resolve(rcpt)  # an alias delivers to its account
        if account is None:
            # The account went away between RCPT and delivery.
            return Outcome("bounced", "5.1.1 no such user")
        # RFC 5321 4.4: the final delivery adds Return-Path with the envelope sender.
        header = f"Return-Path: <{entry.sender}>\r\nDelivered-To: {account.address}\r\n"
        # A check may file the message elsewhere (DMARC quarantine: Junk).
        filings = [Filing(entry.folder or "INBOX")]
        if self.sieve is not None:
            decision = self.sieve.decide(entry, rcpt, account.address, header.encode() + data)
            filings = decision.filings
            if outgoing is not None:
                outgoing.extend(decision.outgoing)
            for notice in decision.notices:  # the user hears of their script's failure
                self.store.deliver(account.address, notice, "INBOX")
            if decision.discarded:
                # The one case where mail is dropped: the user's own filter said so.
                return Outcome("delivered", f"2.0.0 discarded by {account.address}'s own filter")
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
            return Outcome("delivered", f"2.0.0 handled by {account.address}'s own filter")
        return Outcome("delivered", f"2.0.0 delivered to {account.address}/{', '.join(stored)}")

    async def deliver(self, entry: QueueEntry, rcpt: str, data: bytes) -> Outcome:
        outgoing: list[Outgoing] = []
        outcome = await asyncio.to_thread(self._deliver_sync, entry, rcpt, data, outgoing)
        if outgoing and self.sieve is not None:
            # Sent once the message itself is filed: a retried delivery does not send twice.
            await self.sieve.send(entry, outgoing)
        return outcome
