"""GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 9208): one quota root per account, set by the
administrator."""

from __future__ import annotations

import asyncio

from reference.imap.core import No, SessionCore
from reference.imap.parser import MailboxCommand, SetQuota


class QuotaCommands(SessionCore):
    async def getquota(self, command: MailboxCommand) -> None:
        if command.mailbox != "" or self.store.quota_for(self.user_address).unlimited:
            raise No("[NONEXISTENT] No such quota root")  # RFC 9208 4.2
        await self.send(await self.quota_line())
        await self.ok(command, "GETQUOTA completed")

    async def quota_line(self) -> bytes:
        """RFC 9208 5.1: ``* QUOTA "" (STORAGE used limit MESSAGE used limit)``; STORAGE in
        units of 1024 octets."""
        user = self.user_address
        quota = self.store.quota_for(user)
        usage = await asyncio.to_thread(self.store.usage, user)
        parts: list[str] = []
        if quota.bytes:
            parts.append(f"STORAGE {-(-usage.bytes // 1024)} {quota.bytes // 1024}")
        if quota.messages:
            parts.append(f"MESSAGE {usage.messages} {quota.messages}")
        return b'* QUOTA "" (' + " ".join(parts).encode() + b")"

    async def getquotaroot(self, command: MailboxCommand) -> None:
        user = self.user_address
        name = self.folder(command.mailbox)
        if not await asyncio.to_thread(self.store.exists, user, name):
            raise No("[NONEXISTENT] No such mailbox")
        quota = self.store.quota_for(user)
        roots = b"" if quota.unlimited else b' ""'  # one root, the account, named ""
        await self.send(b"* QUOTAROOT %s%s" % (self.wire_name(name), roots))
        if not quota.unlimited:
            await self.send(await self.quota_line())
        await self.ok(command, "GETQUOTAROOT completed")

    async def setquota(self, command: SetQuota) -> None:
        await self.no(command.tag, "[NOPERM] Quotas are set by the administrator")
