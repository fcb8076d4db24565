"""The IMAP command parser: one test per command, literals, bounds, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.credentials import StaticAuthenticator, parse_sasl_plain
from reference.imap import response
from reference.imap.parser import (
    Append,
    Authenticate,
    Fetch,
    FetchAtt,
    ListMailboxes,
    Login,
    ParseError,
    Search,
    SearchKey,
    Section,
    Select,
    SequenceSet,
    Simple,
    literal_suffix,
    parse_command,
    tag_of,
)


def parse(text: bytes, **kw: int) -> object:
    return parse_command(text + b"\r\n", **kw)


@pytest.mark.parametrize("name", ["CAPABILITY", "noop", "Logout", "STARTTLS", "CLOSE", "UNSELECT"])
def test_simple_commands(name: str) -> None:
    assert parse(b"a1 " + name.encode()) == Simple("a1", name.upper())


def test_simple_command_with_arguments_is_bad() -> None:
    assert parse(b"a NOOP x") == ParseError("a", "Unexpected extra arguments")


def test_login_atoms_quoted_and_literals() -> None:
    assert parse(b"a LOGIN alice pw") == Login("a", "alice", "pw")
    assert parse(b'a LOGIN "al ice" "p\\"w\\\\"') == Login("a", "al ice", 'p"w\\')
    assert parse(b"a LOGIN {5}\r\nalice {3+}\r\np w") == Login("a", "alice", "p w")
    assert parse('a LOGIN "jos\u00e9" pw'.encode()) == Login("a", "jos\u00e9", "pw")


def test_login_password_is_not_in_repr() -> None:
    assert "secret" not in repr(parse(b"a LOGIN alice secret"))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"a LOGIN alice", "Expected space"),
        (b'a LOGIN "alice pw', "Unterminated quoted string"),
        (b'a LOGIN "a\\lice" pw', "Invalid escape in quoted string"),
        (b"a LOGIN {8}\r\nalice", "Truncated literal"),
        (b"a LOGIN {3}\r\na\0b pw", "NUL in literal"),
        (b"a LOGIN {9}\r\naaaaaaaaa pw", "Literal too large"),
        (b"a LOGIN \xff\xfe pw", "Expected astring"),
        (b'a LOGIN "\xff" pw', "Invalid UTF-8"),
    ],
)
def test_login_errors_keep_the_tag(text: bytes, reason: str) -> None:
    assert parse(text, max_literal=8) == ParseError("a", reason)


def test_authenticate_with_and_without_initial_response() -> None:
    assert parse(b"a AUTHENTICATE plain") == Authenticate("a", "PLAIN")
    assert parse(b"a AUTHENTICATE PLAIN AGEAYg==") == Authenticate("a", "PLAIN", "AGEAYg==")
    assert parse(b"a AUTHENTICATE PLAIN =") == Authenticate("a", "PLAIN", "=")


def test_select_and_examine() -> None:
    assert parse(b"a SELECT inbox") == Select("a", "inbox")
    assert parse(b'a EXAMINE "Lists/py"') == Select("a", "Lists/py", readonly=True)


def test_fetch_items() -> None:
    cmd = parse(b"a FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER] BODY[])")
    assert isinstance(cmd, Fetch)
    assert cmd.sequence == SequenceSet(((1, None),))
    assert [a.label() for a in cmd.items] == [
        "FLAGS", "UID", "RFC822.SIZE", "INTERNALDATE", "BODY[HEADER]", "BODY[]",
    ]  # fmt: skip
    assert [a.sets_seen for a in cmd.items] == [False] * 4 + [False, True]


def test_fetch_single_item_macro_partial_and_header_fields() -> None:
    assert parse(b"a UID FETCH 5 rfc822") == Fetch(
        "a", SequenceSet(((5, 5),)), (FetchAtt("RFC822"),), uid=True
    )
    fast = parse(b"a FETCH 1 FAST")
    assert isinstance(fast, Fetch) and [a.name for a in fast.items] == [
        "FLAGS", "INTERNALDATE", "RFC822.SIZE",
    ]  # fmt: skip
    cmd = parse(b'a FETCH 2,4:6 (BODY.PEEK[HEADER.FIELDS (From "Subject")] BODY[TEXT]<0.10>)')
    assert isinstance(cmd, Fetch)
    fields, text = cmd.items
    assert fields == FetchAtt("BODY", Section("HEADER.FIELDS", ("FROM", "SUBJECT")), peek=True)
    assert fields.label() == "BODY[HEADER.FIELDS (FROM SUBJECT)]"
    assert text.label() == "BODY[TEXT]<0>" and text.partial == (0, 10)


@pytest.mark.parametrize(
    "text",
    [
        b"a FETCH 1 ENVELOPES",
        b"a FETCH 1 BODY[MIME]",
        b"a FETCH 1 BODY[1.]",
        b"a FETCH 1 BINARY[TEXT]",
        b"a FETCH 0 FLAGS",
        b"a FETCH 1:2: FLAGS",
        b"a FETCH 4294967296 FLAGS",
        b"a FETCH 1 (FLAGS",
        b"a FETCH 1 BODY.PEEK",
        b"a UID STORE 1 FLAGS",
        b"a FROB",
    ],
)
def test_unsupported_or_invalid_fetch_is_an_error(text: bytes) -> None:
    result = parse(text)
    assert isinstance(result, ParseError) and result.tag == "a"


def test_search() -> None:
    assert parse(b"a SEARCH ALL") == Search("a", (SearchKey("ALL"),))
    cmd = parse(b"a UID SEARCH CHARSET utf-8 UNSEEN NOT DELETED OR 1:3 UID 9 (LARGER 10)")
    assert cmd == Search(
        "a",
        (
            SearchKey("UNSEEN"),
            SearchKey("NOT", keys=(SearchKey("DELETED"),)),
            SearchKey(
                "OR",
                keys=(
                    SearchKey("SEQ", SequenceSet(((1, 3),))),
                    SearchKey("UID", SequenceSet(((9, 9),))),
                ),
            ),
            SearchKey("AND", keys=(SearchKey("LARGER", 10),)),
        ),
        charset="UTF-8",
        uid=True,
    )
    assert parse(b"a SEARCH FROBNICATE x") == ParseError("a", "Unsupported search key FROBNICATE")


def test_search_nesting_is_bounded() -> None:
    assert parse(b"a SEARCH " + b"NOT " * 5000 + b"ALL") == ParseError(
        "a", "Search too deeply nested"
    )


def test_list() -> None:
    assert parse(b'a LIST "" *') == ListMailboxes("a", "", ("*",))
    assert parse(b'a LIST "" "%"') == ListMailboxes("a", "", ("%",))
    assert parse(b"a list Lists %/py]") == ListMailboxes("a", "Lists", ("%/py]",))


@pytest.mark.parametrize(
    ("text", "tag"),
    [(b"", None), (b"a", None), (b"+ NOOP", None), (b"* NOOP", None), (b"a(b NOOP", None)],
)
def test_missing_or_invalid_tag(text: bytes, tag: str | None) -> None:
    assert parse(text) == ParseError(tag, "Missing or invalid tag")


def test_bare_lf_and_missing_crlf() -> None:
    assert parse_command(b"a NOOP\n") == Simple("a", "NOOP")
    assert parse_command(b"a NOOP") == ParseError("a", "Expected CRLF")


def test_literal_suffix_and_tag_of() -> None:
    assert literal_suffix(b"a LOGIN {5}\r\n") == (5, False)
    assert literal_suffix(b"a LOGIN {5+}\r\n") == (5, True)
    assert literal_suffix(b"a LOGIN {5} x\r\n") is None
    assert tag_of(b"x1 LOGIN {5}\r\n") == "x1"
    assert tag_of(b"\x00 x") is None


def test_sequence_set_semantics() -> None:
    s = SequenceSet(((559, None),))
    assert s.contains(500, largest=500)  # RFC 9051 6.4.9: 559:* includes the largest UID
    assert not s.contains(499, largest=500)
    assert SequenceSet(((None, 3),)).contains(4, largest=5)
    assert SequenceSet(((1, 3), (7, 7))).highest() == 7


# -- properties ------------------------------------------------------------------------------

_TOKENS = st.sampled_from(
    [b" ", b"(", b")", b"[", b"]", b"<", b">", b".", b"*", b":", b",", b'"', b"\\", b"{",
     b"}", b"+", b"1", b"0", b"9", b"4294967296", b"NOT", b"OR", b"UID", b"BODY", b"PEEK",
     b"HEADER.FIELDS", b"FLAGS", b"ALL", b"INBOX", b"\r\n", b"{3}\r\n", b"{2+}\r\n", b"\xff"]
)  # fmt: skip
_COMMANDS = st.sampled_from(
    [b"LOGIN", b"AUTHENTICATE", b"SELECT", b"EXAMINE", b"FETCH", b"UID FETCH", b"SEARCH",
     b"UID SEARCH", b"LIST", b"NOOP", b"STARTTLS", b"BOGUS"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_no_bytes_crash_the_parser(data: bytes) -> None:
    result = parse_command(data)
    assert isinstance(result, ParseError | Simple | Login | Authenticate | Select | Fetch)
    if isinstance(result, ParseError) and result.tag is not None:
        assert data.startswith(result.tag.encode() + b" ")


@settings(max_examples=500, deadline=None)
@given(_COMMANDS, st.lists(_TOKENS, max_size=30))
def test_no_command_shaped_input_crashes_the_parser(command: bytes, tokens: list[bytes]) -> None:
    result = parse_command(b"t " + command + b" " + b"".join(tokens) + b"\r\n", max_literal=2)
    assert result is not None
    if isinstance(result, Login):
        assert len(result.username.encode()) <= 2 or "{" not in result.username


@given(st.integers(min_value=3, max_value=2**40))
def test_literals_over_the_bound_are_refused(size: int) -> None:
    text = b"a LOGIN {%d}\r\n" % size + b"x" * min(size, 10) + b" pw\r\n"
    assert parse_command(text, max_literal=2) == ParseError("a", "Literal too large")


_seq = st.one_of(st.none(), st.integers(min_value=1, max_value=2**32 - 1))


@given(st.lists(st.tuples(_seq, _seq), min_size=1, max_size=5))
def test_sequence_sets_round_trip(ranges: list[tuple[int | None, int | None]]) -> None:
    s = SequenceSet(tuple(ranges))
    parsed = parse_command(b"a FETCH %s FLAGS\r\n" % str(s).encode())
    assert isinstance(parsed, Fetch) and parsed.sequence == s


_text = st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"]), min_size=1)


@given(_text, _text)
def test_rendered_strings_round_trip(user: str, password: str) -> None:
    """What the server renders (atom, quoted or literal) the parser reads back."""
    line = b"a LOGIN " + response.astring(user) + b" " + response.string(password) + b"\r\n"
    assert parse_command(line) == Login("a", user, password)


def test_sasl_plain_message() -> None:
    assert parse_sasl_plain(b"\0alice\0pw") == ("", "alice", "pw")
    assert parse_sasl_plain(b"admin\0alice\0p\xc3\xa9") == ("admin", "alice", "p\u00e9")
    for bad in (b"", b"alice\0pw", b"\0\0pw", b"\0alice\0", b"\0a\0b\0c", b"\0\xff\0pw"):
        with pytest.raises(ValueError):
            parse_sasl_plain(bad)


async def test_static_authenticator() -> None:
    auth = StaticAuthenticator({"Alice@Example.org": "pw"})
    assert await auth.authenticate("alice@example.org", "pw") == "alice@example.org"
    assert await auth.authenticate("ALICE@example.org", "pw") == "alice@example.org"
    assert await auth.authenticate("alice@example.org", "PW") is None
    assert await auth.authenticate("bob@example.org", "pw") is None


def test_multiappend_parses_every_message() -> None:
    # RFC 3502: APPEND mailbox 1*(SP [flag-list SP] [date-time SP] literal)
    cmd = parse(
        b'a APPEND INBOX (\\Seen) {2}\r\nab "01-Jan-2026 00:00:00 +0000" {1}\r\nc ~{1}\r\nd'
    )
    assert isinstance(cmd, Append)
    assert [(m.flags, m.message, m.binary) for m in cmd.messages] == [
        (("\\Seen",), b"ab", False),
        ((), b"c", False),
        ((), b"d", True),
    ]
    assert cmd.messages[1].date is not None
