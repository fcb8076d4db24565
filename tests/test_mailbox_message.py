"""Byte-level message views used by IMAP BODY[...] and POP3 TOP."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from reference.mailbox.message import header_fields, split, to_crlf, top

MSG = b"From: a@b.c\r\nSubject: one\r\n  folded\r\nTo: x@y.z\r\n\r\nline 1\r\nline 2\r\n"


def test_split_keeps_the_blank_line_with_the_header() -> None:
    header, body = split(MSG)
    assert header.endswith(b"x@y.z\r\n\r\n")
    assert body == b"line 1\r\nline 2\r\n"
    assert split(b"Subject: no body\r\n") == (b"Subject: no body\r\n", b"")
    assert split(b"\r\nbody only") == (b"\r\n", b"body only")


def test_header_fields_keep_folded_lines_and_end_with_blank_line() -> None:
    header, _ = split(MSG)
    assert header_fields(header, ["SUBJECT"]) == b"Subject: one\r\n  folded\r\n\r\n"
    assert header_fields(header, ["subject"], exclude=True) == b"From: a@b.c\r\nTo: x@y.z\r\n\r\n"
    assert header_fields(header, ["X-None"]) == b"\r\n"


def test_top_returns_header_and_n_body_lines() -> None:
    assert top(MSG, 1).endswith(b"\r\n\r\nline 1\r\n")
    assert top(MSG, 0) == split(MSG)[0]


def test_to_crlf() -> None:
    assert to_crlf(b"a\nb\rc\r\nd") == b"a\r\nb\r\nc\r\nd"


@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b" "]), max_size=30))
def test_to_crlf_turns_every_bare_cr_and_lf_into_crlf(parts: list[bytes]) -> None:
    """The fast path (already CRLF: returned as is) agrees with the plain substitution."""
    data = b"".join(parts)
    assert to_crlf(data) == re.sub(rb"\r\n|\r|\n", b"\r\n", data)
