"""APPEND (RFC 9051 6.3.12, with UIDPLUS's APPENDUID)."""

from __future__ import annotations

import asyncio

from reference.imap import mime
from reference.imap.core import No, SessionCore
from reference.imap.parser import Append
from reference.mailbox import NoSuchFolder, QuotaExceeded


class AppendCommand(SessionCore):
    async def append(self, command: Append) -> None:
        name = self.folder(command.mailbox)
        data = command.message
        if command.binary:  # RFC 3516 4.3: binary parts are stored as base64
            data = await asyncio.to_thread(mime.encode_binary_parts, data)
        try:
            validity, uid = await asyncio.to_thread(
                self.store.append,
                self.user_address,
                name,
                data,
                command.flags,
                command.date,
            )
        except NoSuchFolder:
            raise No("[TRYCREATE] No such mailbox") from None  # RFC 9051 6.3.12
        except QuotaExceeded:
            raise No("[OVERQUOTA] Quota exceeded") from None  # RFC 9208 4.3
        except ValueError:
            await self.bad(command.tag, "Invalid flag")
            return
        self.log("imap.append", user=self.user, mailbox=name, uid=uid, size=len(command.message))
        if self.view is not None and self.view.name == name:
            await self.refresh()  # RFC 9051 6.3.12: EXISTS for the selected mailbox
        await self.ok(command, f"[APPENDUID {validity} {uid}] APPEND completed")  # RFC 4315
