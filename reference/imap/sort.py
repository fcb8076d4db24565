"""SORT (RFC 5256, with ESORT and CONTEXT=SORT of RFC 5267) and THREAD (RFC 5256): the
commands; the orders themselves are in :mod:`reference.imap.threads`."""

from __future__ import annotations

import asyncio

from reference.imap import mime, threads
from reference.imap.parser import Search, Sort, Thread
from reference.imap.search import (
    Hits,
    SearchCommand,
    Update,
    esearch_line,
    search_mailbox,
    searchable_text,
    sort_fields,
)
from reference.mailbox import Mailbox, NoSuchMessage

CHARSETS = ("US-ASCII", "UTF-8")
_HEADERLESS = frozenset({"ARRIVAL", "SIZE"})  # sort keys the index answers alone


def facts_of(mailbox: Mailbox, hits: Hits, *, headers: bool = True) -> list[threads.Facts]:
    """What SORT and THREAD look at for each hit: the header fields from the mailbox's text
    index (brought up to date first), from the file only for a message it lacks; a message
    expunged meanwhile by another session is left out."""
    stored = mailbox.get_many(hits.uids)
    indexed: dict[int, str] = {}
    if headers and mailbox.has_text_index:
        mailbox.index_texts(searchable_text)
        indexed = mailbox.header_fields(hits.uids)
    out: list[threads.Facts] = []
    for seq, uid, _ in hits:
        message = stored.get(uid)
        if message is None:
            continue
        header: list[tuple[str, str]] = []
        if uid in indexed:
            header = sort_fields(indexed[uid])
        elif headers:
            try:
                header = mime.fields(mime.split(mailbox.read(uid))[0])
            except NoSuchMessage:
                continue
        out.append(threads.Facts(seq, uid, message.size, message.internaldate, header))
    return out


def sorted_hits(
    mailbox: Mailbox,
    uids: list[int],
    command: Sort,
    saved: frozenset[int],
    recent: frozenset[int],
) -> list[threads.Facts]:
    hits = search_mailbox(mailbox, uids, command.keys, saved, recent)
    headers = any(key not in _HEADERLESS for key, _ in command.criteria)
    return threads.sort(facts_of(mailbox, hits, headers=headers), command.criteria)


class SortCommands(SearchCommand):
    async def sort(self, command: Sort) -> None:
        if command.charset not in CHARSETS:
            await self.no(command.tag, "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset")
            return
        ordered = await self.sorted_uids(command)
        numbers = ordered if command.uid else [self.seq_of(u) or 0 for u in ordered]
        if command.returns is None:
            await self.send(b" ".join([b"* SORT", *(b"%d" % n for n in numbers)]))
        else:  # RFC 5267 3: ESORT answers in an ESEARCH response
            await self.send(esearch_line(command, numbers, ordered=True))
        if command.uid:
            await self.refresh()
        await self.ok(command, "SORT completed")
        if "UPDATE" in (command.returns or ()):
            self.updates[command.tag] = Update(command, ordered)

    async def sorted_uids(self, command: Sort) -> list[int]:
        view = self.view
        assert view is not None
        recent = frozenset() if self.rev2 else frozenset(view.recent)
        ordered = await asyncio.to_thread(
            sorted_hits, view.mailbox, list(view.uids), command, self.saved, recent
        )
        return [f.uid for f in ordered]

    async def result_uids(self, command: Search | Sort) -> list[int]:
        if isinstance(command, Sort):
            return await self.sorted_uids(command)
        return await super().result_uids(command)

    async def thread(self, command: Thread) -> None:
        view = self.view
        assert view is not None
        if command.charset not in CHARSETS:
            await self.no(command.tag, "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset")
            return
        recent = frozenset() if self.rev2 else frozenset(view.recent)
        hits = await asyncio.to_thread(
            search_mailbox, view.mailbox, list(view.uids), command.keys, self.saved, recent
        )
        facts = await asyncio.to_thread(facts_of, view.mailbox, hits)
        if command.algorithm == "ORDEREDSUBJECT":
            roots = threads.ordered_subject(facts)
        else:
            roots = threads.references(facts)
        await self.send(b"* THREAD " + threads.render(roots, "uid" if command.uid else "seq"))
        if command.uid:
            await self.refresh()
        await self.ok(command, "THREAD completed")
