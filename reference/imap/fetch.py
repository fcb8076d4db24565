"""FETCH and UID FETCH: message data read and rendered in batches on a worker thread."""

from __future__ import annotations

import asyncio

from reference.imap import mime
from reference.imap import response as r
from reference.imap.core import SessionCore
from reference.imap.parser import Fetch, FetchAtt, SequenceSet
from reference.mailbox import Mailbox, NoSuchMessage, StoredMessage

FETCH_BATCH = 256  # messages read and rendered per trip to a worker thread

# Items that read the message file; BODY without a section is the non-extensible structure.
_BODY_ITEMS = frozenset(
    {"RFC822", "RFC822.HEADER", "RFC822.TEXT", "ENVELOPE", "BODY", "BODYSTRUCTURE"}
)


class FetchCommand(SessionCore):
    async def fetch(self, command: Fetch) -> None:
        view = self.view
        assert view is not None
        targets = self.resolve(command.sequence, command.uid)
        if targets is None:
            await self.bad(command.tag, "Invalid message sequence number")
            return
        items = list(command.items)
        if command.uid and all(a.name != "UID" for a in items):
            items.insert(0, FetchAtt("UID"))  # RFC 9051 6.4.9: UID FETCH always returns UID
        first = False
        if command.changedsince is not None:
            first = enable_condstore(self)  # RFC 7162 3.1.4.1: MODSEQ comes with each message
            if all(a.name != "MODSEQ" for a in items):
                items.append(FetchAtt("MODSEQ"))
        elif any(a.name == "MODSEQ" for a in items):
            first = enable_condstore(self)  # RFC 7162 3.1: FETCH MODSEQ enables CONDSTORE
        if command.vanished and command.changedsince is not None:
            await self.vanished_earlier(command.changedsince, command.sequence)
        uids = [u for _, u in targets]
        marked: set[int] = set()
        if not view.readonly and any(a.sets_seen for a in items):  # RFC 9051 6.4.5
            update = await asyncio.to_thread(view.mailbox.update_flags, uids, add=["\\Seen"])
            for message in update.messages:
                if view.reported.get(message.uid, 0) < message.modseq:
                    marked.add(message.uid)
                    view.reported[message.uid] = message.modseq
        has_flags = any(a.name == "FLAGS" for a in items)
        missing = 0
        # Reading files is slow per message, listing flags is not: bigger trips for the latter.
        reads = any(a.section is not None or a.name in _BODY_ITEMS for a in items)
        size = FETCH_BATCH if reads else 16 * FETCH_BATCH
        recent = frozenset() if self.rev2 else frozenset(view.recent)
        for start in range(0, len(targets), size):
            batch = targets[start : start + size]
            try:
                lines, lost, flag_sets = await asyncio.to_thread(
                    _render_fetch,
                    view.mailbox,
                    batch,
                    items,
                    marked if not has_flags else set(),
                    command.changedsince,
                    self.condstore,
                    recent,
                )
            except mime.UnknownEncoding:
                self.discard()
                await self.no(command.tag, "[UNKNOWN-CTE] Cannot decode that part")  # 3516
                return
            missing += lost
            await self.announce_keywords(flag_sets)
            for line in lines:
                await self.queue(line)
        if first:
            await report_highestmodseq(self)
        await self.flush()
        if command.uid:
            await self.refresh()
        if missing:
            # RFC 2180 4.1.3 / RFC 5530 3: another session expunged some of them; the rest
            # are answered, and the code tells the client to NOOP for the EXPUNGEs.
            await self.ok(command, "[EXPUNGEISSUED] Some messages were also expunged")
        else:
            await self.ok(command, "FETCH completed")

    async def vanished_earlier(self, since: int, uids: SequenceSet) -> None:
        view = self.view
        assert view is not None
        changes = await asyncio.to_thread(view.mailbox.changes, since)
        largest = max(view.uids[-1] if view.uids else 0, uids.highest())
        gone = [u for u in changes.expunged if uids.contains(u, largest)]
        if gone:  # RFC 7162 3.2.6
            await self.queue(b"* VANISHED (EARLIER) " + r.sequence_set(gone).encode())


def enable_condstore(session: SessionCore) -> bool:
    """A CONDSTORE-enabling command turns CONDSTORE on; True when this one was the first."""
    first = not session.condstore
    session.condstore = True
    return first


async def report_highestmodseq(session: SessionCore) -> None:
    """The first CONDSTORE-enabling command while a mailbox is selected is answered with
    OK [HIGHESTMODSEQ] (RFC 7162 3.1), so the client knows where it stands."""
    view = session.view
    if view is not None:
        highest = await asyncio.to_thread(lambda: view.mailbox.highestmodseq)
        await session.queue(b"* OK [HIGHESTMODSEQ %d] Highest" % highest)


def _render_fetch(
    mailbox: Mailbox,
    batch: list[tuple[int, int]],
    items: list[FetchAtt],
    marked: set[int],
    changedsince: int | None,
    condstore: bool,
    recent: frozenset[int],
) -> tuple[list[bytes], int, list[frozenset[str]]]:
    """FETCH response lines for a batch of ``(seq, uid)``, how many were gone, and the
    flag lists the lines show (so that their keywords are announced first)."""
    stored = mailbox.get_many(uid for _, uid in batch)
    wants_body = any(a.section is not None or a.name in _BODY_ITEMS for a in items)
    lines: list[bytes] = []
    missing = 0
    shown: list[frozenset[str]] = []
    shows_flags = bool(marked) or any(a.name == "FLAGS" for a in items)
    for seq, uid in batch:
        message = stored.get(uid)
        if message is None:
            missing += 1
            continue
        if changedsince is not None and message.modseq <= changedsince:
            continue
        data = b""
        if wants_body:
            try:
                data = mailbox.read(uid)
            except NoSuchMessage:
                missing += 1
                continue
        flags = message.flags | {"\\Recent"} if uid in recent else message.flags
        if shows_flags:
            shown.append(flags)
        parts = [_fetch_item(a, message, data, flags) for a in items]
        if uid in marked:  # RFC 9051 6.4.5: the implicit \Seen is reported
            parts.append(b"FLAGS " + r.flag_list(flags))
            if condstore and all(a.name != "MODSEQ" for a in items):
                parts.append(b"MODSEQ (%d)" % message.modseq)
        lines.append(b"* %d FETCH (%s)" % (seq, b" ".join(parts)))
    return lines, missing, shown


def _fetch_item(att: FetchAtt, message: StoredMessage, data: bytes, flags: frozenset[str]) -> bytes:
    name = att.name
    if name == "UID":
        return b"UID %d" % message.uid
    if name == "FLAGS":
        return b"FLAGS " + r.flag_list(flags)
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + r.internaldate(message.internaldate)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % message.size
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % message.modseq  # RFC 7162 3.1.4
    if name == "ENVELOPE":
        return b"ENVELOPE " + r.render(mime.envelope(mime.split(data)[0]))
    if name in ("BODYSTRUCTURE", "BODY") and att.section is None:
        structure = mime.bodystructure(mime.parse(data), extensible=name == "BODYSTRUCTURE")
        return name.encode() + b" " + r.render(structure)
    if name == "BINARY.SIZE":
        assert att.section is not None
        decoded = mime.binary(data, att.section.part)
        return b"%s %d" % (att.label().encode(), len(decoded or b""))
    if name == "BINARY":
        assert att.section is not None
        decoded = mime.binary(data, att.section.part)
        if decoded is None:
            return att.label().encode() + b" NIL"
        part = r.partial(att, decoded)
        body = r.literal8(part) if b"\0" in part else r.literal(part)
        return att.label().encode() + b" " + body
    return att.label().encode("ascii") + b" " + r.literal(r.body_part(att, data))
