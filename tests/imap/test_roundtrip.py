"""Round trips, property-tested: commands rendered by a client parse back to the same value,
and what the response renderer writes, imapclient's own parser (an independent one) reads
back as the value rendered. Plus: new commands parse, and no input hangs or crashes."""

from __future__ import annotations

import datetime
import re
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient.response_parser import parse_response

from reference.imap import response as r
from reference.imap.parser import (
    ATOM_CHARS,
    Append,
    Command,
    Copy,
    Enable,
    Expunge,
    Fetch,
    FetchAtt,
    Id,
    ListMailboxes,
    Login,
    MailboxCommand,
    ParseError,
    Qresync,
    Rename,
    Search,
    SearchKey,
    Section,
    Select,
    SequenceSet,
    SetQuota,
    Simple,
    Status,
    Store,
    parse_command,
    parse_date_time,
)

# -- a client-side renderer of command values (the inverse of the parser) ----------------------


def render_command(c: Command) -> bytes:
    tag = c.tag.encode()
    match c:
        case Simple():
            body = c.name.encode()
        case Login():
            body = b"LOGIN " + r.astring(c.username) + b" " + r.string(c.password)
        case Select():
            body = (b"EXAMINE " if c.readonly else b"SELECT ") + r.astring(c.mailbox)
            if c.condstore:
                body += b" (CONDSTORE)"
        case MailboxCommand():
            body = c.name.encode() + b" " + r.astring(c.mailbox)
        case Rename():
            body = b"RENAME " + r.astring(c.old) + b" " + r.astring(c.new)
        case Status():
            body = b"STATUS " + r.astring(c.mailbox) + b" (" + " ".join(c.items).encode() + b")"
        case Append():
            body = b"APPEND " + r.astring(c.mailbox) + b" (" + " ".join(c.flags).encode() + b")"
            if c.date is not None:
                body += b" " + r.internaldate(c.date)
            body += b" " + r.literal(c.message)
        case Fetch():
            items = b" ".join(_att(a) for a in c.items)
            body = (b"UID " if c.uid else b"") + b"FETCH %s (%s)" % (
                str(c.sequence).encode(),
                items,
            )
        case Store():
            mode = c.mode.encode() + b"FLAGS" + (b".SILENT" if c.silent else b"")
            flags = " ".join(c.flags).encode()
            body = (b"UID " if c.uid else b"") + b"STORE %s %s (%s)" % (
                str(c.sequence).encode(), mode, flags,
            )  # fmt: skip
        case Copy():
            verb = b"MOVE" if c.move else b"COPY"
            body = (b"UID " if c.uid else b"") + verb + b" %s " % str(c.sequence).encode()
            body += r.astring(c.mailbox)
        case Expunge():
            body = b"EXPUNGE" if c.uids is None else b"UID EXPUNGE " + str(c.uids).encode()
        case Search():
            body = (b"UID " if c.uid else b"") + b"SEARCH " + b" ".join(_key(k) for k in c.keys)
        case Enable():
            body = b"ENABLE " + " ".join(c.capabilities).encode()
        case _:  # pragma: no cover
            raise TypeError(c)
    return tag + b" " + body + b"\r\n"


def _att(a: FetchAtt) -> bytes:
    if a.section is None:
        return a.name.encode()
    name = a.name + (".PEEK" if a.peek else "")
    partial = f"<{a.partial[0]}.{a.partial[1]}>" if a.partial else ""
    return f"{name}[{a.section}]{partial}".encode()


def _key(k: SearchKey) -> bytes:
    if k.name in ("SEQ",):
        return str(k.value).encode()
    if k.name == "UID":
        return b"UID " + str(k.value).encode()
    if k.name in ("LARGER", "SMALLER"):
        return b"%s %d" % (k.name.encode(), k.value)
    if k.name in ("SUBJECT", "BODY", "FROM"):
        assert isinstance(k.value, str)
        return k.name.encode() + b" " + r.string(k.value)
    if k.name == "NOT":
        return b"NOT " + _key(k.keys[0])
    if k.name == "OR":
        return b"OR " + _key(k.keys[0]) + b" " + _key(k.keys[1])
    if k.name == "AND":
        return b"(" + b" ".join(_key(x) for x in k.keys) + b")"
    return k.name.encode()


# -- strategies --------------------------------------------------------------------------------

_tags = st.text(st.sampled_from("abcXYZ0123.-_"), min_size=1, max_size=8)
_text = st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"]), max_size=30)
_names = _text.filter(lambda s: s != "")
_atom = st.text(st.sampled_from([chr(c) for c in sorted(ATOM_CHARS)]), min_size=1, max_size=10)
_keyword = _atom.filter(lambda s: not s.startswith("\\") and s.upper() != "NIL")
_flags = st.lists(
    st.one_of(
        st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]), _keyword
    ),
    max_size=4,
    unique=True,
)
_num = st.integers(min_value=1, max_value=2**32 - 1)
_seq = st.lists(
    st.tuples(st.one_of(st.none(), _num), st.one_of(st.none(), _num)), min_size=1, max_size=4
).map(lambda ranges: SequenceSet(tuple(ranges)))
_section = st.builds(
    Section,
    text=st.sampled_from(["", "HEADER", "TEXT", "MIME"]),
    part=st.lists(st.integers(1, 9), max_size=3).map(tuple),
).filter(lambda s: s.text != "MIME" or s.part)
_att_strategy = st.one_of(
    st.sampled_from(["FLAGS", "UID", "ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE", "MODSEQ"]).map(
        FetchAtt
    ),
    st.builds(
        FetchAtt,
        name=st.just("BODY"),
        section=_section,
        peek=st.booleans(),
        partial=st.one_of(st.none(), st.tuples(st.integers(0, 999), st.integers(1, 999))),
    ),
)
_leaf_keys = st.one_of(
    st.sampled_from(["ALL", "SEEN", "UNSEEN", "DELETED", "FLAGGED", "ANSWERED"]).map(SearchKey),
    _seq.map(lambda s: SearchKey("SEQ", s)),
    _seq.map(lambda s: SearchKey("UID", s)),
    st.integers(0, 10**9).map(lambda n: SearchKey("LARGER", n)),
    st.tuples(st.sampled_from(["SUBJECT", "BODY", "FROM"]), _text).map(lambda t: SearchKey(*t)),
)
_keys = st.recursive(
    _leaf_keys,
    lambda inner: st.one_of(
        inner.map(lambda k: SearchKey("NOT", keys=(k,))),
        st.tuples(inner, inner).map(lambda ks: SearchKey("OR", keys=ks)),
        st.lists(inner, min_size=1, max_size=3).map(lambda ks: SearchKey("AND", keys=tuple(ks))),
    ),
    max_leaves=8,
)
_date = st.integers(0, 4_000_000_000).map(float)

commands = st.one_of(
    st.builds(Simple, _tags, st.sampled_from(["NOOP", "CAPABILITY", "IDLE", "NAMESPACE", "CLOSE"])),
    st.builds(Login, _tags, _names, _names),
    st.builds(Select, _tags, _names, st.booleans(), st.booleans()),
    st.builds(
        MailboxCommand,
        _tags,
        st.sampled_from(["CREATE", "DELETE", "SUBSCRIBE", "UNSUBSCRIBE", "GETQUOTAROOT"]),
        _names,
    ),
    st.builds(Rename, _tags, _names, _names),
    st.builds(
        Status,
        _tags,
        _names,
        st.lists(
            st.sampled_from(["MESSAGES", "UIDNEXT", "UNSEEN", "SIZE"]), min_size=1, max_size=4
        ).map(tuple),
    ),
    st.builds(
        Append,
        _tags,
        _names,
        _flags.map(tuple),
        st.one_of(st.none(), _date),
        st.binary(min_size=1, max_size=100).filter(lambda b: b"\0" not in b),
    ),
    st.builds(
        Fetch,
        _tags,
        _seq,
        st.lists(_att_strategy, min_size=1, max_size=4).map(tuple),
        st.booleans(),
    ),
    st.builds(
        Store,
        _tags,
        _seq,
        st.sampled_from(["", "+", "-"]),
        _flags.map(tuple),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(Copy, _tags, _seq, _names, st.booleans(), st.booleans()),
    st.builds(Expunge, _tags, st.one_of(st.none(), _seq)),
    st.builds(Search, _tags, st.lists(_keys, min_size=1, max_size=3).map(tuple), uid=st.booleans()),
    st.builds(Enable, _tags, st.lists(_atom.map(str.upper), min_size=1, max_size=3).map(tuple)),
)


@settings(max_examples=400, deadline=None)
@given(commands)
def test_rendered_commands_parse_back(command: Command) -> None:
    assert parse_command(render_command(command)) == command


# -- the response renderer, read by imapclient's parser ----------------------------------------

_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.integers(min_value=0, max_value=2**63 - 1),
        st.binary(max_size=40),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
    ),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


def _expected(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return tuple(_expected(v) for v in value)
    return value


def _as_imaplib(data: bytes) -> list[Any]:
    """What imaplib hands imapclient for ``data``: literals split out as tuples."""
    out: list[Any] = []
    pos = 0
    for m in re.finditer(rb"\{(\d+)\}\r\n", data):
        if m.start() < pos:
            continue
        size = int(m.group(1))
        out.append((data[pos : m.end() - 2], data[m.end() : m.end() + size]))
        pos = m.end() + size
    out.append(data[pos:])
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(_values, max_size=4))
def test_rendered_responses_parse_back(values: list[Any]) -> None:
    data = b" ".join(r.render(v) for v in values)
    if not values:
        return
    assert parse_response(_as_imaplib(data)) == tuple(_expected(v) for v in values)


def test_render_basics() -> None:
    assert r.render([None, 1, "a b", b'q"', [r.Atom("\\Seen")]]) == b'(NIL 1 "a b" "q\\"" (\\Seen))'
    assert r.render("caf\u00e9") == b"{5}\r\ncaf\xc3\xa9"
    assert r.render("x" * 2000).startswith(b"{2000}\r\n")  # long strings go as literals
    assert r.sequence_set([5, 1, 2, 3, 9, 10]) == "1:3,5,9:10"
    with pytest.raises(TypeError):
        r.render(True)


# -- the new commands --------------------------------------------------------------------------


def parse(text: bytes) -> object:
    return parse_command(text + b"\r\n")


def test_mailbox_commands() -> None:
    assert parse(b"a CREATE Work/2026") == MailboxCommand("a", "CREATE", "Work/2026")
    assert parse(b'a RENAME "Old Name" New') == Rename("a", "Old Name", "New")
    assert parse(b"a STATUS INBOX (MESSAGES UNSEEN HIGHESTMODSEQ)") == Status(
        "a", "INBOX", ("MESSAGES", "UNSEEN", "HIGHESTMODSEQ")
    )
    assert parse(b"a STATUS INBOX (FROBS)") == ParseError("a", "Unknown status item FROBS")
    assert parse(b'a SETQUOTA "" (STORAGE 512)') == SetQuota("a", "", (("STORAGE", 512),))
    assert parse(b"a ENABLE IMAP4rev2 condstore") == Enable("a", ("IMAP4REV2", "CONDSTORE"))
    assert parse(b'a ID ("name" "x" "version" NIL)') == Id("a", (("name", "x"), ("version", None)))
    assert parse(b"a ID NIL") == Id("a", None)


def test_list_extended() -> None:
    cmd = parse(
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" (INBOX "Work/*")'
        b" RETURN (CHILDREN STATUS (MESSAGES))"
    )
    assert cmd == ListMailboxes(
        "a", "", ("INBOX", "Work/*"), ("SUBSCRIBED", "RECURSIVEMATCH"), ("CHILDREN", "STATUS"),
        ("MESSAGES",), extended=True,
    )  # fmt: skip
    assert parse(b'a LSUB "" *') == ListMailboxes("a", "", ("*",), lsub=True)


def test_select_parameters() -> None:
    assert parse(b"a SELECT INBOX (CONDSTORE)") == Select("a", "INBOX", condstore=True)
    cmd = parse(b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211 (1:3 5:7)))")
    assert cmd == Select(
        "a",
        "INBOX",
        qresync=Qresync(
            67890007,
            20050715194045000,
            SequenceSet(((41, 41), (43, 211))),
            (SequenceSet(((1, 3),)), SequenceSet(((5, 7),))),
        ),
    )


def test_append_with_flags_date_and_literal8() -> None:
    cmd = parse(b'a APPEND Sent (\\Seen $Done) " 1-Feb-2026 10:00:00 +0100" {5}\r\nhello')
    assert cmd == Append("a", "Sent", ("\\Seen", "$Done"), 1_769_936_400.0, b"hello")
    assert parse(b"a APPEND Sent ~{3}\r\n\0\1\2") == Append("a", "Sent", (), None, b"\0\1\2", True)
    assert parse(b'a APPEND Sent "bogus" {1}\r\nx') == ParseError("a", "Invalid date-time")
    assert parse_date_time("31-Feb-2026 00:00:00 +0000") is None


def test_store_copy_move_expunge() -> None:
    seq = SequenceSet(((1, 3),))
    assert parse(b"a STORE 1:3 +FLAGS.SILENT (\\Deleted)") == Store(
        "a", seq, "+", ("\\Deleted",), silent=True
    )
    assert parse(b"a UID STORE 1:3 (UNCHANGEDSINCE 12) FLAGS \\Seen") == Store(
        "a", seq, "", ("\\Seen",), uid=True, unchangedsince=12
    )
    assert parse(b"a UID MOVE 1:3 Trash") == Copy("a", seq, "Trash", uid=True, move=True)
    assert parse(b"a UID EXPUNGE 1:3") == Expunge("a", seq)
    assert parse(b"a EXPUNGE") == Expunge("a")
    assert parse(b"a STORE 1 FLAGS.LOUD (\\Seen)") == ParseError(
        "a", "Expected FLAGS or FLAGS.SILENT"
    )


def test_fetch_extensions() -> None:
    cmd = parse(
        b"a UID FETCH 1:* (FLAGS BINARY.PEEK[1.2]<0.100> BINARY.SIZE[1]) (CHANGEDSINCE 5 VANISHED)"
    )
    assert isinstance(cmd, Fetch)
    assert cmd.changedsince == 5 and cmd.vanished
    assert [a.label() for a in cmd.items] == ["FLAGS", "BINARY[1.2]<0>", "BINARY.SIZE[1]"]
    assert parse(b"a FETCH 1 (FLAGS) (VANISHED)") == ParseError(
        "a", "VANISHED needs UID FETCH with CHANGEDSINCE"
    )
    full = parse(b"a FETCH 1 FULL")
    assert isinstance(full, Fetch) and [a.name for a in full.items][-1] == "BODY"


def test_search_extensions() -> None:
    cmd = parse(b'a SEARCH RETURN (MIN COUNT SAVE) SINCE 1-Feb-2026 HEADER X-Spam "yes" MODSEQ 7 $')
    assert cmd == Search(
        "a",
        (
            SearchKey("SINCE", datetime.date(2026, 2, 1)),
            SearchKey("HEADER", ("X-Spam", "yes")),
            SearchKey("MODSEQ", 7),
            SearchKey("SEQ", SequenceSet((), saved=True)),
        ),
        returns=("MIN", "COUNT", "SAVE"),
    )
    assert parse(b"a SEARCH BEFORE 30-Feb-2026") == ParseError("a", "Invalid date")
    assert parse(b"a SEARCH RETURN (BOGUS) ALL") == ParseError(
        "a", "Unknown search return option BOGUS"
    )


# -- bounds ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_command_prefix_parses_quickly(tail: bytes) -> None:
    for verb in (b"LIST (", b"SELECT x (QRESYNC (", b"APPEND x (", b"UID STORE 1 (", b"ID ("):
        started = time.perf_counter()
        result = parse_command(b"t " + verb + tail + b"\r\n")
        assert isinstance(result, ParseError | Command)
        assert time.perf_counter() - started < 0.5


def test_long_lists_are_bounded() -> None:
    many = b" ".join([b"FLAGS"] * 2000)
    assert parse(b"a FETCH 1 (" + many + b")") == ParseError("a", "Too many items")
    fields = b" ".join(b'"k%d" "v"' % i for i in range(40))
    assert parse(b"a ID (" + fields + b")") == ParseError("a", "Too many ID fields")
