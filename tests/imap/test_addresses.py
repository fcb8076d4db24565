"""RFC 5322 address lists for ENVELOPE and SEARCH: groups, routes, comments, broken input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reference.imap import mime
from reference.imap import response as r
from reference.imap.addresses import Address, parse, search_text


def test_groups_are_marked_as_envelope_wants_them() -> None:
    assert parse("group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;") == [
        Address(None, None, "group", None),
        Address(None, None, "g1", "d1.org"),
        Address(None, None, "g2", "d2.org"),
        Address(None, None, None, None),
        Address(None, None, "group2", None),
        Address(None, None, "g3", "d3.org"),
        Address(None, None, None, None),
    ]
    assert parse("group:;, group2: (foo) ;") == [
        Address(None, None, "group", None),
        Address(None, None, None, None),
        Address(None, None, "group2", None),
        Address(None, None, None, None),
    ]


def test_routes_comments_and_phrases() -> None:
    assert parse("<@route:user@domain>") == [Address(None, "@route", "user", "domain")]
    assert parse("<@a,@b:user@domain>") == [Address(None, "@a,@b", "user", "domain")]
    assert parse("user@domain (Real Name)") == [Address("Real Name", None, "user", "domain")]
    assert parse('"Q \\"N\\"" <a@b>, John Q. Public <j@x>') == [
        Address('Q "N"', None, "a", "b"),
        Address("John Q. Public", None, "j", "x"),
    ]
    assert parse("=?utf-8?q?J=C3=B6rg?= <j@x>")[0].name == "=?utf-8?q?J=C3=B6rg?="  # as sent
    assert search_text("<user-from (comment)@ (comment) domain.org>") == ["user-from@domain.org"]
    assert search_text("g: a@b;") == ["g", "a@b"]


def test_envelope_address_lists_have_no_spaces() -> None:
    # RFC 3501 9: env-to = "(" 1*address ")"
    rendered = r.render(mime.addresses("a@b, c@d"))
    assert rendered == b'((NIL NIL "a" "b")(NIL NIL "c" "d"))'


@given(st.text(alphabet=st.sampled_from('ab @<>()":;,.[]\\\t'), max_size=60))
def test_no_header_value_breaks_the_parser(value: str) -> None:
    for address in parse(value):
        assert address.mailbox is not None or address.host is None
    search_text(value)
