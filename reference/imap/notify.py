"""NOTIFY (RFC 5465): news of mailboxes other than the selected one (STATUS for new,
expunged and changed messages; LIST for mailboxes created, deleted and (un)subscribed),
sent before each tagged reply and while IDLE. The selected mailbox reports as always."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from reference.imap.core import No, SessionCore
from reference.imap.parser import Notify, NotifyGroup
from reference.mailbox import DELIMITER, NoSuchFolder

SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
_SUPPORTED = frozenset(e.upper() for e in SUPPORTED)


@dataclass
class Watch:
    """What NOTIFY SET asked for, and what was last told of each mailbox it covers."""

    groups: tuple[NotifyGroup, ...]
    seen: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)
    subscribed: set[str] = field(default_factory=set)

    def events(self) -> set[str]:
        return {e for g in self.groups for e in g.events}


def status_items(events: set[str]) -> list[str]:
    """RFC 5465 5.1/5.2/5.3: the STATUS items that tell of these events."""
    items: list[str] = []
    if events & {"MESSAGENEW", "MESSAGEEXPUNGE"}:
        items.append("MESSAGES")
    if "MESSAGENEW" in events:
        items += ["UIDNEXT", "UIDVALIDITY"]
    if "FLAGCHANGE" in events:
        items += ["UIDVALIDITY", "HIGHESTMODSEQ"]  # RFC 5465 5.3 with CONDSTORE
    return list(dict.fromkeys(items))


class NotifyCommand(SessionCore):
    async def notify(self, command: Notify) -> None:
        if command.none:
            self.watch = None
            await self.ok(command, "NOTIFY completed")
            return
        unsupported = {e for g in command.groups for e in g.events} - _SUPPORTED
        if unsupported:  # RFC 5465 3.1
            raise No(f"[BADEVENT ({' '.join(SUPPORTED)})] Unsupported event")
        watch = Watch(command.groups)
        user = self.user_address
        watch.folders = set(await asyncio.to_thread(self.store.folders, user))
        watch.subscribed = set(await asyncio.to_thread(self.store.subscriptions, user))
        for name, events in self.watched(watch).items():
            items = status_items(events)
            if not items:
                continue
            try:
                watch.seen[name] = await self.status_key(name)
                if command.status:  # RFC 5465 3.1: the state now, to start from
                    await self.queue(await self.status_line(name, items))
            except NoSuchFolder:
                continue
        self.watch = watch
        await self.ok(command, "NOTIFY completed")

    def watched(self, watch: Watch) -> dict[str, set[str]]:
        """Mailbox name -> the events asked of it, for every mailbox but the selected one."""
        out: dict[str, set[str]] = {}
        for group in watch.groups:
            if group.filter in ("SELECTED", "SELECTED-DELAYED"):
                continue
            names: set[str] = set()
            if group.filter == "INBOXES":
                names = {"INBOX"}  # where new mail is delivered
            elif group.filter == "PERSONAL":
                names = set(watch.folders)
            elif group.filter == "SUBSCRIBED":
                names = watch.subscribed & watch.folders
            else:
                wanted = {self.folder(n) for n in group.names}
                names = {
                    f
                    for f in watch.folders
                    if f in wanted
                    or (
                        group.filter == "SUBTREE"
                        and any(f.startswith(w + DELIMITER) for w in wanted)
                    )
                }
            for name in names:
                out.setdefault(name, set()).update(group.events)
        if self.view is not None:
            out.pop(self.view.name, None)
        return out

    async def status_key(self, name: str) -> tuple[int, int, int, int]:
        status = await asyncio.to_thread(self.store.status, self.user_address, name)
        return (status.messages, status.uidnext, status.uidvalidity, status.highestmodseq)

    async def report_notifications(self) -> None:
        """STATUS for each watched mailbox that changed since it was last told of, LIST for
        mailboxes created, deleted, subscribed or unsubscribed (RFC 5465 5)."""
        watch = self.watch
        if watch is None:
            return
        user = self.user_address
        folders = set(await asyncio.to_thread(self.store.folders, user))
        subscribed = set(await asyncio.to_thread(self.store.subscriptions, user))
        events = watch.events()
        if "MAILBOXNAME" in events:  # RFC 5465 5.4
            for name in sorted(folders - watch.folders):
                await self.queue(self.list_line(name, []))
            for name in sorted(watch.folders - folders):
                await self.queue(self.list_line(name, ["\\NonExistent"]))
        if "SUBSCRIPTIONCHANGE" in events:  # RFC 5465 5.5
            for name in sorted(subscribed - watch.subscribed):
                await self.queue(self.list_line(name, ["\\Subscribed"]))
            for name in sorted(watch.subscribed - subscribed):
                await self.queue(self.list_line(name, []))
        watch.folders, watch.subscribed = folders, subscribed
        for name, asked in self.watched(watch).items():
            items = status_items(asked)
            if not items:
                continue
            try:
                now = await self.status_key(name)
            except NoSuchFolder:
                continue
            before = watch.seen.get(name)
            watch.seen[name] = now
            if before is not None and before != now:
                await self.queue(await self.status_line(name, items))

    def list_line(self, name: str, attributes: list[str]) -> bytes:
        return b'* LIST (%s) "%s" %s' % (
            " ".join(attributes).encode(),
            DELIMITER.encode(),
            self.wire_name(name),
        )
