"""The fake DNS master-file parser: examples, errors that name the line, and properties."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakes.dns.zone import (
    Record,
    ZoneError,
    parse_rdata,
    parse_ttl,
    parse_zone,
    render_zone,
    split_txt,
    txt_record,
)

ZONE = r"""
$ORIGIN example.test.
$TTL 1h
@   IN SOA ns1 hostmaster ( 2024010101 ; serial
            3600 600 1w 60 )      ; refresh retry expire minimum
    IN 600 MX 10 mx               ; owner repeated from the line above
    600 IN MX 20 mx2.other.test.
mx  A     192.0.2.1
    AAAA  2001:db8::1
@   TXT   "v=spf1 ip4:192.0.2.0/24 -all"
multi TXT "one" "two \"quoted\"" semi\;colon "\000\255"
_sip._tcp SRV 10 5 5060 sip
_25._tcp.mx TLSA 3 1 1 ABCDEF01 23456789
*.wild CNAME mx
@   CAA 0 issue "letsencrypt.org"
$ORIGIN 2.0.192.in-addr.arpa.
1   PTR mx.example.test.
"""


def by_name(records: list[Record], name: str, rtype: str) -> list[str]:
    return [r.text().split(" IN ", 1)[1] for r in records if (r.name, r.rtype) == (name, rtype)]


def test_master_file_syntax() -> None:
    records = parse_zone(ZONE)
    assert by_name(records, "example.test", "SOA") == [
        "SOA ns1.example.test. hostmaster.example.test. 2024010101 3600 600 604800 60"
    ]
    assert by_name(records, "example.test", "MX") == [
        "MX 10 mx.example.test.",
        "MX 20 mx2.other.test.",
    ]
    assert [r.ttl for r in records if r.rtype == "MX"] == [600, 600]
    assert by_name(records, "mx.example.test", "AAAA") == ["AAAA 2001:db8::1"]
    assert [r.ttl for r in records if r.rtype == "AAAA"] == [3600]  # $TTL
    multi = next(r for r in records if r.name == "multi.example.test")
    assert multi.rdata.data == [b"one", b'two "quoted"', b"semi;colon", b"\x00\xff"]
    assert by_name(records, "_sip._tcp.example.test", "SRV") == ["SRV 10 5 5060 sip.example.test."]
    tlsa = next(r for r in records if r.rtype == "TLSA")
    assert tlsa.rdata.cert_data == bytes.fromhex("abcdef0123456789")
    assert by_name(records, "*.wild.example.test", "CNAME") == ["CNAME mx.example.test."]
    assert by_name(records, "1.2.0.192.in-addr.arpa", "PTR") == ["PTR mx.example.test."]


def test_origin_argument_and_root_default() -> None:
    assert parse_zone("www A 192.0.2.1", origin="Example.TEST.")[0].name == "www.example.test"
    # Without an origin, names are relative to the root: what a test author means.
    assert parse_zone("mx.example.test A 192.0.2.1")[0].name == "mx.example.test"


def test_long_txt_is_split_into_strings() -> None:
    record = parse_zone(f'k TXT "{"a" * 300}"', origin="example.test")[0]
    assert [len(s) for s in record.rdata.data] == [255, 45]
    assert split_txt(b"") == [b""]


def test_ttl_units() -> None:
    assert parse_ttl("1h30m") == 5400
    assert parse_ttl("86400") == 86400
    for bad in ("1x", "h", "-1", "9999999999"):
        with pytest.raises(ValueError):
            parse_ttl(bad)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("ok A 192.0.2.1\nbad A 1.2.3", 2, "A bad"),
        ("ok A 192.0.2.1\n\n$INCLUDE other.zone", 3, "$INCLUDE"),
        ("$TTL 60\n  A 192.0.2.1", 2, "no owner"),
        ("a (\nA 192.0.2.1", 1, "never closed"),
        ("a TXT )", 1, "without '('"),
        ('a TXT "open', 1, "unterminated"),
        ("a CH A 192.0.2.1", 1, "class CH"),
        ("\na HINFO x y", 2, "unsupported record type"),
        ("a MX ten mx", 1, "preference"),
        ("a MX 70000 mx", 1, "over 65535"),
        ("a..b A 192.0.2.1", 1, "empty label"),
        (f"{'x' * 64} A 192.0.2.1", 1, "63"),
        ("a TXT", 1, "at least one string"),
        ("a TXT \\", 1, "backslash"),
        ('a TXT "\\300"', 1, "over 255"),
        ("a TLSA 3 1 1 XYZ", 1, "TLSA"),
        ("a SOA ns host 1 2 3", 1, "SOA"),
        ("a AAAA 192.0.2.1", 1, "AAAA"),
        ("a 300", 1, "no record type"),
    ],
)
def test_errors_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ZoneError) as info:
        parse_zone(text)
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}: ")
    assert words in str(info.value)


def test_rdata_for_the_python_api() -> None:
    assert parse_rdata("mx", "10 mx.example.test").preference == 10
    with pytest.raises(ValueError, match="IPv4"):
        parse_rdata("A", "")


# -- properties ---------------------------------------------------------------------------

labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
names = st.lists(labels, min_size=1, max_size=4).map(".".join)
u16 = st.integers(0, 65535)
u8 = st.integers(0, 255)


def rdata_for(rtype: str) -> st.SearchStrategy[str]:
    from fakes.dns.zone import _escape  # the renderer's own quoting, tested by round trip

    strategies: dict[str, st.SearchStrategy[str]] = {
        "A": st.ip_addresses(v=4).map(str),
        "AAAA": st.ip_addresses(v=6).map(lambda ip: ipaddress.IPv6Address(ip).exploded),
        "MX": st.tuples(u16, names).map(lambda t: f"{t[0]} {t[1]}."),
        "CNAME": names.map(lambda n: n + "."),
        "NS": names.map(lambda n: n + "."),
        "PTR": names.map(lambda n: n + "."),
        "SRV": st.tuples(u16, u16, u16, names).map(lambda t: "{} {} {} {}.".format(*t)),
        "TLSA": st.tuples(u8, u8, u8, st.binary(min_size=1, max_size=64)).map(
            lambda t: f"{t[0]} {t[1]} {t[2]} {t[3].hex()}"
        ),
        "TXT": st.lists(st.binary(max_size=300), min_size=1, max_size=4).map(
            lambda ss: " ".join(_escape(s) for s in ss)
        ),
        "SOA": st.tuples(names, names, st.integers(0, 2**32 - 1), st.integers(0, 2**31 - 1)).map(
            lambda t: f"{t[0]}. {t[1]}. {t[2]} {t[3]} {t[3]} {t[3]} {t[3]}"
        ),
        "CAA": st.tuples(u8, st.sampled_from(["issue", "iodef"]), st.text(max_size=30)).map(
            lambda t: f"{t[0]} {t[1]} {_escape(t[2].encode('utf-8', 'replace'))}"
        ),
    }
    return strategies[rtype]


records = st.sampled_from(
    ["A", "AAAA", "MX", "CNAME", "NS", "PTR", "SRV", "TLSA", "TXT", "SOA", "CAA"]
).flatmap(
    lambda rtype: st.builds(
        lambda name, ttl, rdata: Record(name, rtype, ttl, parse_rdata(rtype, rdata)),
        st.one_of(names, st.just("*"), names.map(lambda n: "*." + n)),
        st.integers(0, 2**31 - 1),
        rdata_for(rtype),
    )
)


@given(st.lists(records, max_size=8))
def test_rendered_records_parse_back(rs: list[Record]) -> None:
    assert parse_zone(render_zone(rs)) == rs


@given(st.binary(max_size=1000))
def test_txt_values_survive_splitting(value: bytes) -> None:
    record = txt_record("k.example.test", [value])
    assert b"".join(record.rdata.data) == value
    assert all(len(s) <= 255 for s in record.rdata.data)


zone_soup = st.lists(
    st.sampled_from(
        [
            "$ORIGIN",
            "$TTL",
            "$INCLUDE",
            "@",
            "(",
            ")",
            ";",
            '"',
            "\\",
            "\\065",
            "IN",
            "CH",
            "A",
            "AAAA",
            "MX",
            "TXT",
            "SOA",
            "SRV",
            "TLSA",
            "CAA",
            "CNAME",
            "192.0.2.1",
            "::1",
            "10",
            "1h",
            "x",
            "x.",
            ".",
            "..",
            "*",
            "\n",
            " ",
            "\t",
            "\r\n",
            "é",
            "\x00",
        ]
    ),
    max_size=40,
).map("".join)


@given(st.one_of(st.text(max_size=200), zone_soup))
def test_any_text_parses_or_fails_with_the_line(text: str) -> None:
    try:
        parse_zone(text)
    except ZoneError as exc:
        assert 1 <= exc.line <= text.count("\n") + 1
        assert str(exc).startswith(f"line {exc.line}: ")
