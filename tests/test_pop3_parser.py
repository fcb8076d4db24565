"""The POP3 command parser and dot-stuffing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.pop3.parser import Command, ParseError, dot_stuff, parse_command


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"STAT\r\n", Command("STAT")),
        (b"capa\r\n", Command("CAPA")),
        (b"LIST\r\n", Command("LIST")),
        (b"LIST 3\r\n", Command("LIST", msg=3)),
        (b"UIDL 12\r\n", Command("UIDL", msg=12)),
        (b"RETR 1\n", Command("RETR", msg=1)),
        (b"TOP 2 0\r\n", Command("TOP", msg=2, lines=0)),
        (b"USER alice@example.org\r\n", Command("USER", arg="alice@example.org")),
        (b"PASS correct horse \r\n", Command("PASS", arg="correct horse ")),
        (b"STLS\r\n", Command("STLS")),
        (b"AUTH\r\n", Command("AUTH")),
        (b"auth plain\r\n", Command("AUTH", arg="PLAIN")),
        (b"AUTH PLAIN AGEAYg==\r\n", Command("AUTH", arg="PLAIN", initial="AGEAYg==")),
    ],
)
def test_commands(line: bytes, command: Command) -> None:
    assert parse_command(line) == command


@pytest.mark.parametrize(
    "line",
    [b"RETR\r\n", b"RETR 0\r\n", b"RETR x\r\n", b"DELE 1 2\r\n", b"TOP 1\r\n", b"STAT 1\r\n",
     b"USER\r\n", b"USER a b\r\n", b"PASS\r\n", b"LIST  1\r\n", b"XYZZY\r\n",
     b"RETR 12345678901\r\n",
     b"AUTH PLAIN a b\r\n", b"AUTH  PLAIN\r\n",
     b"USER \xff\r\n", b"USER " + b"a" * 41 + b"\r\n", b"PASS " + b"p" * 260 + b"\r\n"],
)  # fmt: skip
def test_invalid_commands(line: bytes) -> None:
    assert isinstance(parse_command(line), ParseError)


@pytest.mark.parametrize("ctl", [b"\x00", b"\x01", b"\t", b"\x0b", b"\x1b", b"\x7f"])
@pytest.mark.parametrize("line", [b"USER al{}ice\r\n", b"PASS pass{}word\r\n", b"NOOP{}\r\n",
                                  b"AUTH PLAIN{}\r\n", b"USER alice{}\r\n"])  # fmt: skip
def test_control_characters_are_refused(line: bytes, ctl: bytes) -> None:
    # RFC 1939 3: keywords and arguments are printable ASCII; a NUL or ESC in a USER name
    # would otherwise reach the account look-up and the log.
    parsed = parse_command(line.replace(b"{}", ctl))
    assert isinstance(parsed, ParseError) and "control character" in parsed.reason


def test_password_is_not_in_repr() -> None:
    assert "hunter2" not in repr(parse_command(b"PASS hunter2\r\n"))


def test_dot_stuffing() -> None:
    assert dot_stuff(b".first\r\nmid\r\n..two\r\n.\r\n") == b"..first\r\nmid\r\n...two\r\n..\r\n"
    assert dot_stuff(b"no final newline") == b"no final newline\r\n"
    assert dot_stuff(b"") == b""


@given(st.binary(max_size=300))
def test_no_line_crashes_the_parser(line: bytes) -> None:
    assert isinstance(parse_command(line), Command | ParseError)


@given(st.binary())
def test_dot_stuffed_body_never_ends_the_response_early(body: bytes) -> None:
    stuffed = dot_stuff(body.replace(b"\r", b"").replace(b"\n", b"\r\n"))
    assert b"\r\n.\r\n" not in b"\r\n" + stuffed
