"""APPEND (RFC 9051 6.3.12) with MULTIAPPEND (RFC 3502) and UIDPLUS's APPENDUID."""

from __future__ import annotations

import asyncio

from reference.imap import mime
from reference.imap import response as r
from reference.imap.core import No, SessionCore
from reference.imap.parser import Append, AppendMessage
from reference.mailbox import MailStore, NoSuchFolder, QuotaExceeded


class AppendCommand(SessionCore):
    async def append(self, command: Append) -> None:
        name = self.folder(command.mailbox)
        try:
            validity, uids = await asyncio.to_thread(
                append_all, self.store, self.user_address, name, command.messages
            )
        except NoSuchFolder:
            raise No("[TRYCREATE] No such mailbox") from None  # RFC 9051 6.3.12
        except QuotaExceeded:
            raise No("[OVERQUOTA] Quota exceeded") from None  # RFC 9208 4.3
        except ValueError:
            await self.bad(command.tag, "Invalid flag")
            return
        size = sum(len(m.message) for m in command.messages)
        self.log("imap.append", user=self.user, mailbox=name, uids=len(uids), size=size)
        if self.view is not None and self.view.name == name:
            await self.refresh()  # RFC 9051 6.3.12: EXISTS for the selected mailbox
        appended = r.sequence_set(uids)  # RFC 4315 3: a uid-set for a MULTIAPPEND
        await self.ok(command, f"[APPENDUID {validity} {appended}] APPEND completed")


def append_all(
    store: MailStore, address: str, folder: str, messages: tuple[AppendMessage, ...]
) -> tuple[int, list[int]]:
    """Append every message or none (RFC 3502 3): ``(uidvalidity, uids)``. The quota is
    checked for all of them first; a later failure expunges the ones already stored."""
    datas = [
        mime.encode_binary_parts(m.message) if m.binary else m.message  # RFC 3516 4.3
        for m in messages
    ]
    if len(datas) > 1:
        store.check_quota(address, sum(len(d) for d in datas))
    validity, uids = 0, []
    try:
        for message, data in zip(messages, datas, strict=True):
            validity, uid = store.append(address, folder, data, message.flags, message.date)
            uids.append(uid)
    except BaseException:
        if uids:
            with store.open(address, folder, sync=False) as mailbox:
                mailbox.update_flags(uids, add=["\\Deleted"])
                mailbox.expunge(uids)
        raise
    return validity, uids
