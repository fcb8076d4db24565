"""APPEND (RFC 9051 6.3.12) with MULTIAPPEND (RFC 3502), CATENATE (RFC 4469) and UIDPLUS's
APPENDUID."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import urllib.parse
from collections.abc import Callable

from reference.imap import mime
from reference.imap import response as r
from reference.imap.core import No, SessionCore
from reference.imap.parser import Append, AppendMessage
from reference.mailbox import MailStore, NoSuchFolder, NoSuchMessage, QuotaExceeded

# RFC 5092 (IMAP URL) as CATENATE uses it (RFC 4469 5): a message, or a section or a
# partial of one, in a mailbox of the same account; the server part may be left out.
_URL = re.compile(
    r"(?:imap://[^/]*)?/(?P<mailbox>[^;/]+)(?:;UIDVALIDITY=(?P<validity>[0-9]+))?"
    r"/;UID=(?P<uid>[0-9]+)(?:/;SECTION=(?P<section>[^/]+))?"
    r"(?:/;PARTIAL=(?P<offset>[0-9]+)(?:\.(?P<length>[0-9]+))?)?",
    re.IGNORECASE,
)
_SECTION = re.compile(
    r"(?P<part>[0-9]+(?:\.[0-9]+)*)?\.?"
    r"(?P<text>HEADER\.FIELDS(?:\.NOT)? \((?P<fields>[^)]*)\)|HEADER|TEXT|MIME)?",
    re.IGNORECASE,
)


class BadUrl(Exception):
    """A CATENATE URL that names nothing this account can read (RFC 4469 5: BADURL)."""


def url_octets(store: MailStore, address: str, folder_of: Callable[[str], str], url: str) -> bytes:
    """The octets a CATENATE URL names: a whole message, a section, or a partial of one."""
    m = _URL.fullmatch(url)
    if m is None:
        raise BadUrl(url)
    section = _SECTION.fullmatch(urllib.parse.unquote(m.group("section") or ""))
    if section is None or (
        (section.group("text") or "").upper() == "MIME" and not section.group("part")
    ):
        raise BadUrl(url)
    try:
        name = folder_of(urllib.parse.unquote(m.group("mailbox")))
        with store.open(address, name, sync=False) as mailbox:
            validity = m.group("validity")
            if validity is not None and int(validity) != mailbox.uidvalidity:
                raise BadUrl(url)
            data = mailbox.read(int(m.group("uid")))
    except (No, NoSuchFolder, NoSuchMessage) as e:
        raise BadUrl(url) from e
    if section.group(0):
        numbers = tuple(int(n) for n in (section.group("part") or "").split(".") if n)
        text = (section.group("text") or "").upper()
        names = tuple((section.group("fields") or "").upper().split())
        if text.startswith("HEADER.FIELDS"):
            text = text.split(" ", 1)[0]
        data = mime.section(data, numbers, text, names)
    if m.group("offset") is not None:
        start = int(m.group("offset"))
        length = m.group("length")
        data = data[start : start + int(length)] if length is not None else data[start:]
    return data


def catenated(
    store: MailStore,
    address: str,
    folder_of: Callable[[str], str],
    messages: tuple[AppendMessage, ...],
) -> tuple[AppendMessage, ...]:
    """The messages with their CATENATE parts joined into octets (RFC 4469 5)."""
    out: list[AppendMessage] = []
    for message in messages:
        if message.catenate:
            octets = b"".join(
                part.text if part.url is None else url_octets(store, address, folder_of, part.url)
                for part in message.catenate
            )
            message = dataclasses.replace(message, message=octets, catenate=())
        out.append(message)
    return tuple(out)


class AppendCommand(SessionCore):
    async def append(self, command: Append) -> None:
        name = self.folder(command.mailbox)
        messages = command.messages
        address = self.user_address
        try:
            if any(m.catenate for m in messages):
                if not await asyncio.to_thread(self.store.exists, address, name):
                    raise NoSuchFolder(name)
                messages = await asyncio.to_thread(
                    catenated, self.store, address, self.folder, messages
                )
            validity, uids = await asyncio.to_thread(
                append_all, self.store, address, name, messages
            )
        except NoSuchFolder:
            raise No("[TRYCREATE] No such mailbox") from None  # RFC 9051 6.3.12
        except QuotaExceeded:
            raise No("[OVERQUOTA] Quota exceeded") from None  # RFC 9208 4.3
        except BadUrl as e:  # RFC 4469 6: the URL that failed
            raise No(f"[BADURL {e}] Invalid CATENATE URL") from None
        except ValueError:
            await self.bad(command.tag, "Invalid flag")
            return
        size = sum(len(m.message) for m in messages)
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
