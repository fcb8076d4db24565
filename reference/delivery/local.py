"""Local delivery: a spooled message into the recipient's mailbox."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from reference.clock import Clock
from reference.delivery.outcome import Outcome
from reference.directory import Directory, DirectoryError, split_address
from reference.mailbox import MailStore, NoSuchFolder
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
    ) -> None:
        self.directory = directory
        self.store = store
        self.clock = clock
        # Called in the worker thread with (account, message) once it is in the mailbox,
        # e.g. to keep the DMARC aggregate reports that arrive; it must not raise.
        self.after = after

    def is_local(self, address: str) -> bool:
        try:
            _, domain = split_address(address)
        except DirectoryError:
            return False
        return self.directory.is_local_domain(domain)

    def _deliver_sync(self, entry: QueueEntry, rcpt: str, data: bytes) -> Outcome:
        account = self.directory.resolve(rcpt)  # an alias delivers to its account
        if account is None:
            # The account went away between RCPT and delivery.
            return Outcome("bounced", "5.1.1 no such user")
        # RFC 5321 4.4: the final delivery adds Return-Path with the envelope sender.
        header = f"Return-Path: <{entry.sender}>\r\nDelivered-To: {account.address}\r\n"
        # A check may file the message elsewhere (DMARC quarantine: Junk).
        folder = entry.folder or "INBOX"
        try:
            uid = self.store.deliver(account.address, header.encode() + data, folder)
        except NoSuchFolder:
            folder = "INBOX"
            uid = self.store.deliver(account.address, header.encode() + data, folder)
        if self.after is not None:
            self.after(account.address, data)
        return Outcome("delivered", f"2.0.0 delivered to {account.address}/{folder} uid {uid}")

    async def deliver(self, entry: QueueEntry, rcpt: str, data: bytes) -> Outcome:
        return await asyncio.to_thread(self._deliver_sync, entry, rcpt, data)
