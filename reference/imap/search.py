"""SEARCH: the command, the query it runs on the mailbox index, and the evaluation of the
keys the index cannot answer against one message (pure but for a lazy loader)."""

from __future__ import annotations

import asyncio
import calendar
import datetime
import email.errors
import email.header
import email.utils
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from reference.imap import addresses, mime
from reference.imap import response as r
from reference.imap.core import SessionCore
from reference.imap.fetch import enable_condstore, report_highestmodseq
from reference.imap.parser import CancelUpdate, Search, SearchKey, SequenceSet, Sort
from reference.mailbox import Mailbox, NoSuchMessage
from reference.mailbox.index import SEARCHED_FIELDS

_FLAG_OF = {
    "ANSWERED": "\\Answered",
    "DELETED": "\\Deleted",
    "DRAFT": "\\Draft",
    "FLAGGED": "\\Flagged",
    "SEEN": "\\Seen",
}
_HEADER_KEYS = {"BCC": "bcc", "CC": "cc", "FROM": "from", "SUBJECT": "subject", "TO": "to"}
CONTENT_KEYS = frozenset(
    {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO", "HEADER"}
    | {"SENTBEFORE", "SENTON", "SENTSINCE"}
)


@dataclass
class Candidate:
    """What a search key may look at; ``load`` reads the message when a key needs it."""

    seq: int
    uid: int
    flags: frozenset[str]
    size: int
    exists: int  # message count, what "*" means for sequence numbers
    largest_uid: int  # what "*" means for UIDs
    internaldate: float = 0.0
    modseq: int = 1
    saved: frozenset[int] = frozenset()  # RFC 5182 "$": UIDs of the saved result
    load: Callable[[], bytes] | None = None
    _parsed: tuple[list[tuple[str, str]], str] | None = field(default=None, repr=False)

    def header(self) -> list[tuple[str, str]]:
        return self._content()[0]

    def body_text(self) -> str:
        return self._content()[1]

    def header_text(self) -> str:
        return header_text(self.header())

    def _content(self) -> tuple[list[tuple[str, str]], str]:
        if self._parsed is None:
            root = mime.parse(self.load() if self.load is not None else b"")
            self._parsed = (root.fields(), _text_of(root))
        return self._parsed


def header_text(fields: Iterable[tuple[str, str]]) -> str:
    """The header as SEARCH TEXT sees it: each field decoded, as ``name: value``."""
    return " ".join(f"{n}: {decoded(v)}" for n, v in fields)


# The header fields SORT and THREAD compare (RFC 5256 3 and 4, RFC 5957): the text index
# keeps the first of each, raw, so that they read no message file.
SORT_FIELDS = frozenset(
    {"cc", "date", "from", "in-reply-to", "message-id", "references", "subject", "to"}
)


def searchable_text(data: bytes) -> tuple[str, ...]:
    """What SEARCH looks at in a message (the mailbox text index keeps it, one string for
    each of its ``TEXT_COLUMNS``): the decoded header and the decoded text of its text
    parts; the fields SORT and THREAD compare, as JSON (see :func:`sort_fields`); and for
    each of ``SEARCHED_FIELDS`` every string its SEARCH key compares, one a line."""
    root = mime.parse(data)  # once, for the header and the text parts alike
    header = root.fields()
    first: dict[str, str] = {}
    searched: dict[str, list[str]] = {name: [] for name in SEARCHED_FIELDS}
    for name, value in header:
        if name in SORT_FIELDS:
            first.setdefault(name, value)
        if name in searched:
            searched[name] += _searched_strings(name, value)
    return (
        header_text(header),
        _text_of(root),
        json.dumps(first, ensure_ascii=False),
        *("\n".join(strings) for strings in searched.values()),
    )


def sort_fields(stored: str) -> list[tuple[str, str]]:
    """The header fields :func:`searchable_text` kept, as ``(name, value)`` pairs."""
    return list(json.loads(stored).items())


def _text_clause(columns: tuple[str, ...], text: str) -> tuple[str, list[object]]:
    """The messages whose ``columns`` in the text index contain ``text``.

    A string of three characters or more whose trigrams are all different is an FTS5 phrase
    (its trigrams at consecutive places): exact, from the index alone, at a cost bounded by
    the size of the index since different trigrams never share a place. A shorter string has
    no trigram to look up, and a phrase repeating a trigram ("xxxx", "abcabc") would read
    that trigram's places once per repetition: both scan the stored texts with ``instr``
    instead, a cost in proportion to the mailbox's text (about 0.5 s for the benchmark's
    100,000 messages). Not GLOB: FTS5 would take it to its index, with the same cost as
    the phrase (50 s for "xxxxxxxxxxxx" there).
    """
    folded = text.casefold()
    trigrams = [folded[i : i + 3] for i in range(len(folded) - 2)]
    if trigrams and len(set(trigrams)) == len(trigrams):
        phrase = '"' + folded.replace('"', '""') + '"'
        return "uid IN (SELECT rowid FROM texts WHERE texts MATCH ?)", [
            "{" + " ".join(columns) + "} : " + phrase
        ]
    tests = " OR ".join(f"instr({c}, ?) > 0" for c in columns)
    return f"uid IN (SELECT rowid FROM texts WHERE {tests})", [folded] * len(columns)


MAX_SQL_RANGES = 200  # a set with more ranges is matched in Python rather than in SQL


def to_sql(
    key: SearchKey,
    uids: list[int],
    saved: frozenset[int],
    recent: frozenset[int] = frozenset(),
    *,
    texts: bool = False,
) -> tuple[str, list[object]] | None:
    """A WHERE clause over the index columns (uid, flags, size, internaldate, modseq) that
    selects what ``key`` matches, or None when the key needs the message itself. With
    ``texts`` (the mailbox's text index is complete), BODY and TEXT are looked up in it.

    ``uids`` is the session's view (sequence number n is ``uids[n - 1]``), so sequence
    numbers become UID ranges. Lets a SEARCH of flags, sizes, dates and numbers over
    100,000 messages run inside SQLite instead of building 100,000 Python objects.
    """
    name, value = key.name, key.value
    if name == "ALL":
        return "1", []
    if name in ("NEW", "RECENT", "OLD", "UNRECENT"):  # RFC 3501 6.4.4: this session's \\Recent
        if len(recent) > MAX_SQL_RANGES:
            return None
        recent_uids: list[object] = [*sorted(recent)]
        test = f"uid IN ({','.join('?' * len(recent_uids))})" if recent_uids else "0"
        if name == "NEW":
            test = f"{test} AND instr(flags, '\\Seen') = 0"
        return (test if name in ("NEW", "RECENT") else f"NOT ({test})"), recent_uids
    if name in _FLAG_OF or (name.startswith("UN") and name[2:] in _FLAG_OF):
        flag = _FLAG_OF[name.removeprefix("UN")] if name not in _FLAG_OF else _FLAG_OF[name]
        test = "instr(' ' || flags || ' ', ?) > 0"
        return (f"NOT {test}" if name not in _FLAG_OF else test), [f" {flag} "]
    if name in ("KEYWORD", "UNKEYWORD") and isinstance(value, str):
        test = "instr(' ' || flags || ' ', ?) > 0"
        return (test if name == "KEYWORD" else f"NOT {test}"), [f" {value} "]
    if name in ("SEQ", "UID") and isinstance(value, SequenceSet):
        if value.saved:
            if len(saved) > MAX_SQL_RANGES:
                return None
            members: list[object] = [*sorted(saved)]
            return (f"uid IN ({','.join('?' * len(members))})" if members else "0"), members
        if len(value.ranges) > MAX_SQL_RANGES:
            return None
        ranges: list[tuple[int, int]] = []
        if name == "UID":
            ranges = value.bounds(uids[-1] if uids else 0)
        else:
            for lo, hi in value.bounds(len(uids)):
                lo, hi = max(lo, 1), min(hi, len(uids))
                if lo <= hi:
                    ranges.append((uids[lo - 1], uids[hi - 1]))
        if not ranges:
            return "0", []
        params: list[object] = [x for r in ranges for x in r]
        return "(" + " OR ".join(["uid BETWEEN ? AND ?"] * len(ranges)) + ")", params
    if name == "LARGER" and isinstance(value, int):
        return "size > ?", [value]
    if name == "SMALLER" and isinstance(value, int):
        return "size < ?", [value]
    if name == "MODSEQ" and isinstance(value, int):
        return "modseq >= ?", [value]
    if name in ("BEFORE", "ON", "SINCE") and isinstance(value, datetime.date):
        start = calendar.timegm(value.timetuple())
        if name == "BEFORE":
            return "internaldate < ?", [start]
        if name == "SINCE":
            return "internaldate >= ?", [start]
        return "(internaldate >= ? AND internaldate < ?)", [start, start + 86400]
    if name in ("BODY", "TEXT") and texts and isinstance(value, str):
        return _text_clause(("body",) if name == "BODY" else ("header", "body"), value)
    if name in _HEADER_KEYS and texts and isinstance(value, str) and value and "\n" not in value:
        # The column holds the field's strings one a line: a needle without a line break
        # is in one of them exactly when it is in the column. The empty string matches
        # only messages that have the field, which the column cannot tell: read them.
        return _text_clause((f"h_{_HEADER_KEYS[name]}",), value)
    if name in ("NOT", "OR", "AND"):
        parts = [to_sql(k, uids, saved, recent, texts=texts) for k in key.keys]
        if any(p is None for p in parts):
            return None
        clauses = [p[0] for p in parts if p is not None]
        params = [x for p in parts if p is not None for x in p[1]]
        if name == "NOT":
            return f"NOT ({clauses[0]})", params
        joiner = " OR " if name == "OR" else " AND "
        return "(" + joiner.join(f"({c})" for c in clauses) + ")", params
    return None


def needs_content(keys: Iterable[SearchKey]) -> bool:
    """Whether any key reads the message itself (not only the index)."""
    return any(k.name in CONTENT_KEYS or needs_content(k.keys) for k in keys)


def matches(key: SearchKey, m: Candidate) -> bool:
    """Whether message ``m`` satisfies ``key`` (RFC 9051 6.4.4)."""
    name = key.name
    value = key.value
    if name == "ALL":
        return True
    if name in ("OLD", "UNRECENT"):  # \Recent only for IMAP4rev1 sessions (RFC 9051 dropped it)
        return "\\Recent" not in m.flags
    if name == "RECENT":
        return "\\Recent" in m.flags
    if name == "NEW":
        return "\\Recent" in m.flags and "\\Seen" not in m.flags
    if name in _FLAG_OF:
        return _FLAG_OF[name] in m.flags
    if name.startswith("UN") and name[2:] in _FLAG_OF:
        return _FLAG_OF[name[2:]] not in m.flags
    if name == "KEYWORD":
        return value in m.flags
    if name == "UNKEYWORD":
        return value not in m.flags
    if name in ("SEQ", "UID") and isinstance(value, SequenceSet):
        n = m.seq if name == "SEQ" else m.uid
        if value.saved:
            return m.uid in m.saved
        return value.contains(n, m.exists if name == "SEQ" else m.largest_uid)
    if name == "LARGER" and isinstance(value, int):
        return m.size > value
    if name == "SMALLER" and isinstance(value, int):
        return m.size < value
    if name == "MODSEQ" and isinstance(value, int):  # RFC 7162 3.1.5
        return m.modseq >= value
    if name in ("BEFORE", "ON", "SINCE") and isinstance(value, datetime.date):
        day = datetime.datetime.fromtimestamp(m.internaldate, tz=datetime.UTC).date()
        return _compare(name, day, value)
    if name in ("SENTBEFORE", "SENTON", "SENTSINCE") and isinstance(value, datetime.date):
        return _compare(name.removeprefix("SENT"), _sent(m), value)
    if name in _HEADER_KEYS and isinstance(value, str):
        wanted = _HEADER_KEYS[name]
        return any(n == wanted and _header_matches(n, v, value) for n, v in m.header())
    if name == "HEADER" and isinstance(value, tuple):
        field_name, text = value[0].lower(), value[1]
        # RFC 9051 6.4.4: an empty string matches every message that has the field.
        return any(n == field_name and _contains(decoded(v), text) for n, v in m.header())
    if name == "BODY" and isinstance(value, str):
        return _contains(m.body_text(), value)
    if name == "TEXT" and isinstance(value, str):
        return _contains(m.header_text(), value) or _contains(m.body_text(), value)
    if name == "NOT":
        return not matches(key.keys[0], m)
    if name == "OR":
        return matches(key.keys[0], m) or matches(key.keys[1], m)
    if name == "AND":
        return all(matches(k, m) for k in key.keys)
    raise ValueError(f"unknown search key {name}")


def _compare(how: str, day: datetime.date, value: datetime.date) -> bool:
    if how == "BEFORE":
        return day < value
    if how == "ON":
        return day == value
    return day >= value  # SINCE


def _sent(m: Candidate) -> datetime.date:
    date = next((v for n, v in m.header() if n == "date"), None)
    if date:
        try:
            # "disregarding time and timezone": the date as the sender wrote it.
            return email.utils.parsedate_to_datetime(date).date()
        except (TypeError, ValueError, IndexError):
            pass
    return datetime.datetime.fromtimestamp(m.internaldate, tz=datetime.UTC).date()


def _contains(haystack: str, needle: str) -> bool:
    return needle.casefold() in haystack.casefold()


def _header_matches(name: str, raw: str, wanted: str) -> bool:
    """SEARCH FROM/TO/CC/BCC/SUBJECT: a substring of the decoded value, or for an address
    field of one of its addresses written plainly (``user@domain`` for ``<user (c)@ domain>``),
    as Dovecot matches them (RFC 3501 6.4.4)."""
    return any(_contains(text, wanted) for text in _searched_strings(name, raw))


def _searched_strings(name: str, raw: str) -> list[str]:
    """The strings SEARCH FROM/TO/CC/BCC/SUBJECT compare with one value of the field."""
    if name == "subject":
        return [decoded(raw)]
    return [decoded(raw), *(decoded(text) for text in addresses.search_text(raw))]


def decoded(value: str) -> str:
    """A header value with RFC 2047 encoded words decoded (as the user sees it)."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, ValueError, UnicodeError, email.errors.HeaderParseError):
        return value


def _text_of(root: mime.Part) -> str:
    """The text of a message's body: text parts decoded from transfer encoding and charset."""
    out: list[str] = []
    stack = [root]
    while stack:
        part = stack.pop()
        if part.multipart:
            stack.extend(reversed(part.children))
            continue
        if part.message is not None:
            stack.append(part.message)
            continue
        if part.maintype != "text":
            continue
        try:
            raw = mime.decoded_body(part)
        except mime.UnknownEncoding:
            raw = part.body
        charset = next((v for k, v in part.params if k == "charset"), "utf-8")
        try:
            out.append(raw.decode(charset, "replace"))
        except LookupError:
            out.append(raw.decode("utf-8", "replace"))
    return "\n".join(out)


@dataclass
class Update:
    """A SEARCH or SORT with RETURN (UPDATE) (RFC 5267 4.3): its result as last told, as
    UIDs in result order, kept current with ADDTO and REMOVEFROM until CANCELUPDATE."""

    command: Search | Sort
    uids: list[int]


def partial_slice(numbers: Sequence[int], bounds: tuple[int, int]) -> Sequence[int]:
    """The results at 1-based positions ``lo:hi`` (RFC 5267 4.4), or counted from the end
    when negative (RFC 9394 3: ``-1:-100`` the last hundred)."""
    first, last = bounds
    if first > 0:
        return numbers[first - 1 : last]
    size = len(numbers)
    return numbers[max(0, size + last) : max(0, size + first + 1)]


def esearch_line(
    command: Search | Sort, numbers: Sequence[int], *, ordered: bool, modseq: int | None = None
) -> bytes:
    """``* ESEARCH (TAG ...)`` with what RETURN asked for (RFC 4731 3.1, RFC 5267 3 and 4.4);
    ``numbers`` in result order (sort order for SORT)."""
    options = set(command.returns or ()) - {"UPDATE", "CONTEXT", "SAVE"}
    if not options:
        options = {"ALL"}  # RFC 4731 3.1: RETURN () is ALL
    render = r.ordered_set if ordered else r.sequence_set
    parts = [b'* ESEARCH (TAG "%s")' % command.tag.encode()]
    if command.uid:
        parts.append(b"UID")
    if numbers and "MIN" in options:  # RFC 5267 3.2: for SORT, the first in sort order
        parts.append(b"MIN %d" % (numbers[0] if ordered else min(numbers)))
    if numbers and "MAX" in options:
        parts.append(b"MAX %d" % (numbers[-1] if ordered else max(numbers)))
    if "COUNT" in options:
        parts.append(b"COUNT %d" % len(numbers))
    if numbers and "ALL" in options:
        parts.append(b"ALL " + render(numbers).encode())
    if command.partial is not None:
        picked = partial_slice(numbers, command.partial)
        where = b"%d:%d" % command.partial
        parts.append(b"PARTIAL (%s %s)" % (where, render(picked).encode() if picked else b"NIL"))
    if modseq is not None:
        parts.append(b"MODSEQ %d" % modseq)
    return b" ".join(parts)


class SearchCommand(SessionCore):
    async def search(self, command: Search) -> None:
        view = self.view
        assert view is not None
        if command.charset not in (None, "US-ASCII", "UTF-8"):
            await self.no(command.tag, "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset")
            return
        hits = await self.run_search(command)
        with_modseq = any(_uses_modseq(k) for k in command.keys)
        if with_modseq and enable_condstore(self):  # RFC 7162 3.1: the MODSEQ key enables it
            await report_highestmodseq(self)
        numbers = hits.uids if command.uid else hits.seqs
        highest = max(hits.modseqs, default=0)
        returns = command.returns
        if returns is None and not self.rev2:
            text = b"* SEARCH" + "".join(f" {n}" for n in numbers).encode()
            if with_modseq and numbers:
                text += b" (MODSEQ %d)" % highest  # RFC 7162 3.1.5
            await self.send(text)
        else:
            options = set(returns or ()) or {"ALL"}
            if "SAVE" in options:  # RFC 5182 2.4
                saved = hits.uids
                if options & {"MIN", "MAX"} and not options & {"ALL", "COUNT"}:
                    picks = ([saved[0]] if "MIN" in options else []) + (
                        [saved[-1]] if "MAX" in options else []
                    )
                    saved = picks if saved else []
                self.saved = frozenset(saved)
            if options != {"SAVE"}:
                modseq = None
                if with_modseq and numbers:
                    if options & {"MIN", "MAX"} and not options & {"ALL", "COUNT"}:
                        # RFC 7162 3.1.5: only the messages MIN and MAX return count.
                        by_number = dict(zip(numbers, hits.modseqs, strict=True))
                        picked = [min(numbers)] if "MIN" in options else []
                        picked += [max(numbers)] if "MAX" in options else []
                        highest = max(by_number[n] for n in picked)
                    modseq = highest
                await self.send(esearch_line(command, numbers, ordered=False, modseq=modseq))
        if command.uid:
            await self.refresh()
        await self.ok(command, "SEARCH completed")
        if "UPDATE" in (returns or ()):
            self.updates[command.tag] = Update(command, hits.uids)

    async def run_search(self, command: Search | Sort) -> Hits:
        view = self.view
        assert view is not None
        recent = frozenset() if self.rev2 else frozenset(view.recent)
        return await asyncio.to_thread(
            search_mailbox, view.mailbox, list(view.uids), command.keys, self.saved, recent
        )

    async def result_uids(self, command: Search | Sort) -> list[int]:
        """The UIDs a SEARCH or SORT selects now, in result order (SORT overrides it)."""
        return (await self.run_search(command)).uids

    async def report_updates(self) -> None:
        """RFC 5267 4.3: what left and what joined each RETURN (UPDATE) result since it was
        last told, as REMOVEFROM and ADDTO."""
        for tag, update in list(self.updates.items()):
            now = await self.result_uids(update.command)
            await self.report_change(tag, update, now)

    async def report_change(self, tag: str, update: Update, now: list[int]) -> None:
        """REMOVEFROM then ADDTO taking ``update`` to the result ``now``. Positions: 0 for
        SEARCH (its result is a set); for SORT where each run goes, counted 1-based in the
        list as the earlier runs left it."""
        sorted_ = isinstance(update.command, Sort)
        keep = set(now)
        removed = _runs(update.uids, lambda u: u not in keep, shift=True)
        before = set(update.uids)
        added = _runs(now, lambda u: u not in before, shift=False)
        update.uids = now
        if removed:
            await self.queue(self.context_line(tag, update, "REMOVEFROM", removed, sorted_))
        if added:
            await self.queue(self.context_line(tag, update, "ADDTO", added, sorted_))

    def context_line(
        self, tag: str, update: Update, what: str, runs: list[tuple[int, list[int]]], ordered: bool
    ) -> bytes:
        def numbers(uids: list[int]) -> list[int]:
            return uids if update.command.uid else [self.seq_of(u) or 0 for u in uids]

        if ordered:
            pairs = [b"%d %s" % (pos, r.ordered_set(numbers(uids)).encode()) for pos, uids in runs]
        else:
            every = numbers([u for _, uids in runs for u in uids])
            pairs = [b"0 " + r.sequence_set(every).encode()]
        parts = [b'* ESEARCH (TAG "%s")' % tag.encode()]
        if update.command.uid:
            parts.append(b"UID")
        parts.append(b"%s (%s)" % (what.encode(), b" ".join(pairs)))
        return b" ".join(parts)

    async def report_vanishing(self, uids: list[int]) -> None:
        """Before EXPUNGE responses renumber the view: REMOVEFROM for the messages that
        leave an UPDATE result (RFC 5267 4.3)."""
        gone = set(uids)
        for tag, update in self.updates.items():
            if gone & set(update.uids):
                now = [u for u in update.uids if u not in gone]
                await self.report_change(tag, update, now)

    async def cancel_update(self, command: CancelUpdate) -> None:
        for tag in command.tags:
            self.updates.pop(tag, None)
        await self.ok(command, "CANCELUPDATE completed")


def _runs(
    uids: list[int], picked: Callable[[int], bool], *, shift: bool
) -> list[tuple[int, list[int]]]:
    """The runs of consecutive picked UIDs with the 1-based position of each run's first;
    with ``shift`` counted as if the runs before it were already gone (removals)."""
    runs: list[tuple[int, list[int]]] = []
    gone = 0
    for i, uid in enumerate(uids):
        if not picked(uid):
            continue
        if runs and i > 0 and picked(uids[i - 1]):
            runs[-1][1].append(uid)
        else:
            runs.append((i + 1 - (gone if shift else 0), [uid]))
        gone += 1
    return runs


@dataclass(frozen=True)
class Hits:
    """The messages a search selected, in UID order, as parallel lists rather than an
    object per message: a SEARCH that matches 100,000 messages answers from these."""

    seqs: list[int]
    uids: list[int]
    modseqs: list[int]

    def __len__(self) -> int:
        return len(self.uids)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        """``(seq, uid, modseq)`` of each message."""
        return zip(self.seqs, self.uids, self.modseqs, strict=True)


def search_mailbox(
    mailbox: Mailbox,
    uids: list[int],
    keys: Sequence[SearchKey],
    saved: frozenset[int],
    recent: frozenset[int] = frozenset(),
) -> Hits:
    """The messages of the session's view ``uids`` that match every key.

    The keys the index can answer become one SQL query (BODY, TEXT, SUBJECT, FROM, TO, CC
    and BCC through the text index, brought up to date first); the others (HEADER, sent
    dates) are then checked message by message on what that query left, HEADER reading
    only the messages whose header text holds its string.
    """
    texts = mailbox.has_text_index and _uses_text(keys)
    if texts:
        mailbox.index_texts(searchable_text)
    clauses: list[str] = []
    params: list[object] = []
    rest: list[SearchKey] = []
    for key in keys:
        compiled = to_sql(key, uids, saved, recent, texts=texts)
        if compiled is None:
            rest.append(key)
            compiled = _prefilter(key) if texts else None
        if compiled is not None:
            clauses.append(f"({compiled[0]})")
            params += compiled[1]
    where = " AND ".join(clauses) or "1"
    position = dict(zip(uids, range(1, len(uids) + 1), strict=True))
    if not rest:  # the index answered every key: two columns, no per-message objects
        pairs = mailbox.select_uids(where, params)
        if not pairs:
            return Hits([], [], [])
        found, modseqs = (list(column) for column in zip(*pairs, strict=True))
        seqs = list(map(position.get, found))
        if None not in seqs:
            return Hits(seqs, found, modseqs)  # type: ignore[arg-type]  # no None in seqs
        # Some arrived after the session last looked: not in its view yet.
        return _hits((s, u, m) for s, u, m in zip(seqs, found, modseqs, strict=True) if s)
    rows = mailbox.select(where, params)
    exists, largest = len(uids), (uids[-1] if uids else 0)
    content = needs_content(rest)
    hits: list[tuple[int, int, int]] = []
    for uid, flags, size, internaldate, modseq in rows:
        seq = position.get(uid)
        if seq is None:
            continue  # arrived after the session last looked: not in its view yet
        if rest:
            candidate = Candidate(
                seq,
                uid,
                frozenset(flags.split()) | ({"\\Recent"} if uid in recent else set()),
                size,
                exists,
                largest,
                internaldate=internaldate,
                modseq=modseq,
                saved=saved,
                load=_loader(mailbox, uid) if content else None,
            )
            if not all(matches(key, candidate) for key in rest):
                continue
        hits.append((seq, uid, modseq))
    return _hits(hits)


def _prefilter(key: SearchKey) -> tuple[str, list[object]] | None:
    """For HEADER <field> <string>, which the index cannot answer alone: the messages whose
    decoded header text holds the string, the only ones that can match (each then read)."""
    if key.name == "HEADER" and isinstance(key.value, tuple) and key.value[1]:
        return _text_clause(("header",), key.value[1])
    return None


def _hits(triples: Iterable[tuple[int, int, int]]) -> Hits:
    seqs: list[int] = []
    found: list[int] = []
    modseqs: list[int] = []
    for seq, uid, modseq in triples:
        seqs.append(seq)
        found.append(uid)
        modseqs.append(modseq)
    return Hits(seqs, found, modseqs)


def _loader(mailbox: Mailbox, uid: int) -> Callable[[], bytes]:
    def load() -> bytes:
        try:
            return mailbox.read(uid)
        except NoSuchMessage:
            return b""

    return load


def _uses_text(keys: Iterable[SearchKey]) -> bool:
    return any(k.name in _INDEXED_TEXT_KEYS or _uses_text(k.keys) for k in keys)


_INDEXED_TEXT_KEYS = frozenset({"BODY", "TEXT", "HEADER", *_HEADER_KEYS})


def _uses_modseq(key: SearchKey) -> bool:
    return key.name == "MODSEQ" or any(_uses_modseq(k) for k in key.keys)
