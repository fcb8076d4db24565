"""Property tests: no input crashes the authentication parsers (STYLE.md 4)."""

from __future__ import annotations

import contextlib
import re

import dkim as dkimpy  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from reference.auth import dkim, spf
from reference.auth.dmarc import DmarcSyntaxError, parse_record
from reference.auth.psl import organizational_domain
from reference.auth.results import authserv_id_of, forged_fields
from reference.mail.message import Field, header_fields, split_message, unfold

SPF_TERMS = st.sampled_from(
    ["v=spf1", "a", "mx", "ptr", "-all", "~all", "?all", "+all", "ip4:192.0.2.0/24",
     "ip6:2001:db8::/32", "include:%{d}", "exists:%{ir}.%{l1r+-}.x", "redirect=x.example",
     "exp=e.%{d}", "a:b.example/24//64", "%", "%{z}", "ip4:300.1.1.1", "foo=bar", ":", "/"]
)  # fmt: skip


@given(st.lists(SPF_TERMS, max_size=8), st.text(max_size=30))
def test_spf_record_parser_never_crashes(terms: list[str], noise: str) -> None:
    text = " ".join(["v=spf1", *terms, noise])
    with contextlib.suppress(spf._PermError):
        spf._parse(text)


@given(st.text(max_size=200))
def test_dmarc_record_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(DmarcSyntaxError):
        parse_record("v=DMARC1; " + text)


@given(st.binary(max_size=400))
def test_header_parsing_never_crashes(raw: bytes) -> None:
    header, _body = split_message(raw)
    assert raw.startswith(header)
    fields = header_fields(header)
    assert b"".join(f.raw for f in fields) in header
    for f in fields:
        f.text()
        authserv_id_of(f) if f.lname == "authentication-results" else None
    forged_fields(raw, "mx.example")


@given(st.text(alphabet="abcxyz.-*!中", max_size=40))
def test_organizational_domain_never_crashes(name: str) -> None:
    organizational_domain(name)


def test_split_message_at_the_first_blank_line() -> None:
    assert split_message(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore") == (
        b"A: 1\r\nB: 2\r\n",
        b"body\r\n\r\nmore",
    )
    assert header_fields(b"A: 1\r\n\tcont\r\nB: 2\r\n") == [
        Field("A", b"A: 1\r\n\tcont\r\n"),
        Field("B", b"B: 2\r\n"),
    ]


BTAG_PIECES = st.sampled_from(
    [b"; b=", b" b =", b";b\r\n =", b"aZ+/=", b"b", b"=", b";", b" ", b"\t", b"\r\n", b"\n",
     b"\r", b"\r\n ", b"x:", b"-", b"bh="]
)  # fmt: skip


@given(st.lists(BTAG_PIECES, max_size=24))
def test_the_b_tag_is_emptied_as_dkimpy_empties_it(pieces: list[bytes]) -> None:
    # dkimpy's vectors are made with its expression for "the b= value"; ours is faster.
    value = b"".join(pieces)
    assert dkim._BTAG.sub(b"\\1", value) == dkimpy.RE_BTAG.sub(b"\\1", value)


@given(st.binary(max_size=60))
def test_unfolding_removes_only_line_ends_before_white_space(value: bytes) -> None:
    assert unfold(value) == re.sub(rb"\r?\n(?=[ \t])", b"", value)
