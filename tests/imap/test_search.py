"""SEARCH: over the wire (ESEARCH, SEARCHRES, MODSEQ), and the keys the index answers as SQL
selecting exactly what the reference evaluator (``matches``, message by message) selects."""

from __future__ import annotations

import contextlib
import datetime
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hypothesis import example, given, settings
from hypothesis import strategies as st

from reference.imap.parser import Search, SearchKey, SequenceSet
from reference.imap.search import Candidate, matches, search_mailbox, searchable_text, to_sql
from reference.mailbox import Mailbox, MailStore
from reference.mailbox.index import INDEX_FILE

from .support import ALICE, MSG, Start, logged_in

T = TypeVar("T")
DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01

_flags = st.lists(
    st.sampled_from(["\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "$Work"]), unique=True
)
_mailbox = st.lists(
    st.tuples(_flags, st.integers(0, 300), st.integers(0, 5)), min_size=1, max_size=25
)
_num = st.integers(1, 30)
_set = st.lists(
    st.tuples(st.one_of(st.none(), _num), st.one_of(st.none(), _num)), min_size=1, max_size=3
).map(lambda r: SequenceSet(tuple(r)))
_dates = st.integers(0, 6).map(lambda d: datetime.date(2026, 1, 1) + datetime.timedelta(days=d))
_leaf = st.one_of(
    st.sampled_from(
        ["ALL", "SEEN", "UNSEEN", "FLAGGED", "UNFLAGGED", "DELETED", "UNANSWERED", "NEW", "OLD"]
    ).map(SearchKey),
    st.sampled_from(["$Work", "$Other"]).map(lambda k: SearchKey("KEYWORD", k)),
    st.sampled_from(["$Work", "$Other"]).map(lambda k: SearchKey("UNKEYWORD", k)),
    _set.map(lambda s: SearchKey("SEQ", s)),
    _set.map(lambda s: SearchKey("UID", s)),
    st.just(SearchKey("SEQ", SequenceSet((), saved=True))),
    st.integers(0, 400).map(lambda n: SearchKey("LARGER", n)),
    st.integers(0, 400).map(lambda n: SearchKey("SMALLER", n)),
    st.integers(0, 40).map(lambda n: SearchKey("MODSEQ", n)),
    st.tuples(st.sampled_from(["BEFORE", "ON", "SINCE"]), _dates).map(lambda t: SearchKey(*t)),
)
_keys = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        inner.map(lambda k: SearchKey("NOT", keys=(k,))),
        st.tuples(inner, inner).map(lambda ks: SearchKey("OR", keys=ks)),
        st.lists(inner, min_size=1, max_size=3).map(lambda ks: SearchKey("AND", keys=tuple(ks))),
    ),
    max_leaves=6,
)


async def test_search(start: Start) -> None:
    env, raw = await logged_in(start)
    for flags in ([], ["\\Seen"], ["\\Seen", "\\Flagged"]):
        env.store.deliver(ALICE, MSG, flags=flags)
    await raw.command(b"SELECT INBOX")
    assert (await raw.command(b"SEARCH ALL"))[0] == b"* SEARCH 1 2 3\r\n"
    assert (await raw.command(b"SEARCH SEEN NOT FLAGGED"))[0] == b"* SEARCH 2\r\n"
    assert (await raw.command(b"UID SEARCH OR 1 3"))[0] == b"* SEARCH 1 3\r\n"
    assert (await raw.command(b"SEARCH CHARSET KOI8-R ALL"))[-1].startswith(b"t NO [BADCHARSET")
    assert (await raw.command(b"SEARCH DELETED"))[0] == b"* SEARCH\r\n"


async def test_search_result_saved_and_reused(start: Start) -> None:
    env, raw = await logged_in(start)
    for flags in ([], ["\\Flagged"], ["\\Flagged"]):
        env.store.deliver(ALICE, MSG, flags=flags)
    await raw.command(b"SELECT INBOX")
    assert await raw.command(b"SEARCH RETURN (SAVE) FLAGGED") == [b"t OK SEARCH completed\r\n"]
    lines = await raw.command(b"FETCH $ (UID)")
    assert lines[:2] == [b"* 2 FETCH (UID 2)\r\n", b"* 3 FETCH (UID 3)\r\n"]
    assert (await raw.command(b"UID SEARCH $"))[0] == b"* SEARCH 2 3\r\n"
    assert (await raw.command(b"SEARCH RETURN (MIN SAVE) FLAGGED"))[0] == (
        b'* ESEARCH (TAG "t") MIN 2\r\n'
    )
    assert (await raw.command(b"UID SEARCH $"))[0] == b"* SEARCH 2\r\n"


async def test_search_modseq_and_status_highestmodseq(start: Start) -> None:
    env, raw = await logged_in(start)
    env.store.deliver(ALICE, MSG)
    env.store.deliver(ALICE, MSG)
    await raw.command(b"SELECT INBOX")
    await raw.command(b"STORE 2 +FLAGS.SILENT (\\Seen)")
    status = (await raw.command(b"STATUS INBOX (HIGHESTMODSEQ)"))[0]
    highest = int(status.split(b"HIGHESTMODSEQ ")[1].split(b")")[0])
    lines = await raw.command(b"SEARCH MODSEQ %d" % highest)
    # RFC 7162 3.1: the first CONDSTORE-enabling command is answered with HIGHESTMODSEQ.
    assert lines[:2] == [
        b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % highest,
        b"* SEARCH 2 (MODSEQ %d)\r\n" % highest,
    ]
    lines = await raw.command(b"SEARCH MODSEQ %d" % highest)
    assert lines[0] == b"* SEARCH 2 (MODSEQ %d)\r\n" % highest  # only the first time


@settings(max_examples=150, deadline=None)
@given(_mailbox, st.lists(_keys, min_size=1, max_size=3), st.sets(_num, max_size=5), st.data())
def test_sql_search_selects_what_the_evaluator_selects(
    messages: list[tuple[list[str], int, int]],
    keys: list[SearchKey],
    saved: set[int],
    data: st.DataObject,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = MailStore(Path(tmp))
        for flags, size, day in messages:
            store.deliver(ALICE, b"x" * size or b"x", flags=flags, when=START + day * DAY + 3600)
        with store.open(ALICE) as box:
            expunge = data.draw(st.sets(st.sampled_from(box.uids()), max_size=3))
            box.change_flags(expunge, add=["\\Deleted"])
            box.expunge(expunge)
            view = box.uids()
            command = Search("t", tuple(keys))
            got = [uid for _, uid, _ in search_mailbox(box, view, command.keys, frozenset(saved))]
            stored = box.messages()
        expected = []
        for seq, m in enumerate(stored, 1):
            candidate = Candidate(
                seq, m.uid, m.flags, m.size, len(view), view[-1] if view else 0,
                internaldate=m.internaldate, modseq=m.modseq, saved=frozenset(saved),
            )  # fmt: skip
            if all(matches(k, candidate) for k in keys):
                expected.append(m.uid)
        assert got == expected


def test_text_keys_are_left_to_the_evaluator() -> None:
    assert to_sql(SearchKey("SUBJECT", "x"), [1], frozenset()) is None
    assert to_sql(SearchKey("NOT", keys=(SearchKey("BODY", "x"),)), [1], frozenset()) is None
    clause, params = to_sql(
        SearchKey("SEQ", SequenceSet(((2, None),))), [5, 7, 9], frozenset()
    ) or ("", [])
    assert clause == "(uid BETWEEN ? AND ?)" and params == [7, 9]


def test_content_search(tmp_path: Path) -> None:
    store = MailStore(tmp_path)
    store.deliver(ALICE, b"Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: Bob <b@x.test>\r\n\r\nhello\r\n")
    store.deliver(
        ALICE,
        b"Subject: other\r\nX-Spam: yes\r\nDate: Mon, 05 Jan 2026 10:00:00 +0000\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\naGlkZGVuIHdvcmQ=\r\n",
        flags=["\\Seen"],
    )
    with store.open(ALICE) as box:
        view = box.uids()

        def uids(*keys: SearchKey) -> list[int]:
            return [u for _, u, _ in search_mailbox(box, view, keys, frozenset())]

        assert uids(SearchKey("SUBJECT", "CAFÉ")) == [1]  # decoded, case-insensitive
        assert uids(SearchKey("FROM", "bob")) == [1]
        assert uids(SearchKey("HEADER", ("x-spam", ""))) == [2]
        assert uids(SearchKey("BODY", "hidden word")) == [2]  # base64 undone
        assert uids(SearchKey("TEXT", "x-spam")) == [2]
        assert uids(SearchKey("SENTON", datetime.date(2026, 1, 5))) == [2]
        assert uids(SearchKey("SEEN"), SearchKey("BODY", "hello")) == []


def assert_index_answers_as_reading(box: Mailbox, keys: list[SearchKey]) -> None:
    """The search through the indexes selects what evaluating each message read selects."""
    view = box.uids()
    got = [uid for _, uid, _ in search_mailbox(box, view, keys, frozenset())]
    expected = []
    for seq, uid in enumerate(view, 1):
        data = box.read(uid)
        candidate = Candidate(seq, uid, frozenset(), 0, len(view), view[-1], load=lambda d=data: d)
        if all(matches(k, candidate) for k in keys):
            expected.append(uid)
    assert got == expected


_words = st.sampled_from(["Alpha", "beta", "GAMMA", "straße", "ǅemal", "a*b", "x?y", "[z]"])
_text_leaf = st.tuples(st.sampled_from(["BODY", "TEXT"]), _words).map(lambda t: SearchKey(*t))


def _not_or(leaf: st.SearchStrategy[SearchKey], leaves: int) -> st.SearchStrategy[SearchKey]:
    """``leaf`` keys, and NOT and OR of them up to ``leaves`` leaves."""
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            inner.map(lambda k: SearchKey("NOT", keys=(k,))),
            st.tuples(inner, inner).map(lambda ks: SearchKey("OR", keys=ks)),
        ),
        max_leaves=leaves,
    )


_text_keys = _not_or(_text_leaf, 4)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.lists(_words, max_size=3), st.lists(_words, max_size=3)), min_size=1),
    st.lists(_text_keys, min_size=1, max_size=2),
    st.booleans(),
)
def test_text_index_selects_what_the_evaluator_selects(
    messages: list[tuple[list[str], list[str]]], keys: list[SearchKey], eager: bool
) -> None:
    """BODY and TEXT through the mailbox's text index (filled at delivery, or caught up at
    the first search) select exactly what reading each message selects."""
    with tempfile.TemporaryDirectory() as tmp:
        store = MailStore(Path(tmp), text_of=searchable_text if eager else None)
        for subject, body in messages:
            data = f"Subject: {' '.join(subject)}\r\n\r\n{' '.join(body)}\r\n".encode()
            store.deliver(ALICE, data)
        with store.open(ALICE) as box:
            assert_index_answers_as_reading(box, keys)


def test_text_index_kept_at_delivery_copy_and_expunge(tmp_path: Path) -> None:
    """Delivery and APPEND index as they store; a copy carries its row; an expunge drops
    it; mail another writer stored unindexed is indexed at the next text search."""
    store = MailStore(tmp_path, text_of=searchable_text)
    plain = MailStore(tmp_path)  # another process, storing without indexing
    store.deliver(ALICE, b"Subject: one\r\n\r\nthe needle\r\n")
    store.deliver(ALICE, b"Subject: two\r\n\r\nhay\r\n")
    store.create_folder(ALICE, "Copies")
    with store.open(ALICE) as box, store.open(ALICE, "Copies") as copies:
        assert box.index_texts(searchable_text) == 0  # nothing to read: indexed at delivery
        box.copy_to(copies, [1])
        assert copies.index_texts(searchable_text) == 0
        assert [
            u
            for _, u, _ in search_mailbox(
                copies, copies.uids(), [SearchKey("BODY", "needle")], frozenset()
            )
        ] == [1]
    plain.deliver(ALICE, b"Subject: three\r\n\r\nanother NEEDLE\r\n")
    with store.open(ALICE) as box:
        box.change_flags([1], add=["\\Deleted"])
        box.expunge([1])
        view = box.uids()
        found = search_mailbox(box, view, [SearchKey("TEXT", "needle")], frozenset())
        assert [u for _, u, _ in found] == [3]  # caught up: the third was read once
        assert box.index_texts(searchable_text) == 0


# Needles of every kind the text index treats apart: phrases of distinct trigrams, strings
# shorter than a trigram, strings repeating a trigram, quotes and GLOB wildcards, case
# folding that changes the length (ß -> ss).
_needles = st.sampled_from(
    ["hay", "needle", "NEEDLE in", "a", "ss", "ß", "e n", "xxxx", "abab", 'q"t', "*", "[z]", ""]
)
_fragments = st.sampled_from(
    ["hay", "needle", "Needle in", "xxxxx", "ababab", 'q"t', "[z]", "STRASSE"]
)
_texts = st.lists(_fragments, max_size=4).map(" ".join)
_operations = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["deliver", "append", "foreign"]), _texts, _texts),
        st.tuples(st.sampled_from(["copy", "move", "expunge"]), st.integers(0, 20)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(_operations, st.lists(st.tuples(st.sampled_from(["BODY", "TEXT"]), _needles), min_size=1))
def test_text_index_stays_exact_after_every_change(
    operations: list[tuple[str, str, str] | tuple[str, int]], needles: list[tuple[str, str]]
) -> None:
    """After delivery, APPEND, mail stored by another writer (not indexed), COPY and MOVE
    in from another folder and EXPUNGE, BODY and TEXT through the index select exactly what
    reading every message selects, whatever the needle's length."""
    with tempfile.TemporaryDirectory() as tmp:
        store = MailStore(Path(tmp), text_of=searchable_text)
        foreign = MailStore(Path(tmp))  # another program's MDA: stores without indexing
        store.create_folder(ALICE, "Other")
        with store.open(ALICE) as box, store.open(ALICE, "Other") as other:
            for op in operations:
                if len(op) == 3:
                    how, subject, body = op
                    data = f"Subject: {subject}\r\n\r\n{body}\r\n".encode()
                    if how == "deliver":
                        store.deliver(ALICE, data)
                    elif how == "append":
                        other.append(data)  # APPEND goes to the other folder, COPY brings it
                    else:
                        foreign.deliver(ALICE, data)
                    box.sync()
                    continue
                how, pick = op
                if how == "expunge" and box.uids():
                    uid = box.uids()[pick % len(box.uids())]
                    box.change_flags([uid], add=["\\Deleted"])
                    box.expunge([uid])
                elif other.uids():
                    uid = other.uids()[pick % len(other.uids())]
                    (other.copy_to if how == "copy" else other.move_to)(box, [uid])
            keys = [SearchKey(name, needle) for name, needle in needles]
            assert_index_answers_as_reading(box, keys)


def test_text_index_of_an_older_layout_is_rebuilt(tmp_path: Path) -> None:
    """An index of schema 3 (trigrams without positions, no header fields) is dropped when
    the mailbox opens and filled again from the files at the next text SEARCH."""
    store = MailStore(tmp_path, text_of=searchable_text)
    store.deliver(ALICE, b"Subject: one\r\n\r\nthe needle\r\n")
    with store.open(ALICE) as box:
        index = box.path / INDEX_FILE
    with contextlib.closing(sqlite3.connect(index)) as db, db:
        db.execute("DROP TABLE texts")
        db.execute(
            "CREATE VIRTUAL TABLE texts USING fts5(header, body,"
            " tokenize='trigram case_sensitive 1', detail='none')"
        )
        db.execute("INSERT INTO texts(rowid, header, body) VALUES (1, 'subject: one', 'hay')")
        db.execute("UPDATE meta SET value = 3 WHERE key = 'schema'")
    store.deliver(ALICE, b"Subject: two\r\n\r\nanother needle\r\n")
    with store.open(ALICE) as box:
        assert_index_answers_as_reading(box, [SearchKey("BODY", "needle")])
        found = search_mailbox(box, box.uids(), [SearchKey("BODY", "needle")], frozenset())
        assert found.uids == [1, 2]


# Header lines for the header-key test: encoded words, a field given twice, several
# addresses with comments and quoting, groups, and messages without some of the fields.
_header_lines = st.sampled_from(
    [
        "Subject: Quarterly report",
        "Subject: =?utf-8?q?Stra=C3=9Fe_caf=C3=A9?= news",
        "Subject: second SUBJECT field",
        "From: Alice Example <alice@example.org>",
        'From: "Bob, Jr." <bob (the builder)@ example.net>',
        "From: =?iso-8859-1?q?Andr=E9?= <andre@example.fr>",
        "To: carol@example.com, Dave <dave@example.com>",
        "To: team: erin@example.com, frank@example.com;",
        "Cc: <grace (work) @example.com>",
        "Cc: heidi@example.com",
        "Bcc: ivan@example.com",
        "X-Note: report for alice",
    ]
)
_header_needles = st.sampled_from(
    [
        "report",
        "REPORT",
        "strasse",
        "café",
        "second",
        "alice",
        "bob@example.net",
        "builder",
        "Bob, Jr.",
        "andré",
        "example.com",
        "dave <dave@",
        "team",
        "grace@example.com",
        "heidi",
        "ivan",
        "a",
        "ex",
        "",
        "news\nx",
    ]
)
_header_leaf = st.one_of(
    st.tuples(st.sampled_from(["SUBJECT", "FROM", "TO", "CC", "BCC"]), _header_needles).map(
        lambda t: SearchKey(*t)
    ),
    st.tuples(st.sampled_from(["Subject", "x-note", "From", "To"]), _header_needles).map(
        lambda t: SearchKey("HEADER", t)
    ),
)
_header_keys = _not_or(_header_leaf, 3)


def _case(lines: list[str], name: str, value: str | tuple[str, str]) -> Callable[[T], T]:
    """A case tried on every run: what random draws would find only now and then."""
    return example([["Subject: Quarterly report", *lines]], [SearchKey(name, value)], True)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(_header_lines, max_size=6), min_size=1, max_size=6),
    st.lists(_header_keys, min_size=1, max_size=2),
    st.booleans(),
)
@_case(["Subject: second SUBJECT field"], "SUBJECT", "second")  # the second instance
@_case(["Subject: =?utf-8?q?Stra=C3=9Fe_caf=C3=A9?= news"], "SUBJECT", "strasse café")
@_case(["To: a@example.com", "To: team: erin@example.com, f@example.com;"], "TO", "team")
@_case(["Cc: heidi@example.com", "Cc: <grace (work) @example.com>"], "CC", "grace@example")
@_case(['From: "Bob, Jr." <bob (the builder)@ example.net>'], "FROM", "Jr. <bob@example.net>")
@_case(["From: =?iso-8859-1?q?Andr=E9?= <andre@example.fr>"], "FROM", "ANDRÉ <andre@")
@_case([], "BCC", "")  # the field absent: the empty string does not match
@_case(["Bcc: ivan@example.com"], "BCC", "")
@_case(["X-Note: report for alice", "X-Note: second"], "HEADER", ("X-Note", "second"))
def test_header_keys_through_the_index_select_what_reading_selects(
    headers: list[list[str]], keys: list[SearchKey], eager: bool
) -> None:
    """RFC 3501 6.4.4: SUBJECT, FROM, TO, CC and BCC answered from the text index (every
    instance of the field, decoded, addresses also written plainly) and HEADER from the
    files its header text leaves select exactly what reading every message selects."""
    with tempfile.TemporaryDirectory() as tmp:
        store = MailStore(Path(tmp), text_of=searchable_text if eager else None)
        for lines in headers:
            store.deliver(ALICE, ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode())
        with store.open(ALICE) as box:
            assert_index_answers_as_reading(box, keys)


def test_header_keys_read_no_file(tmp_path: Path) -> None:
    """SEARCH SUBJECT and FROM of an indexed mailbox read no message file; HEADER reads
    only the messages whose header holds its string."""
    store = MailStore(tmp_path, text_of=searchable_text)
    for n in range(20):
        store.deliver(ALICE, f"Subject: note {n}\r\nFrom: s{n}@example.org\r\n\r\nhi\r\n".encode())
    with store.open(ALICE) as box:
        reads: list[int] = []
        read = box.read
        box.read = lambda uid: reads.append(uid) or read(uid)  # type: ignore[method-assign]
        for key in (SearchKey("SUBJECT", "note 7"), SearchKey("FROM", "s7@")):
            assert search_mailbox(box, box.uids(), [key], frozenset()).uids == [8]
        assert reads == []
        found = search_mailbox(box, box.uids(), [SearchKey("HEADER", ("from", "s7@"))], frozenset())
        assert found.uids == [8] and reads == [8]
