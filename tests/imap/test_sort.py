"""SORT, THREAD, ESORT and CONTEXT=SEARCH/SORT: the parser, base subjects, the threading
algorithms on plain facts, and the commands over the wire."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.imap import mime
from reference.imap.parser import (
    SORT_KEYS,
    CancelUpdate,
    ParseError,
    SearchKey,
    Sort,
    Thread,
    parse_command,
)
from reference.imap.search import SORT_FIELDS, partial_slice, search_mailbox, searchable_text
from reference.imap.sort import facts_of, sorted_hits
from reference.imap.threads import (
    Facts,
    base_subject,
    ordered_subject,
    references,
    render,
    sort,
)
from reference.mailbox import MailStore

from .support import ALICE, Start, logged_in


def parse(text: bytes) -> object:
    return parse_command(text + b"\r\n")


def test_parse_sort_and_thread() -> None:
    got = parse(b"t UID SORT RETURN (MIN PARTIAL 4:2) (REVERSE DATE SUBJECT) UTF-8 ALL")
    assert isinstance(got, Sort)
    assert got.criteria == (("DATE", True), ("SUBJECT", False))
    assert (got.uid, got.charset, got.returns, got.partial) == (
        True,
        "UTF-8",
        ("MIN", "PARTIAL"),
        (2, 4),
    )
    thread = parse(b"t THREAD REFERENCES us-ascii SEEN")
    assert isinstance(thread, Thread) and thread.algorithm == "REFERENCES"
    assert parse(b't CANCELUPDATE "a1" "a2"') == CancelUpdate("t", ("a1", "a2"))


@pytest.mark.parametrize(
    "text",
    [
        b"t SORT (REVERSE) UTF-8 ALL",  # REVERSE must precede a key
        b"t SORT (NAME) UTF-8 ALL",
        b"t SORT (DATE) ALL",  # the charset is not optional
        b"t THREAD SUBJECTS UTF-8 ALL",
        b"t SEARCH RETURN (PARTIAL 1) ALL",
        b"t SEARCH RETURN (PARTIAL 1:*) ALL",
        b"t SEARCH RETURN (PARTIAL -1:5) ALL",
        b"t SEARCH RETURN (PARTIAL 0:5) ALL",
    ],
)
def test_parse_refuses(text: bytes) -> None:
    assert isinstance(parse(text), ParseError)


def test_partial_slice() -> None:
    numbers = [1, 2, 4, 5]
    assert partial_slice(numbers, (2, 3)) == [2, 4]
    assert partial_slice(numbers, (3, 10)) == [4, 5]
    assert partial_slice(numbers, (-1, -2)) == [4, 5]  # RFC 9394: the last two
    assert partial_slice(numbers, (-4, -9)) == [1]
    assert partial_slice(numbers, (6, 6)) == []


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("Hello", "HELLO", False),
        ("Re: hello", "HELLO", True),
        ("[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "B", True),
        ("Re: [FWD: c]", "C", True),
        ("[xyz]", "[XYZ]", False),  # a blob alone is the subject
        ("=?us-ascii?b?UmU6IGM=?=", "C", True),
        ("  Re:   re:  spaced\tout  ", "SPACED OUT", True),
        ("", "", False),
    ],
)
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    """RFC 5256 2.1 and the cases of imaptest's sort-subject."""
    assert base_subject(subject) == (base_subject(subject).__class__(base, reply))


def facts(seq: int, date: str, **header: str) -> Facts:
    fields = [(k.replace("_", "-"), v) for k, v in header.items()]
    return Facts(seq, seq, 100, 0.0, [("date", f"{date} 2026 00:00:00 +0000"), *fields])


def test_references_threads_by_reference_and_subject() -> None:
    messages = [
        facts(1, "Thu, 01 Jan", message_id="<a@x>", subject="plan"),
        facts(2, "Fri, 02 Jan", message_id="<b@x>", references="<a@x>", subject="Re: plan"),
        facts(3, "Sat, 03 Jan", message_id="<c@x>", references="<gone@x> <b@x>"),
        facts(4, "Sun, 04 Jan", message_id="<d@x>", in_reply_to="<a@x>", subject="x"),
        facts(5, "Mon, 05 Jan", message_id="<e@x>", subject="other"),
        facts(6, "Tue, 06 Jan", message_id="<f@x>", subject="Re: other"),  # by subject
        facts(7, "Wed, 07 Jan", references="<missing@x>", subject="lonely"),
    ]
    assert render(references(messages), "seq") == b"(1 (2 3)(4))(5 6)(7)"


def test_references_without_loops() -> None:
    messages = [
        facts(1, "Thu, 01 Jan", message_id="<a@x>", references="<b@x>"),
        facts(2, "Fri, 02 Jan", message_id="<b@x>", references="<a@x>"),
    ]
    # The first message's reference links b above a; the second's would close a loop.
    assert render(references(messages), "seq") == b"(2 1)"


def test_ordered_subject() -> None:
    messages = [
        facts(1, "Thu, 01 Jan", subject="b"),
        facts(2, "Fri, 02 Jan", subject="a"),
        facts(3, "Sat, 03 Jan", subject="Re: b"),
        facts(4, "Sun, 04 Jan", subject="re: b"),
        facts(5, "Mon, 05 Jan", subject="Re: a"),
    ]
    assert render(ordered_subject(messages), "seq") == b"(1 (3)(4))(2 5)"


def msg(subject: str, sender: str, date: str) -> bytes:
    return (
        f"From: {sender}\r\nSubject: {subject}\r\nDate: {date} 2026 10:00:00 +0000\r\n\r\nx\r\n"
    ).encode()


async def test_sort_and_thread_commands(start: Start) -> None:
    env, raw = await logged_in(start)
    day = 86400.0
    env.store.deliver(ALICE, msg("Re: beta", "zed@example.net", "Thu, 01 Jan"), when=day)
    env.store.deliver(ALICE, msg("alpha", "Anna <yan@example.net>", "Sat, 03 Jan"), when=2 * day)
    env.store.deliver(ALICE, msg("beta", "bob@example.net", "Fri, 02 Jan"), when=3 * day)
    await raw.command(b"SELECT INBOX")
    assert (await raw.command(b"SORT (SUBJECT) UTF-8 ALL"))[0] == b"* SORT 2 1 3\r\n"
    assert (await raw.command(b"SORT (REVERSE DATE) UTF-8 ALL"))[0] == b"* SORT 2 3 1\r\n"
    assert (await raw.command(b"SORT (FROM) UTF-8 NOT 3"))[0] == b"* SORT 2 1\r\n"
    assert (await raw.command(b"SORT (DISPLAYFROM) UTF-8 ALL"))[0] == b"* SORT 2 3 1\r\n"
    assert (await raw.command(b"UID SORT (SIZE) UTF-8 ALL"))[0].startswith(b"* SORT ")
    assert (await raw.command(b"SORT (DATE) KOI8-R ALL"))[-1].startswith(b"t NO [BADCHARSET")
    lines = await raw.command(b"SORT RETURN (MIN MAX COUNT ALL) (REVERSE ARRIVAL) UTF-8 ALL")
    assert lines[0] == b'* ESEARCH (TAG "t") MIN 3 MAX 1 COUNT 3 ALL 3,2,1\r\n'
    lines = await raw.command(b"THREAD ORDEREDSUBJECT UTF-8 ALL")
    assert lines[0] == b"* THREAD (1 3)(2)\r\n"
    lines = await raw.command(b"UID THREAD REFERENCES UTF-8 ALL")
    assert lines[0] == b"* THREAD (3 1)(2)\r\n"  # gathered by subject, oldest first


async def test_search_partial_and_update(start: Start) -> None:
    env, raw = await logged_in(start)
    for _ in range(5):
        env.store.deliver(ALICE, msg("s", "a@example.net", "Thu, 01 Jan"))
    await raw.command(b"SELECT INBOX")
    lines = await raw.command(b"SEARCH RETURN (PARTIAL 2:3) NOT 3")
    assert lines[0] == b'* ESEARCH (TAG "t") PARTIAL (2:3 2,4)\r\n'
    lines = await raw.command(b"SEARCH RETURN (PARTIAL -1:-2) ALL")
    assert lines[0] == b'* ESEARCH (TAG "t") PARTIAL (-1:-2 4:5)\r\n'
    lines = await raw.command(b"SEARCH RETURN (UPDATE) SEEN", b"u")
    assert lines == [b'* ESEARCH (TAG "u")\r\n', b"u OK SEARCH completed\r\n"]
    lines = await raw.command(b"STORE 1,2 +FLAGS.SILENT (\\Seen)")
    assert lines[0] == b'* ESEARCH (TAG "u") ADDTO (0 1:2)\r\n'
    lines = await raw.command(b"STORE 1 -FLAGS.SILENT (\\Seen)")
    assert lines[0] == b'* ESEARCH (TAG "u") REMOVEFROM (0 1)\r\n'
    await raw.command(b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    lines = await raw.command(b"EXPUNGE")
    assert lines[:2] == [b'* ESEARCH (TAG "u") REMOVEFROM (0 2)\r\n', b"* 2 EXPUNGE\r\n"]
    env.store.deliver(ALICE, msg("s", "a@example.net", "Thu, 01 Jan"), flags=["\\Seen"])
    lines = await raw.command(b"NOOP")
    assert b'* ESEARCH (TAG "u") ADDTO (0 5)\r\n' in lines
    assert (await raw.command(b'CANCELUPDATE "u"'))[-1].startswith(b"t OK")
    lines = await raw.command(b"STORE 1 +FLAGS.SILENT (\\Seen)")
    assert lines == [b"t OK STORE completed\r\n"]


async def test_sort_update_positions(start: Start) -> None:
    """RFC 5267 4.3 for SORT: REMOVEFROM and ADDTO say where in the sorted result."""
    env, raw = await logged_in(start)
    for n in range(3):
        env.store.deliver(ALICE, msg("s", "a@example.net", "Thu, 01 Jan"), when=86400.0 * (n + 1))
    await raw.command(b"SELECT INBOX")
    lines = await raw.command(b"SORT RETURN (UPDATE ALL) (REVERSE ARRIVAL) UTF-8 UNSEEN", b"u")
    assert lines[0] == b'* ESEARCH (TAG "u") ALL 3,2,1\r\n'
    lines = await raw.command(b"STORE 2 +FLAGS.SILENT (\\Seen)")
    assert lines[0] == b'* ESEARCH (TAG "u") REMOVEFROM (2 2)\r\n'
    env.store.deliver(ALICE, msg("s", "a@example.net", "Thu, 01 Jan"), when=86400.0 * 9)
    lines = await raw.command(b"NOOP")
    assert b'* ESEARCH (TAG "u") ADDTO (1 4)\r\n' in lines


_SORTED_MAIL = [
    b'Subject: =?utf-8?q?R=C3=A9sum=C3=A9?=\r\nFrom: "Zed" <z@x.test>\r\nTo: b@x.test\r\n'
    b"Date: Tue, 06 Jan 2026 10:00:00 +0000\r\nMessage-ID: <1@x.test>\r\n\r\nbody\r\n",
    b"Subject: Re: [list] resume\r\n (continued)\r\nFrom: Amy <a@x.test>\r\nCc: c@x.test\r\n"
    b"Date: Mon, 05 Jan 2026 10:00:00 +0000\r\nMessage-ID: <2@x.test>\r\n"
    b"In-Reply-To: <1@x.test>\r\nReferences: <1@x.test>\r\n\r\nbody\r\n",
    b"Subject: other\r\nSubject: second subject field\r\nFrom: b@x.test\r\n"
    b"Message-ID: <3@x.test>\r\nReferences: <1@x.test> <2@x.test>\r\n\r\nbody\r\n",
    b"From: nobody\r\n\r\nno subject, no date\r\n",
]


def test_sort_and_thread_read_header_fields_from_the_index(tmp_path: Path) -> None:
    """SORT and THREAD compare the fields the text index keeps (mail stored by another
    writer is indexed first): the same facts as the files give, and no file is read."""
    store = MailStore(tmp_path, text_of=searchable_text)
    foreign = MailStore(tmp_path)  # stores without indexing
    for n, data in enumerate(_SORTED_MAIL):
        (store if n % 2 else foreign).deliver(ALICE, data, when=1_767_225_600.0 + n)
    with store.open(ALICE) as box:
        view = box.uids()
        hits = search_mailbox(box, view, [SearchKey("ALL")], frozenset())
        stored = box.get_many(view)
        from_files = [
            Facts(
                seq,
                uid,
                stored[uid].size,
                stored[uid].internaldate,
                mime.fields(mime.split(box.read(uid))[0]),
            )
            for seq, uid, _ in hits
        ]
        criteria = tuple((key, False) for key in SORT_KEYS)
        first = facts_of(box, hits)  # indexes what the other writer stored
        for path in [*(box.path / "cur").iterdir(), *(box.path / "new").iterdir()]:
            path.unlink()  # what follows must not need the files
        from_index = facts_of(box, hits)
        assert from_index == first
        assert len(from_index) == len(from_files) == len(_SORTED_MAIL)
        for indexed, read in zip(from_index, from_files, strict=True):
            assert [indexed.get(n) for n in SORT_FIELDS] == [read.get(n) for n in SORT_FIELDS]
        for key, _ in criteria:
            assert [f.uid for f in sort(from_index, [(key, False)])] == [
                f.uid for f in sort(from_files, [(key, False)])
            ], key
        assert render(references(from_index), "uid") == render(references(from_files), "uid")
        assert render(ordered_subject(from_index), "uid") == render(
            ordered_subject(from_files), "uid"
        )
        command = Sort("t", (("SUBJECT", False),), "UTF-8", (SearchKey("ALL"),))
        assert len(sorted_hits(box, view, command, frozenset(), frozenset())) == 4
