"""Property tests: no input crashes the authentication parsers (STYLE.md 4)."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from reference.auth import spf
from reference.auth.dmarc import DmarcSyntaxError, parse_record
from reference.auth.psl import organizational_domain
from reference.auth.results import authserv_id_of, forged_fields
from reference.mail.message import Field, header_fields, split_message

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
