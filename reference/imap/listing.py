"""LIST and LSUB (RFC 9051 6.3.9, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819,
SPECIAL-USE RFC 6154)."""

from __future__ import annotations

import asyncio
import contextlib
import re

from reference.imap import mutf7
from reference.imap.core import SessionCore
from reference.imap.parser import ListMailboxes
from reference.mailbox import DELIMITER, NoSuchFolder


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
        uses = await asyncio.to_thread(self.store.special_uses, user)
        select = set(command.selection)
        only_subscribed = command.lsub or "SUBSCRIBED" in select
        show_subscribed = only_subscribed or "SUBSCRIBED" in command.returns
        # RFC 5258 4: with the extended syntax, children are told only when asked for.
        show_children = not command.lsub and (not command.extended or "CHILDREN" in command.returns)
        # RFC 9051 6.3.9: levels that exist only as parents are listed as \Noselect.
        parents = {p for f in folders for p in _ancestors(f)} - existing
        patterns = [
            _list_pattern(self.pattern(command.reference) + self.pattern(p))
            for p in command.patterns
        ]

        def matches(name: str) -> bool:
            return any(p.fullmatch(name) or (name == "INBOX" and _inbox(p)) for p in patterns)

        names = {n for n in (subscribed if only_subscribed else existing | parents) if matches(n)}
        if "SPECIAL-USE" in select:  # RFC 6154 3
            names = {n for n in names if n in uses and n in existing}
        # A subscribed name the patterns hide (foo/bar for "%") shows through its ancestors
        # that match: LSUB lists them as \Noselect (RFC 3501 6.3.9), LIST (SUBSCRIBED
        # RECURSIVEMATCH) with CHILDINFO (RFC 5258 3.5).
        childinfo: set[str] = set()
        recursive = "RECURSIVEMATCH" in select and "SUBSCRIBED" in select
        if command.lsub or recursive:
            for name in subscribed:
                if matches(name):
                    continue
                for ancestor in _ancestors(name):
                    if matches(ancestor):
                        childinfo.add(ancestor)
            if command.lsub:
                childinfo -= subscribed
            names |= childinfo
        ordered = sorted(names, key=lambda n: (n != "INBOX", n.lower(), n))
        for name in ordered:
            attributes: list[str] = []
            listed_for_child = name in childinfo and name not in subscribed
            if command.lsub:
                if name not in existing or listed_for_child:
                    attributes.append("\\Noselect")  # RFC 3501 6.3.9
            else:
                if name not in existing and name not in parents:
                    attributes.append("\\NonExistent")  # RFC 5258 3: subscribed, but gone
                elif name in parents:
                    attributes.append("\\Noselect")
                if show_children and (name in existing or name in parents):
                    children = any(f.startswith(name + DELIMITER) for f in folders)
                    attributes.append("\\HasChildren" if children else "\\HasNoChildren")
                if show_subscribed and name in subscribed:
                    attributes.append("\\Subscribed")
                if name in existing:
                    attributes += uses.get(name, [])  # RFC 6154 2
            extra = b' ("CHILDINFO" ("SUBSCRIBED"))' if recursive and name in childinfo else b""
            await self.queue(
                b'* %s (%s) "%s" %s%s'
                % (kind.encode(), " ".join(attributes).encode(), DELIMITER.encode(),
                   self.wire_name(name), extra)
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


def _ancestors(name: str) -> list[str]:
    """``a`` and ``a/b`` for ``a/b/c``."""
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:n]) for n in range(1, len(levels))]


def _inbox(pattern: re.Pattern[str]) -> bool:
    return re.compile(pattern.pattern, re.IGNORECASE | re.DOTALL).fullmatch("INBOX") is not None
