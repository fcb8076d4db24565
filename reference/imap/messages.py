"""STORE, COPY, MOVE and EXPUNGE: the commands that change the selected mailbox's
messages (and tell the spam trainer about moves into and out of Junk)."""

from __future__ import annotations

import asyncio
import contextlib

from reference.imap import response as r
from reference.imap.core import No, SessionCore, log
from reference.imap.parser import Copy, Expunge, Store
from reference.mailbox import Mailbox, MailStore, NoSuchMessage, QuotaExceeded

JUNK, TRASH = "Junk", "Trash"


class MessageCommands(SessionCore):
    async def store_flags(self, command: Store) -> None:
        view = self.view
        assert view is not None
        if view.readonly:
            raise No("[READ-ONLY] Mailbox is read-only")
        targets = self.resolve(command.sequence, command.uid)
        if targets is None:
            await self.bad(command.tag, "Invalid message sequence number")
            return
        if command.unchangedsince is not None:
            self.condstore = True  # RFC 7162 3.1.8
        seq_of = {u: n for n, u in targets}
        try:
            update = await asyncio.to_thread(
                view.mailbox.update_flags,
                list(seq_of),
                add=command.flags if command.mode == "+" else (),
                remove=command.flags if command.mode == "-" else (),
                replace=command.flags if command.mode == "" else None,
                unchanged_since=command.unchangedsince,
            )
        except ValueError:
            await self.bad(command.tag, "Invalid flag")
            return
        await self.announce_keywords(m.flags for m in update.messages)
        for message in update.messages:
            view.reported[message.uid] = message.modseq
            # RFC 9051 6.4.6: FETCH responses with the new flags unless .SILENT; RFC 7162
            # 3.1.3: with UNCHANGEDSINCE the changed ones are told even when silent.
            if not command.silent or command.unchangedsince is not None:
                await self.queue(self.flags_fetch(seq_of[message.uid], message, uid=command.uid))
        await self.flush()
        if command.uid:
            await self.refresh()
        if update.modified:
            numbers = update.modified if command.uid else [seq_of[u] for u in update.modified]
            modified = r.sequence_set(numbers)
            await self.ok(command, f"[MODIFIED {modified}] Conditional STORE failed")
        else:
            await self.ok(command, "STORE completed")

    async def copy(self, command: Copy) -> None:
        view = self.view
        assert view is not None
        verb = "MOVE" if command.move else "COPY"
        targets = self.resolve(command.sequence, command.uid)
        if targets is None:
            await self.bad(command.tag, "Invalid message sequence number")
            return
        if command.move and view.readonly:
            raise No("[READ-ONLY] Mailbox is read-only")
        user = self.user_address
        dest = self.folder(command.mailbox)
        if not await asyncio.to_thread(self.store.exists, user, dest):
            raise No("[TRYCREATE] No such mailbox")  # RFC 9051 6.4.7
        uids = [u for _, u in targets]
        try:
            validity, pairs, trained = await asyncio.to_thread(
                _transfer, self.store, view.mailbox, user, dest, uids, command.move
            )
        except QuotaExceeded:
            raise No("[OVERQUOTA] Quota exceeded") from None
        self.train(view.name, dest, trained)
        self.log("imap.copy", user=user, verb=verb, to=dest, count=len(pairs))
        if not pairs:
            await self.ok(command, f"{verb} completed")  # nothing to do (RFC 4315 3)
            return
        sources = ",".join(str(a) for a, _ in pairs)
        copies = ",".join(str(b) for _, b in pairs)
        copyuid = f"[COPYUID {validity} {sources} {copies}]"
        if not command.move:
            await self.ok(command, f"{copyuid} COPY completed")
            return
        # RFC 6851 4.3: COPYUID in an untagged OK, then the expunges, then the tagged OK.
        await self.queue(f"* OK {copyuid} Moved".encode())
        await self.report_expunged([a for a, _ in pairs])
        if view.name == dest:
            await self.refresh()
        await self.flush()
        await self.ok(command, "MOVE completed")

    def train(self, source: str, dest: str, messages: list[bytes]) -> None:
        hook = self.server.on_junk
        if hook is None or not messages or source == dest:
            return
        is_spam = dest == JUNK
        user = self.user_address

        def run() -> None:
            for data in messages:
                try:
                    hook(user, data, is_spam)
                except Exception:
                    log.exception("imap.junk-hook session=%s", self.id)

        task = asyncio.get_running_loop().run_in_executor(None, run)
        task.add_done_callback(lambda _t: None)

    async def expunge(self, command: Expunge) -> None:
        view = self.view
        assert view is not None
        if view.readonly:
            raise No("[READ-ONLY] Mailbox is read-only")
        only: list[int] | None = None
        if command.uids is not None:  # RFC 4315 2.1 UID EXPUNGE
            targets = self.resolve(command.uids, True) or []
            only = [u for _, u in targets]
        gone = await asyncio.to_thread(view.mailbox.expunge, only)
        await self.report_expunged(gone)
        await self.refresh()
        await self.ok(command, "EXPUNGE completed")


def _transfer(
    store: MailStore, source: Mailbox, user: str, dest: str, uids: list[int], move: bool
) -> tuple[int, list[tuple[int, int]], list[bytes]]:
    """COPY or MOVE ``uids`` to ``dest``; returns its UIDVALIDITY, the UID pairs and the
    messages the spam trainer should see (when Junk is at either end)."""
    with store.open(user, dest) as target:
        source_name = source.name
        train = (dest == JUNK) != (source_name == JUNK) and not (
            source_name == JUNK and dest == TRASH
        )
        trained: list[bytes] = []
        if train:
            for uid in uids:
                with contextlib.suppress(NoSuchMessage):
                    trained.append(source.read(uid))
        if move:
            pairs = source.move_to(target, uids)
        else:
            found = source.get_many(uids)
            store.check_quota(user, sum(m.size for m in found.values()), len(found))
            pairs = source.copy_to(target, uids)
        return target.uidvalidity, pairs, trained
