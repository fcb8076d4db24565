"""CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS and NAMESPACE: the account's
mailboxes (LIST and LSUB are in :mod:`reference.imap.listing`)."""

from __future__ import annotations

import asyncio

from reference.imap.core import No, SessionCore
from reference.imap.parser import MailboxCommand, Rename, Simple, Status
from reference.mailbox import CREATABLE_USES, DELIMITER, FolderExists, NoSuchFolder


class MailboxCommands(SessionCore):
    async def create(self, command: MailboxCommand) -> None:
        # RFC 9051 6.3.4: a trailing delimiter says children will follow; drop it.
        name = self.folder(command.mailbox.rstrip(DELIMITER) or command.mailbox)
        if name == "INBOX":
            raise No("[ALREADYEXISTS] INBOX always exists")
        uses = ["\\" + use[1:].capitalize() for use in command.uses]  # \\drafts as \\Drafts
        if any(use not in CREATABLE_USES for use in uses):  # RFC 6154 5.1
            raise No("[USEATTR] Unsupported special-use attribute")
        try:
            await asyncio.to_thread(
                self.store.create_folder, self.user_address, name, exclusive=True, uses=uses
            )
        except FolderExists:
            raise No("[ALREADYEXISTS] Mailbox already exists") from None
        await self.ok(command, "CREATE completed")

    async def delete(self, command: MailboxCommand) -> None:
        name = self.folder(command.mailbox)
        if name == "INBOX":
            raise No("[CANNOT] INBOX cannot be deleted")  # RFC 9051 6.3.5
        if self.view is not None and self.view.name == name:
            self.deselect()
        try:
            await asyncio.to_thread(self.store.delete_folder, self.user_address, name)
        except NoSuchFolder:
            raise No("[NONEXISTENT] No such mailbox") from None
        await self.ok(command, "DELETE completed")

    async def subscribe(self, command: MailboxCommand) -> None:
        """SUBSCRIBE and UNSUBSCRIBE."""
        name = self.folder(command.mailbox)
        if command.name == "SUBSCRIBE":
            await asyncio.to_thread(self.store.subscribe, self.user_address, name)
        else:
            await asyncio.to_thread(self.store.unsubscribe, self.user_address, name)
        await self.ok(command, f"{command.name} completed")

    async def rename(self, command: Rename) -> None:
        old, new = self.folder(command.old), self.folder(command.new.rstrip(DELIMITER))
        try:
            await asyncio.to_thread(self.store.rename_folder, self.user_address, old, new)
        except NoSuchFolder:
            raise No("[NONEXISTENT] No such mailbox") from None
        except FolderExists:
            raise No("[ALREADYEXISTS] Target mailbox exists") from None
        await self.ok(command, "RENAME completed")

    async def status(self, command: Status) -> None:
        name = self.folder(command.mailbox)
        try:
            line = await self.status_line(name, command.items)
        except NoSuchFolder:
            raise No("[NONEXISTENT] No such mailbox") from None
        await self.send(line)
        await self.ok(command, "STATUS completed")

    async def namespace(self, command: Simple) -> None:
        # RFC 2342 5: one personal namespace, no other users', no shared ones.
        await self.send(b'* NAMESPACE (("" "%s")) NIL NIL' % DELIMITER.encode())
        await self.ok(command, "NAMESPACE completed")
