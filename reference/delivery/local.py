"""Local delivery: a spooled message into the recipients' mailboxes, and on to the addresses
elsewhere they forward to."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from reference.clock import Clock
from reference.delivery.forward import Forwarder, forwarding_loop
from reference.delivery.outcome import Outcome
from reference.directory import Account, Destinations, Directory, DirectoryError, split_address
from reference.mailbox import MailStore, NoSuchFolder
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
    ) -> None:
        self.directory = directory
        self.store = store
        self.clock = clock
        # Called in the worker thread with (account, message) once it is in the mailbox,
        # e.g. to keep the DMARC aggregate reports that arrive; it must not raise.
        self.after = after
        self.forwarder = forwarder

    def is_local(self, address: str) -> bool:
        if self.forwarder is not None and self.forwarder.returns(address):
            return True  # a bounce to a return path we rewrote: ours to send on
        try:
            _, domain = split_address(address)
        except DirectoryError:
            return False
        return self.directory.is_local_domain(domain)

    def _deliver_sync(self, entry: QueueEntry, found: Destinations, data: bytes) -> list[str]:
        return [self._file(entry, account, data) for account in found.accounts]

    def _file(self, entry: QueueEntry, account: Account, data: bytes) -> str:
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
        return f"{account.address}/{folder} uid {uid}"

    async def deliver(self, entry: QueueEntry, rcpt: str, data: bytes) -> Outcome:
        if self.forwarder is not None and self.forwarder.returns(rcpt):
            return await self.forwarder.return_bounce(entry, rcpt, data)
        found = await asyncio.to_thread(self.directory.expand, rcpt)
        if not found.exists:
            # The address went away between RCPT and delivery.
            return Outcome("bounced", "5.1.1 no such user")
        if found.remote and forwarding_loop(data, rcpt):
            # RFC 5321 6.3: forwarded from here before and back again: bounce, not again.
            return Outcome("bounced", f"5.4.6 mail forwarding loop for {rcpt}")
        if found.remote and self.forwarder is None:
            return Outcome("deferred", "4.3.5 forwarding is not set up on this node")
        filed = await asyncio.to_thread(self._deliver_sync, entry, found, data)
        if found.remote:
            assert self.forwarder is not None
            qid = await self.forwarder.forward(entry, rcpt, found.remote, data)
            filed.append(f"forwarded to {', '.join(found.remote)} as {qid}")
        return Outcome("delivered", f"2.0.0 delivered to {'; '.join(filed)}")
