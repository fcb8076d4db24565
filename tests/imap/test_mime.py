"""MIME structure for FETCH: sections, ENVELOPE, BODYSTRUCTURE, BINARY; modified UTF-7."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.imap import mime, mutf7
from reference.imap import response as r

SIMPLE = (
    b'From: "Bob B." <bob@example.net>\r\nTo: alice@example.org, Carol <carol@x.test>\r\n'
    b"Subject: Hi\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <1@x>\r\n"
    b"\r\nline one\r\nline two\r\n"
)
NESTED = (
    b"Subject: outer\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="out"\r\n\r\n'
    b"--out\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
    b"quoted-printable\r\n\r\ncaf=C3=A9\r\n"
    b"--out\r\nContent-Type: message/rfc822\r\n\r\n"
    b'Subject: inner\r\nContent-Type: multipart/alternative; boundary="in"\r\n\r\n'
    b"--in\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
    b"--in\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--in--\r\n"
    b"--out\r\nContent-Type: application/x-weird\r\nContent-Transfer-Encoding: x-uuencode\r\n"
    b"\r\nbegin 644\r\n--out--\r\n"
)


def test_sections_of_a_single_part_message() -> None:
    assert mime.section(SIMPLE, (), "") == SIMPLE
    assert mime.section(SIMPLE, (), "TEXT") == b"line one\r\nline two\r\n"
    assert mime.section(SIMPLE, (1,), "") == b"line one\r\nline two\r\n"  # part 1 is the body
    assert mime.section(SIMPLE, (2,), "") == b""
    assert mime.section(SIMPLE, (), "HEADER.FIELDS", ("SUBJECT", "DATE")) == (
        b"Subject: Hi\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n"
    )


def test_sections_of_nested_parts() -> None:
    assert mime.section(NESTED, (1,), "") == b"caf=C3=A9"
    assert mime.section(NESTED, (1,), "MIME").startswith(b"Content-Type: text/plain")
    assert mime.section(NESTED, (2,), "HEADER").startswith(b"Subject: inner")
    assert mime.section(NESTED, (2, 1), "") == b"plain"  # inside the message/rfc822
    assert mime.section(NESTED, (2, 2), "") == b"<p>html</p>"
    assert mime.section(NESTED, (2,), "TEXT").startswith(b"--in")
    assert mime.section(NESTED, (3, 1), "") == b""
    assert mime.section(NESTED, (4,), "") == b""


def test_binary_undoes_transfer_encodings() -> None:
    assert mime.binary(NESTED, (1,)) == "café".encode()
    assert mime.binary(NESTED, (9,)) is None
    with pytest.raises(mime.UnknownEncoding):
        mime.binary(NESTED, (3,))
    b64 = b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\nAwQ=\r\n"
    assert mime.binary(b64, (1,)) == b"\0\1\2\3\4"


def test_envelope() -> None:
    envelope = mime.envelope(mime.split(SIMPLE)[0])
    assert envelope[0] == "Thu, 01 Jan 2026 00:00:00 +0000" and envelope[1] == "Hi"
    assert envelope[2] == [["Bob B.", None, "bob", "example.net"]]
    assert envelope[3] == envelope[4] == envelope[2]  # Sender, Reply-To default to From
    assert envelope[5] == [[None, None, "alice", "example.org"], ["Carol", None, "carol", "x.test"]]
    assert envelope[6] is None and envelope[9] == "<1@x>"


def test_bodystructure() -> None:
    simple = mime.bodystructure(mime.parse(SIMPLE), extensible=False)
    assert simple == ["TEXT", "PLAIN", ["CHARSET", "us-ascii"], None, None, "7BIT", 20, 2]
    nested = mime.bodystructure(mime.parse(NESTED))
    text, message, weird, subtype, params, *_ = nested
    assert subtype == "MIXED" and params == ["BOUNDARY", "out"]
    assert text[:7] == ["TEXT", "PLAIN", ["CHARSET", "utf-8"], None, None,
                        "QUOTED-PRINTABLE", len(b"caf=C3=A9")]  # fmt: skip
    assert message[:2] == ["MESSAGE", "RFC822"] and message[7][1] == "inner"
    inner = message[8]
    assert inner[-5] == "ALTERNATIVE" or "ALTERNATIVE" in inner
    assert weird[:2] == ["APPLICATION", "X-WEIRD"]
    rendered = r.render(nested)
    assert rendered.startswith(b'(("TEXT" "PLAIN" ("CHARSET" "utf-8")')


def test_hostile_nesting_is_bounded() -> None:
    deep = b""
    for n in range(100):
        deep += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
    part = mime.parse(deep + b"x\r\n")
    depth = 0
    while part.children:
        part, depth = part.children[0], depth + 1
    assert depth <= mime.MAX_DEPTH


@given(st.binary(max_size=400))
def test_no_bytes_crash_the_mime_parser(data: bytes) -> None:
    part = mime.parse(data)
    r.render(mime.bodystructure(part))
    r.render(mime.envelope(part.header))
    mime.section(data, (1, 2), "MIME")
    with contextlib.suppress(mime.UnknownEncoding):
        mime.binary(data, (1,))


def test_modified_utf7() -> None:
    assert mutf7.encode("Entwürfe") == "Entw&APw-rfe"
    assert mutf7.encode("a&b") == "a&-b"
    assert mutf7.encode("日本語") == "&ZeVnLIqe-"
    assert mutf7.decode("Entw&APw-rfe") == "Entwürfe"
    for bad in ("&", "&Jjo", "&AGE-", "caf\u00e9"):  # unterminated, odd, non-canonical, 8-bit
        with pytest.raises(ValueError):
            mutf7.decode(bad)


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
def test_modified_utf7_round_trips(name: str) -> None:
    encoded = mutf7.encode(name)
    assert encoded.isascii()
    assert mutf7.decode(encoded) == name


def test_quoted_printable_padding_and_soft_breaks() -> None:
    # RFC 2045 6.7: trailing whitespace is padding; "=" (padding allowed after it) ends a
    # soft break; an "=" that starts no escape is kept.
    body = b"hello  \r\nbar=\r\n\r\nfoo\t \t= \r\n=62\r\nfoo =\t\r\nbar\r\na=zz=3d\r\n"
    assert mime.decode_qp(body) == b"hello\r\nbar\r\nfoo\t \tb\r\nfoo bar\r\na=zz=\r\n"


def test_binary_parts_become_base64_and_decode_back() -> None:
    payload = b"\x00-\xe4\n\r\n\n"
    data = (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nkept\n\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
        b"\r\n" + payload + b"\r\n--b--\r\nepilogue\n"
    )
    encoded = mime.encode_binary_parts(data)
    assert b"\x00" not in encoded and b"Content-Transfer-Encoding: base64\r\n" in encoded
    assert b"kept\n\r\n--b" in encoded and encoded.endswith(b"--b--\r\nepilogue\n")
    assert mime.binary(encoded, (2,)) == payload
    assert mime.binary(encoded, (1,)) == b"kept\n"
    plain = b"Content-Type: text/plain\r\n\r\nno change\r\n"
    assert mime.encode_binary_parts(plain) == plain
