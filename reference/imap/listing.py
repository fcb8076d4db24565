"""LIST and LSUB (RFC 9051 6.3.9, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819,
SPECIAL-USE RFC 6154)."""

from __future__ import annotations

import asyncio
import contextlib
import re

from reference.imap import mutf7
from reference.imap.core import SessionCore
from reference.imap.parser import ListMailboxes
from reference.mailbox import DELIMITER, SPECIAL_USE, NoSuchFolder


class ListCommands(SessionCore):
    async def list_mailboxes(self, command: ListMailboxes) -> None:
        kind = "LSUB" if command.lsub else "LIST"
        if command.patterns == ("",) and not command.extended:
            # RFC 9051 6.3.9: an empty pattern asks for the delimiter and the root.
            await self.send(b'* %s (\\Noselect) "%s" ""' % (kind.encode(), DELIMITER.encode()))
            await self.ok(command, f"{kind} completed")
            return
        user = self.user_address
        folders = await asyncio.to_thread(self.store.folders, user)
        subscribed = set(await asyncio.to_thread(self.store.subscriptions, user))
        existing = set(folders)
        select = set(command.selection)
        if "RECURSIVEMATCH" in select and not select - {"RECURSIVEMATCH"}:
            await self.bad(command.tag, "RECURSIVEMATCH needs another selection option")
            return  # RFC 5258 3.1
        only_subscribed = command.lsub or "SUBSCRIBED" in select
        show_subscribed = only_subscribed or "SUBSCRIBED" in command.returns
        # RFC 9051 6.3.9: levels that exist only as parents are listed as \Noselect.
        parents = {
            DELIMITER.join(f.split(DELIMITER)[:n])
            for f in folders
            for n in range(1, f.count(DELIMITER) + 1)
        } - existing
        names = subscribed if only_subscribed else existing | parents
        if "SPECIAL-USE" in select:  # RFC 6154 3
            names = {n for n in names if n in SPECIAL_USE and n in existing}
        patterns = [
            _list_pattern(self.pattern(command.reference) + self.pattern(p))
            for p in command.patterns
        ]
        ordered = sorted(names, key=lambda n: (n != "INBOX", n.lower(), n))
        for name in ordered:
            if not any(p.fullmatch(name) or (name == "INBOX" and _inbox(p)) for p in patterns):
                continue
            attributes: list[str] = []
            if name not in existing and name not in parents:
                # Subscribed, but gone: RFC 5258 3 for LIST, RFC 3501 6.3.9 for LSUB.
                attributes.append("\\Noselect" if command.lsub else "\\NonExistent")
            elif name in parents:
                attributes.append("\\Noselect")
            if name in existing or name in parents:
                children = any(f.startswith(name + DELIMITER) for f in folders)
                attributes.append("\\HasChildren" if children else "\\HasNoChildren")  # 3348
            if show_subscribed and name in subscribed and not command.lsub:
                attributes.append("\\Subscribed")
            if name in SPECIAL_USE and name in existing:
                attributes.append(SPECIAL_USE[name])  # RFC 6154 2
            await self.queue(
                b'* %s (%s) "%s" %s'
                % (kind.encode(), " ".join(attributes).encode(), DELIMITER.encode(),
                   self.wire_name(name))
            )  # fmt: skip
            if command.status and name in existing:  # RFC 5819
                with contextlib.suppress(NoSuchFolder):
                    await self.queue(await self.status_line(name, command.status))
        await self.flush()
        await self.ok(command, f"{kind} completed")

    def pattern(self, raw: str) -> str:
        if self.utf8 or not raw.isascii():
            return raw
        try:
            return mutf7.decode(raw)
        except ValueError:
            return raw


def _list_pattern(pattern: str) -> re.Pattern[str]:
    """RFC 9051 6.3.9: ``*`` matches anything, ``%`` anything but the hierarchy delimiter."""
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "%":
            parts.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def _inbox(pattern: re.Pattern[str]) -> bool:
    return re.compile(pattern.pattern, re.IGNORECASE | re.DOTALL).fullmatch("INBOX") is not None
