"""SELECT, EXAMINE, CLOSE and UNSELECT: choosing the mailbox a session works in (with
QRESYNC's resynchronisation on SELECT)."""

from __future__ import annotations

import asyncio
import bisect
import contextlib

from reference.imap import response as r
from reference.imap.core import No, SessionCore, State, View
from reference.imap.parser import Select, SequenceSet, Simple
from reference.mailbox import DELIMITER, Mailbox, MailStore, NoSuchFolder
from reference.mailbox import Status as MailboxStatus


class SelectionCommands(SessionCore):
    async def select(self, command: Select) -> None:
        had_mailbox = self.view is not None
        self.deselect()  # RFC 9051 6.3.2: a failed SELECT leaves no mailbox selected
        if had_mailbox and (self.rev2 or self.qresync):
            await self.queue(b"* OK [CLOSED] Previous mailbox closed")  # RFC 7162 3.2.11
        if command.qresync is not None and not self.qresync:
            await self.bad(command.tag, "QRESYNC is not enabled")  # RFC 7162 3.2.5
            return
        if command.condstore:
            self.condstore = True  # RFC 7162 3.1.8: a CONDSTORE-enabling command
        try:
            name = self.folder(command.mailbox)
            # RFC 3501 6.3.1/6.3.2: SELECT takes the \Recent messages, EXAMINE only counts.
            claim = not (command.readonly or self.rev2)
            mailbox, uids, status, unseen, keywords = await asyncio.to_thread(
                _open, self.store, self.user_address, name, claim
            )
        except (NoSuchFolder, No):
            await self.flush()
            await self.no(command.tag, "[NONEXISTENT] No such mailbox")  # RFC 5530
            return
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake(_path: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be gone at shutdown
                loop.call_soon_threadsafe(changed.set)

        unwatch = self.store.watch(mailbox.path, wake)
        view = View(
            mailbox, name, command.readonly, uids, status.highestmodseq, unwatch, changed, {}
        )
        view.keywords.update(keywords)
        if status.recent:
            view.recent.update(uids[-status.recent :])
        self.view = view
        self.state = State.SELECTED
        flags, permanentflags = self.flags_lines()
        exists = len(uids)
        lines: list[bytes]
        if self.rev2:  # RFC 9051 6.3.2
            lines = [
                b"* %d EXISTS" % exists,
                flags,
                b'* LIST () "%s" %s' % (DELIMITER.encode(), self.wire_name(name)),
                permanentflags,
            ]
        else:  # RFC 3501 6.3.1
            lines = [
                flags,
                permanentflags,
                b"* %d EXISTS" % exists,
                b"* %d RECENT" % len(view.recent),
            ]
            if unseen is not None:
                seq = bisect.bisect_left(uids, unseen) + 1
                lines.append(b"* OK [UNSEEN %d] First unseen" % seq)
        lines.append(b"* OK [UIDVALIDITY %d] UIDs valid" % status.uidvalidity)
        lines.append(b"* OK [UIDNEXT %d] Predicted next UID" % status.uidnext)
        # RFC 7162 3.1.2.1: HIGHESTMODSEQ on every successful SELECT/EXAMINE.
        lines.append(b"* OK [HIGHESTMODSEQ %d] Highest" % status.highestmodseq)
        for line in lines:
            await self.queue(line)
        q = command.qresync
        if q is not None and q.uidvalidity == status.uidvalidity:
            await self.resync(q.modseq, q.known_uids)
        mode = "READ-ONLY" if view.readonly else "READ-WRITE"
        self.log("imap.select", user=self.user, mailbox=name, exists=exists)
        await self.flush()
        await self.ok(command, f"[{mode}] {'EXAMINE' if view.readonly else 'SELECT'} completed")

    async def resync(self, since: int, known: SequenceSet | None) -> None:
        """RFC 7162 3.2.5: what changed since the client's mod-sequence, VANISHED first."""
        view = self.view
        assert view is not None
        changes = await asyncio.to_thread(view.mailbox.changes, since)
        largest = view.uids[-1] if view.uids else 0
        gone = [u for u in changes.expunged if known is None or known.contains(u, largest)]
        if gone:
            await self.queue(b"* VANISHED (EARLIER) " + r.sequence_set(gone).encode())
        await self.announce_keywords(m.flags for m in changes.changed)
        for message in changes.changed:
            seq = self.seq_of(message.uid)
            if seq is not None:
                await self.queue(self.flags_fetch(seq, message))

    async def close(self, command: Simple) -> None:
        view = self.view
        if view is not None and not view.readonly:
            await asyncio.to_thread(view.mailbox.expunge)  # RFC 9051 6.4.1: silently
        self.deselect()
        await self.ok(command, "CLOSE completed")

    async def unselect(self, command: Simple) -> None:
        self.deselect()
        await self.ok(command, "UNSELECT completed")


def _open(
    store: MailStore, user: str, folder: str, claim_recent: bool
) -> tuple[Mailbox, list[int], MailboxStatus, int | None, frozenset[str]]:
    mailbox = store.open(user, folder)
    try:
        return mailbox, *mailbox.snapshot(claim_recent=claim_recent), mailbox.keywords()
    except BaseException:
        mailbox.close()
        raise
